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
# The server's stdout goes to a file: its "Serving ..." line is printed once kubemaker
# itself has seen /ping answer 200, and only from then on does SIGTERM stop it with exit
# code 0 (before that it is an interrupted start, exit code 130). Polling /ping from here
# instead raced kubemaker's own check: a quick prediction could send SIGTERM first.
served="$(mktemp "${TMPDIR:-/tmp}/kubemaker-demo-serve.XXXXXX")"
"${kubemaker[@]}" local serve --port "$port" >"$served" &
server=$!
# Whatever happens below, the server does not outlive the demo.
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$served"' EXIT

"$python" - "$served" "$server" <<'EOF'
import os, sys, time

served, pid = sys.argv[1], int(sys.argv[2])


def running(pid):
    """False once the process has exited (a zombie until this script's shell reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return False
    try:  # no /proc (macOS): a zombie counts as running until the deadline
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


deadline = time.monotonic() + 180
while True:
    with open(served) as f:
        if any(line.startswith("Serving ") for line in f):
            break
    if not running(pid):
        sys.exit("demo: kubemaker local serve exited before the model server was ready")
    if time.monotonic() > deadline:
        sys.exit("demo: the model server was not ready within 180 s")
    time.sleep(0.2)
EOF
cat "$served"

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
status=0
wait "$server" || status=$?
trap - EXIT
rm -f "$served"
if ((status != 0)); then
    echo "demo: kubemaker local serve exited with code $status" >&2
    exit "$status"
fi
step "Done in $((SECONDS - started)) s"
