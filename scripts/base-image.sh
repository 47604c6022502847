#!/usr/bin/env bash
# A local Python base image, for machines that cannot pull python:3.11-slim-bookworm.
#
#   scripts/base-image.sh      # prints the image's name, building it when missing
#
# debootstrap (minbase) of Debian bookworm with Debian's Python 3.11 (`python` is
# python3, venv and ensurepip included), imported into the engine as
# kubemaker/python:3.11-bookworm-<hash>, the hash of this script and of the CA bundle
# it adds. Our Dockerfiles take it as PYTHON_IMAGE (scripts/images.sh); anywhere a
# registry answers they use the official python image instead. The machine's CA bundle
# ($PIP_CERT, else the system's) goes into the image, with PIP_CERT and SSL_CERT_FILE
# pointing at it, so that pip and apt inside builds trust what the machine trusts (a
# TLS-inspecting proxy's CA, say).
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${KUBEMAKER_DOCKER:-/usr/bin/docker}
MIRROR=${KUBEMAKER_DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
PACKAGES=python3,python3-venv,python-is-python3,ca-certificates,passwd

hash=$(cat "$0" "$CA" | sha256sum | cut -c1-12)
image="kubemaker/python:3.11-bookworm-$hash"
if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi
if ! command -v debootstrap >/dev/null; then
    echo "base-image: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
root=$(mktemp -d /tmp/kubemaker-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap bookworm into $root" >&2
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >/dev/null
cp "$CA" "$root/etc/ssl/certs/kubemaker-ca-bundle.crt"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | "$DOCKER" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/kubemaker-ca-bundle.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/kubemaker-ca-bundle.crt' \
    --change 'CMD ["python"]' \
    - "$image" >/dev/null
echo "base-image: $image" >&2
echo "$image"
