#!/usr/bin/env bash
# The bank-marketing lab end to end on this machine, with no cluster and no cloud:
#
#   1. prepare the data (the UCI bank-marketing sample shipped in a PyPI wheel)
#   2. kubemaker local train -f examples/xgboost-bank/trainingjob.yaml
#   3. kubemaker local serve (the model it trained) on a free port
#   4. one prediction request: six rows of the held-out test set
#   5. stop the server
#
# Run it from anywhere after `make venv` (it uses the checkout's .venv unless
# KUBEMAKER_PYTHON names another interpreter that has kubemaker installed). Jobs keep
# their work files in ./.work/local (KUBEMAKER_LOCAL_WORKDIR to change it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
python="${KUBEMAKER_PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "demo: $python not found: run \`make venv\` first (or set KUBEMAKER_PYTHON)" >&2
    exit 2
fi
# Where trainingjob.yaml reads its channels and writes the model.
data=/tmp/kubemaker-examples/xgboost-bank
kubemaker=("$python" -m kubemaker)
started=$SECONDS
step() { printf '\n==> %s\n' "$*"; }

step "Preparing the data into $data"
"$python" "$here/prepare.py" --out "$data"

step "kubemaker local train -f examples/xgboost-bank/trainingjob.yaml"
"${kubemaker[@]}" local train -f examples/xgboost-bank/trainingjob.yaml

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
step "kubemaker local serve --port $port"
"${kubemaker[@]}" local serve --port "$port" &
server=$!
# Whatever happens below, the server does not outlive the demo.
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

"$python" - "$url" "$server" <<'EOF'
import os, sys, time, urllib.request

url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("demo: the model server exited before it was ready")
    if time.monotonic() > deadline:
        sys.exit("demo: the model server did not answer /ping within 120 s")
    time.sleep(0.2)
EOF

step "POST $url/invocations: six rows of the test set (label column removed)"
echo "curl -s -X POST $url/invocations -H 'Content-Type: text/csv' --data-binary @rows.csv"
"$python" - "$url" "$data/test/test.csv" <<'EOF'
import sys, urllib.request

url, test_csv = sys.argv[1], sys.argv[2]
with open(test_csv) as f:
    lines = f.read().splitlines()
# Three clients who subscribed and three who did not (the label is the first column).
rows = [r for r in lines if r.startswith("1,")][:3] + [r for r in lines if r.startswith("0,")][:3]
labels = [row.split(",", 1)[0] for row in rows]
body = "\n".join(row.split(",", 1)[1] for row in rows).encode()
request = urllib.request.Request(
    url + "/invocations", data=body, headers={"Content-Type": "text/csv"}, method="POST"
)
with urllib.request.urlopen(request, timeout=30) as response:
    scores = [float(s) for s in response.read().decode().replace("\n", ",").split(",") if s]
print("probability of subscribing   actual")
for score, label in zip(scores, labels):
    print(f"{score:26.4f}   {'yes' if label == '1' else 'no'}")
EOF

step "Stopping the model server"
kill -TERM "$server"
wait "$server"
trap - EXIT
step "Done in $((SECONDS - started)) s"
