#!/usr/bin/env bash
# Make a Docker engine answer here, for the end-to-end tests (docs/e2e.md).
#
#   scripts/docker-engine.sh          # install (Debian's docker.io), start, probe
#
# An engine that already answers is left as it is. Otherwise Debian's `docker.io`
# (dockerd and a client of the same version, 20.10 on bookworm) is installed and dockerd
# started in the background (no systemd needed), logging to /var/log/kubemaker-dockerd.log.
# Then a privileged container is tried: on a host whose capability bounding set lacks
# CAP_SYS_RESOURCE (some VMs and CI sandboxes) runc fails with "unable to apply caps",
# and only there dockerd's default runtime becomes scripts/runc-without-sys-resource,
# a wrapper that drops that capability from the container's spec (kind runs every node
# command as a privileged exec). The probe's image is the local base image
# (scripts/base-image.sh), built first when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DOCKER=${KUBEMAKER_DOCKER:-/usr/bin/docker}
LOG=/var/log/kubemaker-dockerd.log
WRAPPER=/usr/local/libexec/kubemaker/runc-without-sys-resource
DAEMON_JSON=/etc/docker/daemon.json

say() { echo "docker-engine: $*" >&2; }

answers() { "$DOCKER" info >/dev/null 2>&1; }

start_dockerd() {
    say "starting dockerd (log: $LOG)"
    nohup dockerd >>"$LOG" 2>&1 &
    for _ in $(seq 1 60); do
        answers && return 0
        sleep 1
    done
    say "dockerd did not answer within 60 s; the end of its log:"
    tail -20 "$LOG" >&2
    return 1
}

stop_dockerd() {
    pkill -x dockerd || true
    for _ in $(seq 1 30); do
        pgrep -x dockerd >/dev/null || return 0
        sleep 1
    done
    say "dockerd did not stop"
    return 1
}

if [ -x "$DOCKER" ] && answers; then
    say "an engine answers: $("$DOCKER" version --format '{{.Server.Version}}')"
else
    if [ "$(id -u)" != 0 ]; then
        say "no Docker engine answers, and installing one needs root"
        exit 1
    fi
    if ! command -v dockerd >/dev/null || [ ! -x /usr/bin/docker ]; then
        say "installing Debian's docker.io"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    fi
    start_dockerd
fi

base=$(scripts/base-image.sh)
if probe=$("$DOCKER" run --rm --privileged "$base" true 2>&1); then
    say "privileged containers work"
    exit 0
fi
case "$probe" in
*"unable to apply caps"*) ;;
*)
    say "a privileged container failed for another reason: $probe"
    exit 1
    ;;
esac
say "privileged containers fail here (no CAP_SYS_RESOURCE): runc wrapper as dockerd's default runtime"
install -D -m 0755 scripts/runc-without-sys-resource "$WRAPPER"
mkdir -p "$(dirname "$DAEMON_JSON")"
python3 - "$DAEMON_JSON" "$WRAPPER" <<'EOF'
import json, pathlib, sys
path, wrapper = pathlib.Path(sys.argv[1]), sys.argv[2]
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
config.setdefault("runtimes", {})["kubemaker-runc"] = {"path": wrapper}
config["default-runtime"] = "kubemaker-runc"
path.write_text(json.dumps(config, indent=2) + "\n")
EOF
stop_dockerd
start_dockerd
"$DOCKER" run --rm --privileged "$base" true
say "privileged containers work through the wrapper"
