#!/usr/bin/env bash
# Build kubemaker's images from this checkout, each only when its inputs changed.
#
#   scripts/images.sh [operator runtime xgboost mxnet]   # default: all four
#
# Tags are the chart's defaults (ghcr.io/kubemaker/<name>:<version>). Each image carries
# the label io.kubemaker.inputs, a hash of what it is built from (its Dockerfile, its
# requirements file, pyproject.toml, the two Python packages and the base image's ID):
# an image whose label matches is not built again, so the engine's image store is the
# cache. The base is $KUBEMAKER_PYTHON_IMAGE when set (e.g. python:3.11-slim-bookworm
# where a registry answers), else the local base of scripts/base-image.sh. Plain
# `docker build` with DOCKER_BUILDKIT=0: no BuildKit frontend to pull. Prints one line
# per image: its name, whether it was built, its size.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${KUBEMAKER_DOCKER:-/usr/bin/docker}
VERSION=${KUBEMAKER_IMAGE_VERSION:-0.1.0}
base=${KUBEMAKER_PYTHON_IMAGE:-$(scripts/base-image.sh)}
base_id=$("$DOCKER" image inspect --format '{{.Id}}' "$base")

dockerfile() {
    case "$1" in
    operator) echo Dockerfile ;;
    *) echo "images/$1/Dockerfile" ;;
    esac
}

inputs_hash() {
    local name=$1
    {
        echo "$base_id"
        cat "$(dockerfile "$name")" "requirements/${name}.txt" pyproject.toml README.md
        git ls-files -s operator images/kubemaker_runtime 2>/dev/null \
            || find operator images/kubemaker_runtime -name '*.py' -exec sha256sum {} +
        # Uncommitted edits and new files count too.
        git diff HEAD -- operator images/kubemaker_runtime 2>/dev/null || true
        git ls-files -oz --exclude-standard operator images/kubemaker_runtime 2>/dev/null \
            | xargs -0r sha256sum
    } | sha256sum | cut -c1-16
}

build() {
    local name=$1 tag="ghcr.io/kubemaker/$1:$VERSION" hash built=cached
    hash=$(inputs_hash "$name")
    local have
    have=$("$DOCKER" image inspect --format '{{index .Config.Labels "io.kubemaker.inputs"}}' "$tag" 2>/dev/null || true)
    if [ "$have" != "$hash" ]; then
        local started=$SECONDS log="${TMPDIR:-/tmp}/kubemaker-image-$name.log"
        # The MXNet Dockerfile names its base BASE_IMAGE (it may also be a CUDA image).
        if ! DOCKER_BUILDKIT=0 "$DOCKER" build \
            --build-arg "PYTHON_IMAGE=$base" --build-arg "BASE_IMAGE=$base" \
            --label "io.kubemaker.inputs=$hash" \
            -f "$(dockerfile "$name")" -t "$tag" . >"$log" 2>&1; then
            echo "images: building $tag failed; the end of $log:" >&2
            tail -40 "$log" >&2
            return 1
        fi
        built="built in $((SECONDS - started)) s"
    fi
    local size
    size=$("$DOCKER" image inspect --format '{{.Size}}' "$tag")
    printf '%s %s, %d MB\n' "$tag" "$built" $((size / 1000000))
}

for name in "${@:-operator runtime xgboost mxnet}"; do
    for one in $name; do
        build "$one"
    done
done
