#!/usr/bin/env bash
# The kind node image of the e2e tests, built on this machine without a registry:
#
#   scripts/kind-node-image.sh     # prints the image's reference, building what is missing
#
# A thin entry point to scripts/kindnode.py (standard library Python; the steps, the
# pins and the cache are described there and in docs/e2e.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/kindnode.py build "$@"
