"""kubemaker data plane."""
