"""Benchmark: how fast the Endpoint autoscaler reacts to a load step and to a held request.

Real processes on loopback: the XGBoost model server of benchmarks/serving_xgboost.py
and the router (``python -m kubemaker_runtime.router``) in front of it, with a variant
``a`` (1 instance, that server) and variants ``zero-1``, ``zero-2``... scaled to zero
(one per run, so that no run sees another's traffic). The operator's
own metric path runs here in-process: every interval,
:func:`kubemaker.reconcile.scrape.scrape_pods` reads the router's ``/metrics``,
:func:`kubemaker.planners.endpoint_metrics.rates` turns the last two snapshots into
invocations per minute and :func:`kubemaker.planners.endpoint_scaling.decide` decides,
as the Endpoint controller does (its ``_traffic`` and ``_autoscale``). Two such
scalers watch the same traffic, one at the operator's default interval (15 s) and one
at 5 s, each on its own schedule.

- **Load step**: a client sends 2 requests/s to ``a`` (120/min: 1 instance at a target
  of 600 invocations/min/instance), then 50 requests/s (3,000/min: 5 instances).
  Measured: seconds from the step to each scaler's first scale-out decision, and to the
  decision of the full 5 instances (a first interval that saw the step only in part
  decides fewer; the next one the rest). The step falls at a random point of the
  scrape intervals; repeated ``--repeats`` times.
- **Scale from zero**: one request for ``zero-N`` is held by the router; measured:
  seconds from sending it to the first decision of 0 -> 1 (the next scrape sees the
  held request). The table then gives ``zero-N`` an instance, as the operator would
  once its pod is ready, and the request is answered.

Target: the first scale-out decision within 30 s of the load step (median). The pod's
start (image pull, model load, readiness) comes on top and is not measured here.

Exit code 0 when the median of every interval is within the target, 1 when one is
over, 2 when the benchmark could not run.

    .venv/bin/python benchmarks/endpoint_scaling.py [--repeats 3] [--intervals 15 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serving_xgboost as base
from router import start, stop

from kubemaker.planners.endpoint_metrics import Snapshot, rates
from kubemaker.planners.endpoint_scaling import ScalingPolicy, ScalingState, decide
from kubemaker.reconcile.scrape import ScrapeTarget, scrape_pods
from kubemaker_runtime.routing import TARGET_VARIANT_HEADER, RoutingTable

TARGET_SECONDS = 30.0
LOW_RATE = 2.0  # requests/s
HIGH_RATE = 50.0
TARGET_PER_INSTANCE = 600.0  # invocations per instance per minute
EXPECTED = math.ceil(HIGH_RATE * 60 / TARGET_PER_INSTANCE)  # instances at the high rate
SCRAPE_TIMEOUT = 5.0  # the operator's default scrape timeout
MAX_REPEATS = 9


# Port 9 (discard) on loopback: nothing listens there on a test machine.
NOTHING_LISTENS = "http://127.0.0.1:9"


def zero(run: int) -> str:
    return f"zero-{run + 1}"


POLICIES = {
    "a": ScalingPolicy(min_capacity=1, max_capacity=10, target=TARGET_PER_INSTANCE),
    **{
        zero(run): ScalingPolicy(min_capacity=0, max_capacity=10, target=TARGET_PER_INSTANCE)
        for run in range(MAX_REPEATS)
    },
}
INITIAL = {name: 1 if name == "a" else 0 for name in POLICIES}


@dataclass
class Scaler:
    """The operator's metric path for one Endpoint, at one interval."""

    interval: float
    target: ScrapeTarget
    states: dict[str, ScalingState] = field(default_factory=dict)
    # (variant, when, desired, reason) of every scale-out decision
    outs: list[tuple[str, float, int, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    decided: asyncio.Event = field(default_factory=asyncio.Event)  # on every scale-out

    def reset(self, variant: str) -> None:
        self.states[variant] = ScalingState(desired=INITIAL[variant])

    def first_out(
        self, variant: str, since: float, at_least: int = 1
    ) -> tuple[float, int, str] | None:
        """The first scale-out of ``variant`` since ``since`` to ``at_least`` instances."""
        return next(
            (
                (t, n, r)
                for v, t, n, r in self.outs
                if v == variant and t >= since and n >= at_least
            ),
            None,
        )

    async def run(self, session: aiohttp.ClientSession) -> None:
        for variant in INITIAL:
            self.reset(variant)
        previous: Snapshot | None = None
        loop = asyncio.get_running_loop()
        next_at = loop.time() + random.uniform(0, self.interval)  # a random phase
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += self.interval
            result = await scrape_pods(session, [self.target], SCRAPE_TIMEOUT)
            self.errors.extend(result.errors)
            current = result.snapshot
            per_variant = rates(previous, current, variants=sorted(INITIAL)) if previous else None
            for variant, policy in POLICIES.items():
                # As the controller's _traffic: no rate before two snapshots.
                per_minute = None
                if per_variant is not None:
                    found = per_variant.get(variant)
                    per_minute = found.invocations_per_minute if found else 0.0
                decision = decide(
                    policy,
                    self.states[variant],
                    invocations_per_minute=per_minute,
                    held_requests=current.held.get(variant, 0),
                    now=current.taken_at,
                )
                self.states[variant] = decision.state
                if decision.direction == "out":
                    self.outs.append((variant, time.time(), decision.desired, decision.reason))
                    self.decided.set()
            previous = current


class Load:
    """Open-loop requests to variant ``a`` at ``rate`` per second (changeable)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        self.session, self.url, self.body = session, url, body
        self.rate = LOW_RATE
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []  # the client's own failures (status 0)
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self) -> None:
        headers = {"Content-Type": "text/csv", TARGET_VARIANT_HEADER: "a"}
        try:
            async with self.session.post(self.url, data=self.body, headers=headers) as answer:
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as error:
            status = 0
            self.errors.append(f"{type(error).__name__}: {error}")
        self.statuses[status] = self.statuses.get(status, 0) + 1

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            task = loop.create_task(self._one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            next_at += 1.0 / self.rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def table(server_url: str, ready_runs: int) -> RoutingTable:
    """Variant ``a``, and the zero variants, those of the first ``ready_runs`` runs with
    an instance (their held request answered). A variant at zero has a Service without
    ready pods, which refuses connections: here, an address where nothing listens."""
    zeros = [
        {
            "name": zero(run),
            "weight": 0,
            "fleets": [
                {
                    "name": zero(run),
                    "url": server_url if run < ready_runs else NOTHING_LISTENS,
                    "instances": int(run < ready_runs),
                }
            ],
        }
        for run in range(MAX_REPEATS)
    ]
    return RoutingTable.model_validate(
        {
            "endpoint": "bench",
            "hold_timeout_seconds": 120,
            "variants": [
                {"name": "a", "weight": 1, "fleets": [{"name": "a-1", "url": server_url}]},
                *zeros,
            ],
        }
    ).with_version()


async def apply_table(
    session: aiohttp.ClientSession, routes: Path, router_url: str, routing: RoutingTable
) -> None:
    tmp = routes.with_name(routes.name + ".tmp")
    tmp.write_text(routing.to_json())
    tmp.replace(routes)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with session.get(router_url + "/router/config") as answer:
            if answer.status == 200 and (await answer.json())["version"] == routing.version:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the router did not apply the routing table within 10 s")


async def invoke(session: aiohttp.ClientSession, url: str, body: bytes, variant: str) -> int:
    headers = {"Content-Type": "text/csv", TARGET_VARIANT_HEADER: variant}
    async with session.post(url + "/invocations", data=body, headers=headers) as answer:
        await answer.read()
        return answer.status


async def measure(
    router_url: str, server_url: str, routes: Path, body: bytes, args: argparse.Namespace
) -> dict[str, dict[float, list[float | None]]]:
    """Seconds to the first decision, per kind ("step", "zero"), interval and repeat."""
    port = int(router_url.rsplit(":", 1)[1])
    target = ScrapeTarget("127.0.0.1", port)
    longest = max(args.intervals)
    results: dict[str, dict[float, list[float | None]]] = {
        "step": {i: [] for i in args.intervals},
        "full": {i: [] for i in args.intervals},
        "zero": {i: [] for i in args.intervals},
    }
    undershoots = {i: 0 for i in args.intervals}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
        scalers = [Scaler(interval, target) for interval in args.intervals]
        load = Load(session, router_url + "/invocations", body)
        background = [asyncio.create_task(s.run(session)) for s in scalers]
        background.append(asyncio.create_task(load.run()))
        try:
            for repeat in range(args.repeats):
                # Low traffic for longer than the longest interval (the interval that
                # holds the step starts after the last high traffic), then the step at
                # a random point of the scrape schedules.
                load.rate = LOW_RATE
                held_variant = zero(repeat)
                held_at = time.time()
                held = asyncio.create_task(invoke(session, router_url, body, held_variant))
                await asyncio.sleep(longest + 1 + random.uniform(0, longest / 2))
                for scaler in scalers:
                    scaler.reset("a")
                load.rate = HIGH_RATE
                step_at = time.time()
                deadline = step_at + 2 * longest + 10
                while not all(
                    s.first_out("a", step_at, EXPECTED) and s.first_out(held_variant, held_at)
                    for s in scalers
                ):
                    if time.time() >= deadline:
                        break
                    waits = [asyncio.create_task(s.decided.wait()) for s in scalers]
                    await asyncio.wait(waits, timeout=deadline - time.time(),
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                    for scaler, wait in zip(scalers, waits, strict=True):
                        wait.cancel()
                        scaler.decided.clear()
                for scaler in scalers:
                    for kind, since in (("step", step_at), ("full", step_at), ("zero", held_at)):
                        found = scaler.first_out(
                            held_variant if kind == "zero" else "a",
                            since,
                            EXPECTED if kind == "full" else 1,
                        )
                        seconds = found[0] - since if found else None
                        results[kind][scaler.interval].append(seconds)
                        shown = f"{seconds:5.1f} s" if seconds is not None else "none   "
                        what = {
                            "step": "load step -> scale-out",
                            "full": f"load step -> {EXPECTED} inst.",
                            "zero": "held -> 0 to 1",
                        }[kind]
                        detail = f"{found[2]}" if found else "no decision"
                        print(f"  run {repeat + 1}, every {scaler.interval:g} s: {what:23}"
                              f" {shown}  ({detail})", flush=True)  # fmt: skip
                        if kind == "step" and found and found[1] < EXPECTED:
                            undershoots[scaler.interval] += 1
                # The held request's variant gets its instance, as the operator's
                # table does once the pod is ready; then back to zero.
                await apply_table(session, routes, router_url, table(server_url, repeat + 1))
                status = await held
                if status != 200:
                    print(f"  the held request was answered {status}", flush=True)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
    failed = {s for s in load.statuses if s != 200}
    if failed:
        print(f"  requests not answered 200: {load.statuses} {load.errors[:3]}", flush=True)
    for interval, count in undershoots.items():
        if count:
            print(
                f"  every {interval:g} s: {count} of {args.repeats} first scale-outs were short of "
                f"{EXPECTED} instances (the scrape interval held the step, so its average rate "
                "was part low); the next interval scales out to the full count"
            )
    for scaler in scalers:
        if scaler.errors:
            print(f"  scrape errors every {scaler.interval:g} s: {scaler.errors[:3]}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--intervals", type=float, nargs="+", default=[15.0, 5.0],
        help="scrape intervals to measure, seconds (the operator's default: 15)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.repeats <= MAX_REPEATS:
        parser.error(f"--repeats must be 1 to {MAX_REPEATS}")

    workdir = Path(tempfile.mkdtemp(prefix="kubemaker-bench-scaling-"))
    model_base = workdir / "opt-ml"
    _, features = base.train_model(model_base / "model")
    body = base.csv_body(features[:1])
    server_port, router_port = base.free_port(), base.free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    router_url = f"http://127.0.0.1:{router_port}"
    routes = workdir / "routes.json"
    routes.write_text(table(server_url, 0).to_json())
    common = dict(os.environ, KUBEMAKER_BIND_ADDRESS="127.0.0.1")
    server = start(
        [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "serve"],
        dict(common, SAGEMAKER_BASE_DIR=str(model_base), SAGEMAKER_BIND_TO_PORT=str(server_port)),
        workdir / "server.log",
    )
    router = start(
        [sys.executable, "-m", "kubemaker_runtime.router", "--routes", str(routes),
         "--port", str(router_port)],
        common,
        workdir / "router.log",
    )  # fmt: skip
    started = time.monotonic()
    try:
        try:
            base.wait_ready(server_url + "/ping", server, timeout=60)
            base.wait_ready(router_url + "/ping", router, timeout=60)
        except RuntimeError as error:
            print(f"could not start: {error} (logs in {workdir})", file=sys.stderr)
            args.keep = True
            return 2
        print(
            f"load {LOW_RATE:g} -> {HIGH_RATE:g} requests/s, target "
            f"{TARGET_PER_INSTANCE:g} invocations/min/instance (expect 1 -> 5 instances); "
            f"scrape intervals {', '.join(f'{i:g} s' for i in args.intervals)}; "
            f"{args.repeats} runs",
            flush=True,
        )
        results = asyncio.run(measure(router_url, server_url, routes, body, args))
    finally:
        stop(router)
        stop(server)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nmedians of {args.repeats} runs ({time.monotonic() - started:.0f} s in all)")
    failed = False
    for interval in args.intervals:
        for kind, label in (("step", "load step -> first scale-out"),
                            ("full", f"load step -> {EXPECTED} instances"),
                            ("zero", "held request -> 0 to 1")):  # fmt: skip
            measured = results[kind][interval]
            # A run without a decision counts as infinitely slow.
            values = [m if m is not None else float("inf") for m in measured]
            median = statistics.median(values)
            runs = ", ".join(f"{m:.1f}" if m is not None else "none" for m in measured)
            line = f"every {interval:>4g} s: {label:30} median {median:5.1f} s  (runs: {runs})"
            if kind == "step":
                met = median <= TARGET_SECONDS
                failed |= not met
                line += (
                    f"  target <= {TARGET_SECONDS:g} s + pod start: {'met' if met else 'MISSED'}"
                )
            print(line)
    print("(the pod's start after the decision is not part of these figures)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
