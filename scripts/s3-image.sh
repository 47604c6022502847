#!/usr/bin/env bash
# The e2e tests' object storage image: moto's S3 server on our Python base.
#
#   scripts/s3-image.sh        # prints the image's name, building it when missing
#
# moto[server] at the version the project's dev dependencies use (uv.lock), its wheels
# (CPython 3.11, manylinux x86_64) downloaded here with pip into
# $KUBEMAKER_CACHE/wheels/moto-<version>, so the build needs no index and no registry;
# images/s3/Dockerfile installs them into a venv on the base of scripts/base-image.sh
# (or $KUBEMAKER_PYTHON_IMAGE). Tagged kubemaker/s3:moto-<version>, labelled with a hash
# of its inputs (io.kubemaker.inputs) and rebuilt only when they change.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${KUBEMAKER_DOCKER:-/usr/bin/docker}
MOTO_VERSION=${KUBEMAKER_MOTO_VERSION:-5.2.5}
CACHE=${KUBEMAKER_CACHE:-$HOME/.cache/kubemaker}
base=${KUBEMAKER_PYTHON_IMAGE:-$(scripts/base-image.sh)}
base_id=$("$DOCKER" image inspect --format '{{.Id}}' "$base")
image="kubemaker/s3:moto-$MOTO_VERSION"

wheels="$CACHE/wheels/moto-$MOTO_VERSION"
if [ ! -f "$wheels/.complete" ]; then
    echo "s3-image: downloading moto[server]==$MOTO_VERSION wheels into $wheels" >&2
    rm -rf "$wheels"
    mkdir -p "$wheels"
    pip=$(command -v pip3 || command -v pip)
    "$pip" download --quiet --dest "$wheels" --only-binary=:all: \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
        --python-version 3.11 --implementation cp \
        "moto[server]==$MOTO_VERSION" >&2
    touch "$wheels/.complete"
fi

hash=$({
    echo "$base_id $MOTO_VERSION"
    cat images/s3/Dockerfile
    ls "$wheels"
} | sha256sum | cut -c1-16)
have=$("$DOCKER" image inspect --format '{{index .Config.Labels "io.kubemaker.inputs"}}' "$image" 2>/dev/null || true)
if [ "$have" != "$hash" ]; then
    context=$(mktemp -d /tmp/kubemaker-s3.XXXXXX)
    trap 'rm -rf "$context"' EXIT
    cp images/s3/Dockerfile "$context/"
    mkdir "$context/wheels"
    cp "$wheels"/*.whl "$context/wheels/"
    started=$SECONDS
    if ! DOCKER_BUILDKIT=0 "$DOCKER" build --build-arg "PYTHON_IMAGE=$base" \
        --build-arg "MOTO_VERSION=$MOTO_VERSION" --label "io.kubemaker.inputs=$hash" \
        -t "$image" "$context" >"$context.log" 2>&1; then
        echo "s3-image: building $image failed; the end of $context.log:" >&2
        tail -40 "$context.log" >&2
        exit 1
    fi
    echo "s3-image: built $image in $((SECONDS - started)) s" >&2
fi
echo "$image"
