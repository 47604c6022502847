#!/usr/bin/env python3
"""Apply N TrainingJobs at once and time the operator: until every Job exists, peak RSS.

    .venv/bin/python benchmarks/apply_trainingjobs.py            # N = 100, 500, 1000
    .venv/bin/python benchmarks/apply_trainingjobs.py -n 200 --until-training

Starts (or reuses) the local control plane of tests/cluster/localcluster.py, installs
the chart (ServiceAccount, RBAC, config), and for each N runs a fresh operator
(``python -m kubemaker operator``, as in the cluster tests: the chart's ServiceAccount,
one namespace) while N TrainingJobs are created with parallel API calls. A watch on
the namespace's Jobs stops the clock when the N-th Job appears; the operator's peak
resident memory is its VmHWM (/proc/<pid>/status). Targets (issue 3): 1000 jobs in
60 s or less, RSS at most 250 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import localcluster  # noqa: E402
from operator_harness import OperatorProcess, installed_chart, training_job  # noqa: E402

TARGET_SECONDS = {1000: 60.0}
TARGET_RSS_MB = 250.0
# Small enough that 1000 pods fit on the simulated CPU nodes with room to spare.
INSTANCE_TYPE = "ml.m5.large"
# As a real XGBoost job: the operator reads the log of every training job for these
# (on KWOK every read fails fast: no kubelet).
ALGORITHM = {
    "algorithmName": "xgboost",
    "metricDefinitions": [
        {"name": "train:auc", "regex": r".*\[[0-9]+\].*#011train-auc:([-+]?[0-9]*\.?[0-9]+)"},
        {"name": "validation:auc", "regex": r".*#011validation-auc:([-+]?[0-9]*\.?[0-9]+)"},
    ],
}


@dataclass
class Result:
    n: int
    created_seconds: float  # all TrainingJobs accepted by the apiserver
    jobs_seconds: float  # every child Job exists
    training_seconds: float | None  # every TrainingJob reported Training (optional)
    peak_rss_mb: float
    final_rss_mb: float


def run_one(
    n: int,
    *,
    api: Any,
    chart: Any,
    kubectl: Path,
    kubeconfig: Path,
    workers: int,
    until_training: bool,
    timeout: float,
) -> Result:
    from kubernetes import client, watch

    namespace = f"bench-{n}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    batch = client.BatchV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    operator = OperatorProcess(
        chart.operator_kubeconfig,
        config_file=chart.config_file,
        namespaces=[namespace],
        workers=workers,
    )
    try:
        operator.start()
        seen: set[str] = set()
        all_jobs = threading.Event()
        stop_watch = threading.Event()

        def watch_jobs() -> None:
            # A watch from "now": every Job the operator creates arrives as ADDED.
            w = watch.Watch()
            listing = batch.list_namespaced_job(namespace, limit=1)
            version = listing.metadata.resource_version
            while not stop_watch.is_set() and not all_jobs.is_set():
                for event in w.stream(
                    batch.list_namespaced_job,
                    namespace,
                    resource_version=version,
                    timeout_seconds=30,
                    _request_timeout=60,
                ):
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    if event["type"] == "ADDED":
                        seen.add(obj.metadata.name)
                        if len(seen) >= n:
                            all_jobs.set()
                            w.stop()
                            break
                    if stop_watch.is_set():
                        w.stop()
                        break

        watcher = threading.Thread(target=watch_jobs, daemon=True)
        watcher.start()
        time.sleep(0.5)  # let the watch connect before the first object is created

        def create(i: int) -> None:
            body = training_job(
                f"bench-{i:04d}",
                instance_type=INSTANCE_TYPE,
                kwok={"duration": "600s"},
                algorithmSpecification=ALGORITHM,
            )
            for attempt in range(5):
                try:
                    custom.create_namespaced_custom_object(
                        "kubemaker.io", "v1alpha1", namespace, "trainingjobs", body
                    )
                    return
                except client.exceptions.ApiException as exc:
                    if exc.status in (429, 500, 503, 504) and attempt < 4:
                        time.sleep(0.2 * (attempt + 1))
                        continue
                    raise

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(create, range(n)))
        created = time.monotonic() - start
        if not all_jobs.wait(timeout):
            raise TimeoutError(f"only {len(seen)} of {n} Jobs after {timeout:.0f}s")
        jobs_done = time.monotonic() - start

        training = None
        if until_training:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                items = custom.list_namespaced_custom_object(
                    "kubemaker.io", "v1alpha1", namespace, "trainingjobs"
                )["items"]
                ready = sum(
                    1 for i in items if (i.get("status") or {}).get("secondaryStatus") == "Training"
                )
                if ready >= n:
                    training = time.monotonic() - start
                    break
                time.sleep(1.0)
        rss, hwm = operator.memory()
        stop_watch.set()
        return Result(n, created, jobs_done, training, hwm / 2**20, rss / 2**20)
    finally:
        operator.stop()
        operator.log_path.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            core.delete_namespace(namespace)
        # Let garbage collection empty the namespace before the next run measures.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                core.read_namespace(namespace)
            except client.exceptions.ApiException:
                break
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n",
        type=int,
        action="append",
        dest="sizes",
        help="number of TrainingJobs (repeatable; default 100, 500, 1000)",
    )
    parser.add_argument("--workers", type=int, default=16, help="operator --workers")
    parser.add_argument(
        "--until-training",
        action="store_true",
        help="also time until every TrainingJob reports Training",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="per run, seconds")
    args = parser.parse_args(argv)
    sizes = args.sizes or [100, 500, 1000]

    localcluster.register_session()
    results: list[Result] = []
    try:
        localcluster.up(owner="benchmark")
        kubeconfig = Path(localcluster.KUBECONFIG)
        kubectl = Path(localcluster.binary("kubectl"))
        helm = Path(localcluster.binary("helm"))
        from kubernetes.config import new_client_from_config

        api = new_client_from_config(config_file=str(kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        with installed_chart(kubectl, helm, kubeconfig) as chart:
            for n in sizes:
                print(f"[bench] applying {n} TrainingJobs ...", file=sys.stderr, flush=True)
                result = run_one(
                    n,
                    api=api,
                    chart=chart,
                    kubectl=kubectl,
                    kubeconfig=kubeconfig,
                    workers=args.workers,
                    until_training=args.until_training,
                    timeout=args.timeout,
                )
                results.append(result)
                print(
                    f"[bench] N={n}: Jobs after {result.jobs_seconds:.1f}s, "
                    f"peak RSS {result.peak_rss_mb:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        localcluster.release_session()

    print()
    print(
        f"{'N':>5}  {'created':>8}  {'all Jobs':>8}  {'target':>7}  {'ratio':>6}  "
        f"{'Training':>8}  {'peak RSS':>9}  {'target':>7}  {'ratio':>6}  {'jobs/s':>6}"
    )
    for r in results:
        target = TARGET_SECONDS.get(r.n)
        time_target = f"{target:.0f} s" if target else "-"
        time_ratio = f"{r.jobs_seconds / target:.2f}" if target else "-"
        training = f"{r.training_seconds:.1f} s" if r.training_seconds is not None else "-"
        print(
            f"{r.n:>5}  {r.created_seconds:>6.1f} s  {r.jobs_seconds:>6.1f} s  {time_target:>7}  "
            f"{time_ratio:>6}  {training:>8}  {r.peak_rss_mb:>6.0f} MB  "
            f"{TARGET_RSS_MB:>4.0f} MB  {r.peak_rss_mb / TARGET_RSS_MB:>6.2f}  "
            f"{r.n / r.jobs_seconds:>6.1f}"
        )
    met = all(
        r.jobs_seconds <= TARGET_SECONDS.get(r.n, float("inf")) and r.peak_rss_mb <= TARGET_RSS_MB
        for r in results
    )
    print(f"\ntargets {'met' if met else 'MISSED'} (1000 Jobs <= 60 s, peak RSS <= 250 MB)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
