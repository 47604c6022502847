"""Benchmark: S3 staging through the agent's own code against plain boto3 loops.

Starts moto's S3 server on loopback (its own process, as the data-plane tests do),
stores many small objects and one large one, and stages each set as a File-mode
channel through ``kubemaker_runtime.agent.staging.stage_channel`` (the function the
agent runs, on the store its ``StoreFactory`` makes) several times. Side by side in
every round, on the same server, two baselines a user might write by hand:

- small objects: one boto3 client, ``get_object`` in a plain loop (one thread);
- the large object: one boto3 ``client.download_file`` with boto3's defaults.

Prints medians (wall time, objects/s or MiB/s, CPU of this process and of the server,
S3 requests per object), the ratios and the targets:

- small objects: staging >= 1.2x the objects/s of the single-thread loop, at most
  1.5x its CPU (this process's) per object;
- the large object: staging >= 90% of ``download_file``'s MiB/s.

moto answers every request in Python on the same cores as the client, so absolute
figures say little about real S3; the ratios, the CPU per object and the requests per
object do. (moto copies the whole object for every ranged GET, so a much larger
object measures moto rather than the client.)
Exit code 0 when every target is met, 1 when one is missed, 2 when the benchmark
could not run.

    .venv/bin/python benchmarks/agent_staging.py [--small 500] [--small-kib 4]
                                                 [--large-mib 128] [--repeats 5]

The agent under test is whichever ``kubemaker_runtime`` is imported; to measure
another version, put its tree first on the path:

    git archive <commit> images/kubemaker_runtime | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/images .venv/bin/python benchmarks/agent_staging.py
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from kubemaker_runtime.agent.staging import stage_channel
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import ChannelConfig, StorageConfig
from kubemaker_runtime.storage import StoreFactory
from kubemaker_runtime.storage.s3 import S3Store

MiB = 1024 * 1024
BUCKET = "bench"
WORKERS = 8  # the agent's default --workers
TARGET_SMALL_RATIO = 1.2
TARGET_SMALL_CPU_RATIO = 1.5
TARGET_LARGE_RATIO = 0.90

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),  # noqa: SIM115  (closed with the process)
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto exited with code {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=2):
                return process, url
        except urllib.error.HTTPError:
            return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto did not answer within 30 s")


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Requests:
    """Counts the S3 requests a boto3 client sends, by operation."""

    def __init__(self, *clients: Any) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        for client in clients:
            client.meta.events.register("before-send.s3", self._count)

    def _count(self, event_name: str, **_: Any) -> None:
        self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def take(self) -> collections.Counter[str]:
        counts, self.counts = self.counts, collections.Counter()
        return counts


def populate(client: Any, small: int, small_kib: int, large_mib: int, workdir: Path) -> None:
    client.create_bucket(Bucket=BUCKET)
    body = os.urandom(small_kib * 1024)

    def put(i: int) -> None:
        client.put_object(Bucket=BUCKET, Key=f"small/{i % 10}/part-{i:05d}.bin", Body=body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(small)))
    big = workdir / "large.bin"
    with big.open("wb") as out:
        for _ in range(large_mib):
            out.write(os.urandom(MiB))
    client.upload_file(str(big), BUCKET, "large/large.bin")
    big.unlink()


def measure(server_pid: int, requests: Requests, run: Callable[[], int]) -> dict[str, float]:
    cpu, server_cpu = time.process_time(), process_cpu_seconds(server_pid)
    started = time.perf_counter()
    count = run()
    seconds = time.perf_counter() - started
    counts = requests.take()
    return {
        "seconds": seconds,
        "objects": count,
        "cpu": time.process_time() - cpu,
        "server_cpu": process_cpu_seconds(server_pid) - server_cpu,
        "requests": sum(counts.values()),
        "lists": counts["ListObjectsV2"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=500, help="number of small objects")
    parser.add_argument("--small-kib", type=int, default=4, help="size of each small object")
    parser.add_argument("--large-mib", type=int, default=128, help="size of the large object")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; medians are reported")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(tempfile.mkdtemp(prefix="kubemaker-bench-"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN"):
        os.environ.pop(name, None)
    os.environ.update(AWS_ENV)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(
        workdir / "none"
    )
    try:
        server, url = start_moto(workdir / "moto.log")
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        os.environ["AWS_ENDPOINT_URL_S3"] = url
        plain = boto3.session.Session().client("s3", endpoint_url=url, region_name="us-east-1")
        print(
            f"moto on {url}; cores: {os.cpu_count()}; storing {args.small} x "
            f"{args.small_kib} KiB and 1 x {args.large_mib} MiB ...",
            flush=True,
        )
        populate(plain, args.small, args.small_kib, args.large_mib, workdir)

        stores = StoreFactory(StorageConfig(s3_endpoint_url=url, region="us-east-1"))
        store = stores.for_uri(f"s3://{BUCKET}/")
        assert isinstance(store, S3Store)
        requests = Requests(plain, store.client)
        paths = Paths(workdir / "opt-ml")
        channels = {
            "small": ChannelConfig(name="small", uri=f"s3://{BUCKET}/small/"),
            "large": ChannelConfig(name="large", uri=f"s3://{BUCKET}/large/large.bin"),
        }

        def staging(kind: str) -> Callable[[], int]:
            def run() -> int:
                staged = stage_channel(
                    channels[kind], store, paths, host_index=0, num_hosts=1, workers=WORKERS
                )
                assert staged.stats.skipped == 0, "the channel directory was not emptied"
                return staged.stats.objects

            return run

        def loop_small() -> int:
            dest = workdir / "plain-small"
            pages = plain.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="small/")
            keys = [item["Key"] for page in pages for item in page["Contents"]]
            for key in keys:
                target = dest / key
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(plain.get_object(Bucket=BUCKET, Key=key)["Body"].read())
            return len(keys)

        def download_large() -> int:
            dest = workdir / "plain-large"
            dest.mkdir(parents=True, exist_ok=True)
            plain.download_file(BUCKET, "large/large.bin", str(dest / "large.bin"))
            return 1

        cases: dict[str, Callable[[], int]] = {
            "staging small": staging("small"),
            "loop small": loop_small,
            "staging large": staging("large"),
            "download_file large": download_large,
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
        print(f"{args.repeats} rounds, staging with --workers {WORKERS}", flush=True)
        for round_index in range(args.repeats):
            # Alternate which goes first, so neither always meets a warmer server.
            order = list(cases) if round_index % 2 == 0 else [*cases][::-1]
            for name in order:
                for leftover in (paths.data_dir, workdir / "plain-small", workdir / "plain-large"):
                    shutil.rmtree(leftover, ignore_errors=True)
                figures = measure(server.pid, requests, cases[name])
                runs[name].append(figures)
                print(
                    f"  {name:20} {figures['seconds']:6.2f} s  client CPU "
                    f"{figures['cpu']:5.2f} s  server CPU {figures['server_cpu']:5.2f} s  "
                    f"{figures['requests']:5.0f} requests",
                    flush=True,
                )
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    median = {
        name: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for name, results in runs.items()
    }
    print(f"\nmedians of {args.repeats} rounds; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{'':20} {'seconds':>8} {'objects/s':>10} {'MiB/s':>8} {'client CPU':>11} "
        f"{'server CPU':>11} {'requests/object':>16}"
    )
    sizes = {"small": args.small * args.small_kib / 1024, "large": float(args.large_mib)}
    for name, figures in median.items():
        mib = sizes[name.rsplit(" ", 1)[-1]]
        per_object = (figures["requests"] - figures["lists"]) / figures["objects"]
        seconds = figures["seconds"]
        print(
            f"{name:20} {seconds:8.2f} {figures['objects'] / seconds:10.0f} {mib / seconds:8.1f} "
            f"{figures['cpu']:10.2f}s {figures['server_cpu']:10.2f}s {per_object:16.2f}"
        )
    small_ratio = median["loop small"]["seconds"] / median["staging small"]["seconds"]
    small_cpu_ratio = median["staging small"]["cpu"] / median["loop small"]["cpu"]
    large_ratio = median["download_file large"]["seconds"] / median["staging large"]["seconds"]
    checks = [
        ("small objects/s: staging vs get_object loop", small_ratio, TARGET_SMALL_RATIO, True),
        (
            "small CPU/object: staging vs get_object loop",
            small_cpu_ratio,
            TARGET_SMALL_CPU_RATIO,
            False,
        ),
        ("large MiB/s: staging vs download_file", large_ratio, TARGET_LARGE_RATIO, True),
    ]
    print()
    failed = False
    for name, value, target, at_least in checks:
        met = value >= target if at_least else value <= target
        failed |= not met
        relation = ">=" if at_least else "<="
        print(
            f"{name:46} {value:6.2f}x  target {relation} {target:.2f}x  "
            f"{'met' if met else 'MISSED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
