#!/usr/bin/env bash
# Build (or reuse) the separate MXNet environment and print its interpreter's path.
#
# MXNet 1.9.1 still calls numpy aliases removed in numpy 1.24 (np.bool, ...), so it lives in
# its own Python 3.11 venv outside the checkout, at $KUBEMAKER_CACHE/venv-mxnet. It installs
# requirements/mxnet.txt: the `mxnet` extra (numpy<1.24) and the runtime, exported from
# uv.lock (`make requirements`), where [mxnet] has a resolution of its own (it conflicts
# with [xgboost]'s numpy 2), so every package is pinned and hash-checked, and it is the
# same file the MXNet image installs. kubemaker's own code is not installed there: whoever
# runs it (local mode, the tests) puts the checkout's images/ first on PYTHONPATH, so one
# environment serves every checkout on the machine, and a CI clone never rebuilds it or
# points it elsewhere. The project's main venv keeps numpy 2. Running it again is a no-op
# unless requirements/mxnet.txt or this script changed since the last build.
#
#   scripts/mxnet-env.sh            # build if needed; print .../venv-mxnet/bin/python
#   scripts/mxnet-env.sh --force    # rebuild from scratch
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${KUBEMAKER_CACHE:-$HOME/.cache/kubemaker}"
venv="$cache/venv-mxnet"
python_bin="$venv/bin/python"
stamp="$venv/.kubemaker-installed"
requirements="$repo/requirements/mxnet.txt"
# What the environment was built from: a change to either rebuilds it.
want="$(cat "$requirements" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

if [[ "${1:-}" != "--force" && -x "$python_bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$python_bin"
    exit 0
fi

log() { echo "mxnet-env: $*" >&2; }

# Python 3.11 (MXNet 1.9.1's wheels and the lock's numpy<1.24 need it).
interp="${KUBEMAKER_MXNET_BASE_PYTHON:-}"
if [[ -z "$interp" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c \
            'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 12))' 2>/dev/null; then
            interp="$(command -v "$candidate")"
            break
        fi
    done
fi

# Built from scratch, so nothing an older build installed stays behind.
rm -rf "$venv"
mkdir -p "$cache"
# uv as the Makefile runs it: on PATH, else as a module of python3 (pip --user installs).
uv=()
if command -v uv >/dev/null; then
    uv=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
    uv=(python3 -m uv)
fi
if ((${#uv[@]})); then
    log "creating $venv with uv"
    # Without one found above, uv looks for (or downloads, where it can) a fitting 3.11.
    "${uv[@]}" venv -q --allow-existing --python "${interp:->=3.11,<3.12}" "$venv" >&2
    install=(env VIRTUAL_ENV="$venv" "${uv[@]}" pip install -q)
else
    [[ -n "$interp" ]] || {
        log "needs Python 3.11 (set KUBEMAKER_MXNET_BASE_PYTHON)"
        exit 1
    }
    log "creating $venv with $interp -m venv"
    "$interp" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >&2
    install=("$venv/bin/python" -m pip install -q)
fi

log "installing ${requirements#"$repo/"} (mxnet==1.9.1, numpy<1.24, the runtime's packages)"
"${install[@]}" --require-hashes -r "$requirements" >&2

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
