"""Benchmark: the Endpoint router in front of the XGBoost model server, against the server
alone.

Trains the model of benchmarks/serving_xgboost.py, starts the real XGBoost server and
the real router (``python -m kubemaker_runtime.router``, one variant, one fleet: that
server), and drives both with ``wrk`` at 8 connections, side by side in each repeat,
with 1-row and 100-row CSV requests. Prints requests/s, p50 and p99 of each, and:

- requests/s through the router >= 85% of straight to the server
- p50 added by the router <= 1 ms

On a small machine wrk, the router and the server share the cores: the router's cost
shows up as the server's lost CPU as well as its own hop. ``--own-cpu`` gives the router
a CPU of its own (the last one; the server and wrk get the others), as its pods have on
a cluster, where the router's Deployment requests its own CPU: what is left is the hop.

Also printed: the router's CPU time per request (its processes' user + system time
over the run, divided by the requests), the figure the optimisations act on and the
one least disturbed by whatever else the machine runs.

Needs ``wrk``. Exit code 0 when every target is met, 1 when one is missed, 2 when the
benchmark could not run.

    .venv/bin/python benchmarks/router.py [--duration 10] [--repeats 3]
        [--server-workers 1] [--router-workers 1] [--router-loop auto] [--own-cpu]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_xgboost as base

from kubemaker_runtime.router.settings import LOOP_ENV, LOOPS
from kubemaker_runtime.routing import RoutingTable

TARGET_RPS_RATIO = 0.85
TARGET_ADDED_P50_MS = 1.0


def start(
    command: list[str], env: dict[str, str], log: Path, cpus: set[int] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per payload and path")
    parser.add_argument("--server-workers", type=int, default=1)
    parser.add_argument("--router-workers", type=int, default=1)
    parser.add_argument(
        "--router-loop", choices=LOOPS, default=None,
        help="the router's event loop (KUBEMAKER_ROUTER_LOOP; default: the router's own)",
    )  # fmt: skip
    parser.add_argument(
        "--own-cpu", action="store_true",
        help="pin the router to the last CPU and the server and wrk to the others",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    router_cpus: set[int] | None = None
    if args.own_cpu:
        if len(cpus) < 2:
            print("--own-cpu needs at least 2 CPUs", file=sys.stderr)
            return 2
        router_cpus = {cpus[-1]}
        # This process, and so the server and every wrk it starts, on the other CPUs.
        os.sched_setaffinity(0, set(cpus[:-1]))
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="kubemaker-bench-router-"))
    model_base = workdir / "opt-ml"
    _, features = base.train_model(model_base / "model")
    (workdir / "one.csv").write_bytes(base.csv_body(features[:1]))
    (workdir / "hundred.csv").write_bytes(base.csv_body(features[:100]))
    script = workdir / "post.lua"
    script.write_text(base.WRK_SCRIPT)
    server_port, router_port = base.free_port(), base.free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    router_url = f"http://127.0.0.1:{router_port}"
    routes = workdir / "routes.json"
    routes.write_text(
        RoutingTable.model_validate(
            {
                "endpoint": "bench",
                "variants": [{"name": "a", "fleets": [{"name": "a-1", "url": server_url}]}],
            }
        ).to_json()
    )
    common = dict(os.environ, KUBEMAKER_BIND_ADDRESS="127.0.0.1")
    server = start(
        [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "serve"],
        dict(
            common,
            SAGEMAKER_BASE_DIR=str(model_base),
            SAGEMAKER_BIND_TO_PORT=str(server_port),
            SAGEMAKER_MODEL_SERVER_WORKERS=str(args.server_workers),
        ),
        workdir / "server.log",
    )
    router = start(
        [sys.executable, "-m", "kubemaker_runtime.router", "--routes", str(routes),
         "--port", str(router_port), "--workers", str(args.router_workers)],
        dict(common, **({LOOP_ENV: args.router_loop} if args.router_loop else {})),
        workdir / "router.log",
        router_cpus,
    )  # fmt: skip
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        base.wait_ready(server_url + "/ping", server, timeout=60)
        base.wait_ready(router_url + "/ping", router, timeout=60)
        for url in (server_url, router_url):  # warm every worker and the router's pool
            base.run_wrk(url + "/invocations", workdir / "one.csv", script, 2)
        print(
            f"cores: {os.cpu_count()}"
            + (f" (router alone on CPU {cpus[-1]})" if router_cpus else " (shared)")
            + f"; server: {args.server_workers} worker(s); router: "
            f"{args.router_workers} worker(s), loop {args.router_loop or 'default'}; "
            f"wrk: {base.CONNECTIONS} connections, "
            f"{args.repeats} x {args.duration}s per payload and path",
            flush=True,
        )
        for _ in range(args.repeats):
            for payload in ("one", "hundred"):
                for path, url in (("direct", server_url), ("router", router_url)):
                    cpu_before = base.tree_cpu_seconds(router.pid)
                    figures = base.run_wrk(
                        url + "/invocations", workdir / f"{payload}.csv", script, args.duration
                    )
                    if path == "router":
                        cpu = base.tree_cpu_seconds(router.pid) - cpu_before
                        figures["cpu_us"] = cpu / (figures["rps"] * args.duration) * 1e6
                    runs.setdefault((payload, path), []).append(figures)
                    cpu_shown = (
                        f"  router CPU {figures['cpu_us']:5.0f} us/req" if path == "router" else ""
                    )
                    print(
                        f"  {payload:8} {path:7} {figures['rps']:8.0f} req/s"
                        f"  p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms"
                        f"{cpu_shown}",
                        flush=True,
                    )
    finally:
        stop(router)
        stop(server)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    median = {
        key: {name: statistics.median(run[name] for run in values) for name in values[0]}
        for key, values in runs.items()
    }
    print(f"\nmedians of {args.repeats} runs; load average {os.getloadavg()[0]:.1f}")
    print(f"{'':22} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'router CPU us/req':>18}")
    for (payload, path), figures in median.items():
        name = f"{'1-row' if payload == 'one' else '100-row'} {path}"
        cpu_column = f"{figures['cpu_us']:18.0f}" if "cpu_us" in figures else ""
        print(
            f"{name:22} {figures['rps']:11.0f} {figures['p50_ms']:8.2f} {figures['p99_ms']:8.2f}"
            f" {cpu_column}"
        )
    print()
    failed = False
    for payload, label in (("one", "1-row"), ("hundred", "100-row")):
        direct, routed = median[(payload, "direct")], median[(payload, "router")]
        ratio = routed["rps"] / direct["rps"]
        added = routed["p50_ms"] - direct["p50_ms"]
        for name, shown, met, goal in (
            (f"{label} requests/s via router vs direct", f"{ratio:.0%}",
             ratio >= TARGET_RPS_RATIO, f">= {TARGET_RPS_RATIO:.0%}"),
            (f"{label} p50 added by the router (ms)", f"{added:.2f}",
             added <= TARGET_ADDED_P50_MS, f"<= {TARGET_ADDED_P50_MS:g}"),
        ):  # fmt: skip
            failed |= not met
            print(f"{name:42} {shown:>7}  target {goal:>6}  {'met' if met else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
