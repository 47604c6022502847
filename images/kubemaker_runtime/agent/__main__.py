"""``kubemaker-agent`` / ``python -m kubemaker_runtime.agent``."""

from __future__ import annotations

import sys

from kubemaker_runtime.agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
