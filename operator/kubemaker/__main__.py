"""``python -m kubemaker``: the operator by default, or any ``kubemaker`` subcommand."""

import sys

from kubemaker.cli import main

if __name__ == "__main__":
    sys.exit(main())
