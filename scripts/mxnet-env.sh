#!/usr/bin/env bash
# Build (or reuse) the separate MXNet environment and print its interpreter's path.
#
# MXNet 1.9.1 still calls numpy aliases removed in numpy 1.24 (np.bool, ...), so it lives in
# its own Python 3.11 venv outside the checkout, at $KUBEMAKER_CACHE/venv-mxnet, with the
# third-party packages of the `mxnet` extra (which pins numpy<1.24) and of the runtime.
# kubemaker's own code is not installed there: whoever runs it (local mode, the tests)
# puts the checkout's images/ first on PYTHONPATH, so one environment serves every
# checkout on the machine, and a CI clone never rebuilds it or points it elsewhere. The
# project's main venv keeps numpy 2. Running it again is a no-op unless pyproject.toml's
# dependencies or this script changed since the last build.
#
#   scripts/mxnet-env.sh            # build if needed; print .../venv-mxnet/bin/python
#   scripts/mxnet-env.sh --force    # rebuild from scratch
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KUBEMAKER_CACHE:-$HOME/.cache/kubemaker}"
venv="$cache/venv-mxnet"
python_bin="$venv/bin/python"
stamp="$venv/.kubemaker-installed"
# What the environment was built from: a change to either rebuilds it.
# The requirements of the runtime and the `mxnet` extra, without kubemaker itself.
requirements="$(python3 - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project["optional-dependencies"]
for requirement in project["dependencies"] + extras["runtime"] + extras["mxnet"]:
    if not requirement.startswith("kubemaker"):
        print(requirement)
PY
)"
want="$(printf '%s\n' "$requirements" | cat - "$0" | sha256sum | cut -d' ' -f1)"

if [[ "${1:-}" != "--force" && -x "$python_bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$python_bin"
    exit 0
fi

log() { echo "mxnet-env: $*" >&2; }

interp="${KUBEMAKER_MXNET_BASE_PYTHON:-}"
if [[ -z "$interp" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            interp="$(command -v "$candidate")"
            break
        fi
    done
fi

# Built from scratch, so nothing an older build installed stays behind.
rm -rf "$venv"
mkdir -p "$cache"
if command -v uv >/dev/null; then
    log "creating $venv with uv"
    # uv finds (or downloads is not possible here, so finds) a 3.11 interpreter itself.
    uv venv -q --allow-existing --python "${interp:-3.11}" "$venv" >&2
    install=(env VIRTUAL_ENV="$venv" uv pip install -q)
else
    [[ -n "$interp" ]] || { log "needs Python 3.11 (python3.11 not found)"; exit 1; }
    log "creating $venv with $interp -m venv"
    "$interp" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    install=("$venv/bin/python" -m pip install -q)
fi

log "installing mxnet==1.9.1, numpy<1.24 and the runtime's packages"
mapfile -t packages <<<"$requirements"
"${install[@]}" "${packages[@]}" >&2

# Fail here, not in the first test, if the pins did not hold.
PYTHONPATH="$repo/images" "$python_bin" - <<'PY' >&2
import mxnet, numpy, pyarrow.parquet
assert mxnet.__version__ == "1.9.1", mxnet.__version__
assert tuple(int(p) for p in numpy.__version__.split(".")[:2]) < (1, 24), numpy.__version__
# What the image's train and serve entry points import.
import kubemaker_runtime.frameworks.mxnet.training, kubemaker_runtime.frameworks.mxnet.serving
print(f"mxnet-env: mxnet {mxnet.__version__}, numpy {numpy.__version__}")
PY
echo "$want" >"$stamp"
echo "$python_bin"
