"""kubemaker operator."""
