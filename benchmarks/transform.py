"""Benchmark: ``kubemaker local transform`` against reading, predicting and writing in process.

Trains a 100-tree XGBoost model on 20 features (as the serving benchmark trains its
own), packages it as ``model.tar.gz`` (``xgboost-model`` inside, the file the built-in
server loads), writes a CSV of ``--rows`` rows of 20 float features (about 190 bytes a
row, generated a block at a time), and measures, side by side in one run:

- A: ``kubemaker local transform -f bt.yaml``, real processes: the CLI, in which the
  transformer runs, and the built-in XGBoost server it starts. MultiRecord, 6 MB
  payloads, ``assembleWith: Line``, once with ``maxConcurrentTransforms`` 1 and once
  with 2 (the server gets as many workers). The transform's time is the transformer's
  own: its final progress line gives records and records/s since the transformer was
  made (listing the input, every request, writing and moving the output into place;
  not the server's start). Peak RSS is ``VmHWM`` of the CLI's process (the transformer)
  and of the server's processes, polled from /proc every 50 ms.
- B: the same file read in process in 6 MB blocks (``pyarrow.csv.open_csv``, the
  fastest reader installed, all cores), ``Booster.inplace_predict`` (all cores), the
  predictions written one per line as the server encodes them (orjson). The better of
  two runs (one before A, one after) is the baseline: the stricter choice.

A's output must have one line per row and equal B's predictions (float32, rtol 1e-6,
every row). A then runs again on a file ``--scale`` times larger (the first file
repeated) with the better ``maxConcurrentTransforms``, for the transformer's memory.
Targets:

- A's rows/s (the better ``maxConcurrentTransforms``) >= 80% of B's
- the transformer's peak RSS on the larger file <= 110% of the 1x run's + 20 MB

``--profile`` adds where A's time goes: the server's decode / predict / encode of one
6 MB batch in process, the transformer's splitting and batching alone, and a cProfile
of ``Transformer.run`` (its main thread) against a server started here. Exit code 0
when every target is met, 1 when one is missed, 2 when the benchmark could not run.

    .venv/bin/python benchmarks/transform.py [--rows 1000000] [--scale 4] [--keep] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import xgboost as xgb

FEATURES = 20
TREES = 100
PAYLOAD_MB = 6
MB = 1 << 20
CONCURRENCIES = (1, 2)
TARGET_RATIO = 0.80
TARGET_MEMORY_RATIO = 1.10
TARGET_MEMORY_SLACK_MB = 20.0
GENERATE_ROWS = 50_000
POLL_SECONDS = 0.05
SCAN_SECONDS = 0.5
TICKS = os.sysconf("SC_CLK_TCK")
KUBEMAKER = Path(sys.executable).parent / "kubemaker"
# The transformer's final progress line: "1/1 objects, 1000000 records (123,456/s), 8.1s".
PROGRESS = re.compile(r"(\d+)/(\d+) objects, (\d+) records \(([\d,]+)/s\)")

MANIFEST = """\
apiVersion: kubemaker.io/v1alpha1
kind: BatchTransform
metadata:
  name: {name}
spec:
  model:
    modelDataUrl: {model}
    algorithmName: xgboost
  transformInput:
    uri: {input}
    contentType: text/csv
    splitType: Line
  batchStrategy: MultiRecord
  maxPayloadInMB: {payload}
  maxConcurrentTransforms: {concurrency}
  transformOutput:
    s3OutputPath: {output}
    accept: text/csv
    assembleWith: Line
  transformResources:
    instanceType: ml.m5.large
    instanceCount: 1
"""


class BenchError(Exception):
    """The benchmark could not run (exit code 2)."""


# --- the model and the data -----------------------------------------------------------------


def train_model(workdir: Path) -> tuple[xgb.Booster, Path]:
    """The serving benchmark's model on 20 features; the booster and its model.tar.gz."""
    rng = np.random.default_rng(7)
    features = rng.normal(size=(20_000, FEATURES)).astype(np.float32)
    logits = features[:, 0] * 2 + features[:, 1] * features[:, 2] - np.abs(features[:, 3])
    labels = (logits + rng.normal(scale=0.5, size=len(logits)) > 0).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2},
        xgb.DMatrix(features, label=labels),
        num_boost_round=TREES,
    )
    model_dir = workdir / "opt-ml" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
    archive = workdir / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_dir / "xgboost-model", arcname="xgboost-model")
    return booster, archive


def write_csv(path: Path, rows: int) -> int:
    """``rows`` rows of 20 normal floats (6 decimals), a block at a time; the file's size."""
    rng = np.random.default_rng(11)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for start in range(0, rows, GENERATE_ROWS):
            block = np.round(rng.normal(size=(min(GENERATE_ROWS, rows - start), FEATURES)), 6)
            text = orjson.dumps(block, option=orjson.OPT_SERIALIZE_NUMPY)
            out.write(text[2:-2].replace(b"],[", b"\n") + b"\n")
    return path.stat().st_size


def repeat_file(source: Path, target: Path, times: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for _ in range(times):
            with source.open("rb") as part:
                shutil.copyfileobj(part, out, 16 * MB)
    return target.stat().st_size


def encode_predictions(scores: np.ndarray) -> bytes:
    """One prediction a line, float32's shortest text (as the server writes them)."""
    encoded = orjson.dumps(np.ascontiguousarray(scores), option=orjson.OPT_SERIALIZE_NUMPY)
    return encoded[1:-1].replace(b",", b"\n") + b"\n"


def read_predictions(path: Path) -> tuple[int, np.ndarray]:
    """The number of lines of an output file and its values."""
    data = path.read_bytes()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    try:
        values = orjson.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError as exc:
        raise BenchError(f"{path} is not one number a line: {exc}") from None
    return lines, np.array(values, dtype=np.float32)


# --- B: in process ----------------------------------------------------------------------------


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS  # less idle and iowait


def in_process(
    booster: xgb.Booster, csv: Path, out_path: Path, threads: int
) -> tuple[float, np.ndarray, float]:
    """Read in 6 MB blocks, predict, write: seconds, the predictions, and the CPU seconds
    other processes used meanwhile."""
    booster.set_param({"nthread": threads})
    names = [f"f{i}" for i in range(FEATURES)]
    read = pacsv.ReadOptions(
        block_size=PAYLOAD_MB * MB, column_names=names, use_threads=threads > 1
    )
    # float64 then float32, as the server parses (orjson, then np.array(..., float32)).
    convert = pacsv.ConvertOptions(column_types={name: pa.float64() for name in names})
    predictions = []
    busy, own = machine_busy(), time.process_time()
    started = time.perf_counter()
    with (
        pacsv.open_csv(csv, read_options=read, convert_options=convert) as reader,
        out_path.open("wb") as out,
    ):
        for batch in reader:
            features = np.empty((batch.num_rows, FEATURES), dtype=np.float32)
            for index, column in enumerate(batch.columns):
                features[:, index] = column.to_numpy()
            scores = booster.inplace_predict(features, validate_features=False)
            out.write(encode_predictions(scores))
            predictions.append(scores)
    seconds = time.perf_counter() - started
    other = machine_busy() - busy - (time.process_time() - own)
    return seconds, np.concatenate(predictions), other


# --- A: kubemaker local transform -------------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, float, int] | None:
    """VmHWM (kB), CPU seconds (user + system) and parent of a live process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:  # a zombie
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(found.group(1)), (int(fields[11]) + int(fields[12])) / TICKS, int(fields[1])


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    tree: set[int] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


class Monitor(threading.Thread):
    """Peak RSS (VmHWM) and CPU time of a process and its descendants, polled."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peaks: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.known: set[int] = set()
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        scanned = 0.0
        while not self._halt.is_set():
            now = time.monotonic()
            if now - scanned >= SCAN_SECONDS:
                found = descendants(self.root)
                with self._lock:
                    self.known |= found
                scanned = now
            self.sample()
            self._halt.wait(POLL_SECONDS)

    def sample(self) -> dict[int, float]:
        """Reads every known process now; their CPU seconds."""
        with self._lock:
            pids = [self.root, *self.known]
        now: dict[int, float] = {}
        for pid in pids:
            got = proc_stat(pid)
            if got is None:
                continue
            hwm, cpu, _ = got
            now[pid] = cpu
            with self._lock:
                self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                self.cpu[pid] = cpu
        return now

    def finish(self) -> None:
        self._halt.set()
        self.join()


@dataclass
class Transform:
    """One ``kubemaker local transform`` run."""

    label: str
    concurrency: int
    records: int
    rate: float  # records/s, the transformer's own figure
    between_lines_s: float  # from the "transforming" log line to the progress line
    command_s: float  # the whole command: server start and stop included
    transformer_start_mb: float  # the transformer's VmHWM when the transform began
    transformer_peak_mb: float
    server_peak_mb: float  # the largest of the server's processes
    server_processes: int
    transformer_cpu_s: float  # during the transform
    server_cpu_s: float
    other_cpu_s: float  # other processes (this benchmark's polling included)
    output: Path
    log: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.records / self.rate


def run_transform(
    workdir: Path, name: str, input_dir: Path, archive: Path, concurrency: int
) -> Transform:
    out_dir = workdir / f"out-{name}"
    manifest = workdir / f"{name}.yaml"
    manifest.write_text(
        MANIFEST.format(
            name=name,
            model=archive.as_uri(),
            input=input_dir.as_uri() + "/",
            output=out_dir.as_uri() + "/",
            payload=PAYLOAD_MB,
            concurrency=concurrency,
        )
    )
    command = [str(KUBEMAKER), "local", "transform", "-f", str(manifest)]
    command += ["--workdir", str(workdir / "kubemaker-workdir")]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    monitor = Monitor(process.pid)
    monitor.start()
    log: list[str] = []
    marks: dict[str, float] = {}
    cpu: dict[str, dict[int, float]] = {}
    busy: dict[str, float] = {}
    start_hwm: list[int] = []
    progress: list[re.Match[str]] = []

    def read_output() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            now = time.perf_counter()
            line = raw.decode("utf-8", errors="replace").rstrip()
            log.append(line)
            if "kubemaker: transforming " in line and "begin" not in marks:
                marks["begin"] = now
                cpu["begin"] = monitor.sample()
                busy["begin"] = machine_busy()
                start_hwm.append(monitor.peaks.get(process.pid, 0))
            matched = PROGRESS.search(line)
            if matched:
                marks["end"] = now
                cpu["end"] = monitor.sample()
                busy["end"] = machine_busy()
                progress.append(matched)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=3600)
    except subprocess.TimeoutExpired:
        process.kill()
        raise BenchError(f"{name}: kubemaker local transform ran over an hour") from None
    finally:
        monitor.finish()
    command_s = time.perf_counter() - started
    reader.join(timeout=30)
    tail = "\n".join(log[-20:])
    if code != 0 or not progress or "begin" not in marks:
        raise BenchError(f"{name}: kubemaker local transform exited {code}:\n{tail}")
    matched = progress[-1]
    if matched.group(1) != matched.group(2):
        raise BenchError(f"{name}: not every object was transformed:\n{tail}")
    server = [pid for pid in monitor.peaks if pid != process.pid]
    begin, end = cpu["begin"], cpu["end"]
    transformer_cpu = end.get(process.pid, 0.0) - begin.get(process.pid, 0.0)
    server_cpu = sum(end[pid] - begin.get(pid, 0.0) for pid in end if pid != process.pid)
    return Transform(
        label=name,
        concurrency=concurrency,
        records=int(matched.group(3)),
        rate=float(matched.group(4).replace(",", "")),
        between_lines_s=marks["end"] - marks["begin"],
        command_s=command_s,
        transformer_start_mb=start_hwm[0] / 1024,
        transformer_peak_mb=monitor.peaks[process.pid] / 1024,
        server_peak_mb=max((monitor.peaks[pid] for pid in server), default=0) / 1024,
        server_processes=len(server),
        transformer_cpu_s=transformer_cpu,
        server_cpu_s=server_cpu,
        other_cpu_s=busy["end"] - busy["begin"] - transformer_cpu - server_cpu,
        output=out_dir / "data.csv.out",
        log=log,
    )


def same_bytes(path: Path, expected: Path, times: int) -> bool:
    """Whether ``path`` holds ``expected`` repeated ``times`` times."""
    want, got = hashlib.sha256(), hashlib.sha256()
    data = expected.read_bytes()
    for _ in range(times):
        want.update(data)
    with path.open("rb") as stream:
        while chunk := stream.read(16 * MB):
            got.update(chunk)
    return want.digest() == got.digest()


# --- --profile: where A's time goes -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise BenchError(f"the server was not ready within {timeout}s")


def tree_cpu_seconds(root: int) -> float:
    total = 0.0
    for pid in (root, *descendants(root)):
        got = proc_stat(pid)
        total += got[1] if got else 0.0
    return total


def best_of(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def profile(workdir: Path, csv: Path, manifest: Path, concurrency: int) -> None:
    from kubemaker.api import BatchTransform
    from kubemaker.builders.transform import server_environment, transform_config
    from kubemaker.local.manifest import load
    from kubemaker_runtime.algorithms.xgboost.serve import XGBoostModel
    from kubemaker_runtime.protocol import StorageConfig
    from kubemaker_runtime.transform import records
    from kubemaker_runtime.transform.runner import Transformer, read_chunks

    print("\n--- profile ---", flush=True)
    # 1. One 6 MB batch through the server's model code, in process, one thread.
    with csv.open("rb") as stream:
        head = stream.read(PAYLOAD_MB * MB)
    body = head[: head.rindex(b"\n")]
    rows = body.count(b"\n") + 1
    os.environ["SAGEMAKER_BATCH"] = "true"
    model = XGBoostModel(workdir / "opt-ml" / "model")
    model.load()
    features = model.decode(body, "text/csv")
    scores = model.predict(features)
    stages = {
        "server decode (orjson -> float32)": best_of(3, lambda: model.decode(body, "text/csv")),
        "server predict (inplace_predict, 1 thread)": best_of(3, lambda: model.predict(features)),
        "server encode (orjson)": best_of(3, lambda: model.encode(scores, "text/csv")),
    }
    names = [f"f{i}" for i in range(FEATURES)]
    read = pacsv.ReadOptions(column_names=names, use_threads=False)
    convert = pacsv.ConvertOptions(column_types={name: pa.float64() for name in names})
    stages["(B's parse, pyarrow, 1 thread)"] = best_of(
        3, lambda: pacsv.read_csv(io.BytesIO(body), read_options=read, convert_options=convert)
    )
    print(f"one batch: {rows} rows, {len(body) / MB:.2f} MB")
    for stage, seconds in stages.items():
        print(f"  {stage:44} {seconds * 1000:7.1f} ms  {rows / seconds:12,.0f} rows/s")
    per_worker = rows / sum(seconds for stage, seconds in stages.items() if "server" in stage)
    print(f"  server model code, per worker (decode + predict + encode): {per_worker:,.0f} rows/s")

    # 2. The transformer's own work without a server: split into lines, batch.
    def split_and_batch() -> int:
        count = 0
        with csv.open("rb") as stream:
            lines = records.iter_records(read_chunks(stream, gzip=False, uri=""), "Line")
            for batch in records.batches(
                lines, strategy="MultiRecord", max_payload=PAYLOAD_MB * MB, split_type="Line"
            ):
                count += batch.count
        return count

    started = time.perf_counter()
    count = split_and_batch()
    seconds = time.perf_counter() - started
    print(
        f"transformer split + batch alone (no server): {count} rows in {seconds:.2f} s, "
        f"{count / seconds:,.0f} rows/s"
    )

    # 3. cProfile of Transformer.run (the main thread) against a server started here.
    job = load(manifest, BatchTransform)
    assert isinstance(job, BatchTransform)
    port = free_port()
    env = dict(
        os.environ,
        **server_environment(job.spec),
        SAGEMAKER_BASE_DIR=str(workdir / "opt-ml"),
        SAGEMAKER_BIND_TO_PORT=str(port),
        SAGEMAKER_MODEL_SERVER_WORKERS=str(concurrency),
        KUBEMAKER_BIND_ADDRESS="127.0.0.1",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    out_dir = workdir / "out-profile"
    try:
        wait_ready(url + "/ping", server, timeout=60)
        config = transform_config(
            job.spec, job_name="profile", storage=StorageConfig(), server_url=url
        )
        config = config.model_copy(update={"output_uri": out_dir.as_uri() + "/"})
        transformer = Transformer(config)
        profiler = cProfile.Profile()
        cpu_before = tree_cpu_seconds(server.pid)
        own_before = time.process_time()
        started = time.perf_counter()
        profiler.enable()
        report = transformer.run()
        profiler.disable()
        wall = time.perf_counter() - started
        own_cpu = time.process_time() - own_before
        server_cpu = tree_cpu_seconds(server.pid) - cpu_before
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    print(
        f"Transformer.run under cProfile ({concurrency} in flight): {report.outcome}, "
        f"{report.records} records in {wall:.2f} s ({report.records / wall:,.0f}/s); "
        f"CPU: this process {own_cpu:.2f} s (profiler included), server {server_cpu:.2f} s"
    )
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(15)
    stats.sort_stats("cumulative").print_stats(15)
    print(text.getvalue())


# --- the run ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the CSV")
    parser.add_argument(
        "--scale", type=int, default=4, help="the memory check's file: this many times larger"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--profile", action="store_true", help="add where A's time goes")
    args = parser.parse_args()
    if not KUBEMAKER.exists():
        print(f"{KUBEMAKER} is not installed (uv sync)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="kubemaker-bench-transform-"))
    try:
        return run(args, workdir)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    cores = len(os.sched_getaffinity(0))
    booster, archive = train_model(workdir)
    csv = workdir / "input-1x" / "data.csv"
    started = time.perf_counter()
    size = write_csv(csv, args.rows)
    print(
        f"model: {TREES} trees, depth 6, {FEATURES} features; cores: {cores}; "
        f"CSV: {args.rows:,} rows, {size / 1e6:.0f} MB (written in "
        f"{time.perf_counter() - started:.1f} s); payload {PAYLOAD_MB} MB, MultiRecord",
        flush=True,
    )

    print("B in process (pyarrow.csv 6 MB blocks + inplace_predict + write) ...", flush=True)
    b_first, expected, b_first_other = in_process(booster, csv, workdir / "in-process.out", cores)
    b_one_thread, _, b_one_other = in_process(booster, csv, workdir / "in-process-1.out", 1)

    runs: list[Transform] = []
    for concurrency in CONCURRENCIES:
        print(f"A kubemaker local transform, {concurrency} in flight ...", flush=True)
        runs.append(
            run_transform(workdir, f"bench-1x-c{concurrency}", csv.parent, archive, concurrency)
        )
    b_second, _, b_second_other = in_process(booster, csv, workdir / "in-process.out", cores)
    b_seconds, b_other = min((b_first, b_first_other), (b_second, b_second_other))
    b_rate = args.rows / b_seconds

    # Every 1x output: one line per row, B's predictions.
    problems = []
    for result in runs:
        lines, values = read_predictions(result.output)
        if lines != args.rows or len(values) != args.rows:
            problems.append(f"{result.label}: {lines} lines for {args.rows} rows")
            continue
        if not np.allclose(values, expected, rtol=1e-6, atol=0.0):
            worst = float(np.max(np.abs(values - expected) / np.abs(expected)))
            problems.append(f"{result.label}: predictions differ from B's (max rel {worst:.3g})")
    identical = all(same_bytes(r.output, workdir / "in-process.out", 1) for r in runs)

    best = max(runs, key=lambda r: r.rate)
    print(f"A on a {args.scale}x file, {best.concurrency} in flight ...", flush=True)
    big = workdir / f"input-{args.scale}x" / "data.csv"
    big_size = repeat_file(csv, big, args.scale)
    scaled = run_transform(
        workdir, f"bench-{args.scale}x-c{best.concurrency}", big.parent, archive, best.concurrency
    )
    if scaled.records != args.rows * args.scale:
        problems.append(f"{scaled.label}: {scaled.records} records for {args.rows * args.scale}")
    elif not same_bytes(scaled.output, best.output, args.scale):
        problems.append(f"{scaled.label}: the output is not the 1x output {args.scale} times")

    print(f"\nload average {os.getloadavg()[0]:.1f}; {args.scale}x file {big_size / 1e6:.0f} MB")

    def row(name: str, rows: int, seconds: float, other: float, a: Transform | None) -> str:
        rate = rows / seconds
        text = f"{name:34} {rows:9} {rate:9.0f} {seconds:6.2f} {rate / b_rate:6.1%}"
        if a is None:
            text += " " * 45
        else:
            text += (
                f" {a.transformer_peak_mb:6.0f} MB {a.transformer_start_mb:5.0f} MB "
                f"{a.server_peak_mb:6.0f} MB {a.transformer_cpu_s:7.2f}s {a.server_cpu_s:7.2f}s"
            )
        return text + f" {other:8.2f}s"

    print(
        f"{'':34} {'rows':>9} {'rows/s':>9} {'s':>6} {'vs B':>6} {'trf peak':>9} "
        f"{'(start)':>8} {'srv peak':>9} {'trf CPU':>8} {'srv CPU':>8} {'other CPU':>9}"
    )
    print(row(f"B in process, {cores} threads", args.rows, b_seconds, b_other, None))
    print(row("B in process, 1 thread (info)", args.rows, b_one_thread, b_one_other, None))
    for result in [*runs, scaled]:
        name = f"A local transform, {result.concurrency} in flight {result.records // args.rows}x"
        print(row(name, result.records, result.seconds, result.other_cpu_s, result))
    print(
        "\nA: s = records / records/s of the transformer's final progress line; the "
        '"transforming" log line to that line, seen from here: '
        + ", ".join(f"{r.between_lines_s:.2f} s" for r in [*runs, scaled])
        + "; whole commands (server start and stop included): "
        + ", ".join(f"{r.command_s:.2f} s" for r in [*runs, scaled])
    )
    print(
        "trf = the CLI's process (the transformer), peak = VmHWM, (start) = its VmHWM when "
        "the transform began; srv peak = the largest of the server's processes "
        f"({', '.join(str(r.server_processes) for r in [*runs, scaled])} processes); "
        "CPU = during the transform; other CPU = what the rest of the machine used meanwhile "
        "(this benchmark's polling included)"
    )
    print(
        f"B: best of {b_first:.2f} s and {b_second:.2f} s; output byte-identical to A's: "
        f"{'yes' if identical else 'no'}"
    )
    for problem in problems:
        print(f"WRONG OUTPUT: {problem}")

    memory_limit = best.transformer_peak_mb * TARGET_MEMORY_RATIO + TARGET_MEMORY_SLACK_MB
    checks = [
        (
            f"A rows/s ({best.concurrency} in flight) vs B rows/s",
            f"{best.rate / b_rate:.1%}",
            f">= {TARGET_RATIO:.0%}",
            best.rate / b_rate >= TARGET_RATIO,
        ),
        (
            f"transformer peak RSS {args.scale}x vs 1x (MB)",
            f"{scaled.transformer_peak_mb:.0f} vs {best.transformer_peak_mb:.0f}",
            f"<= {memory_limit:.0f}",
            scaled.transformer_peak_mb <= memory_limit,
        ),
        ("output: lines and predictions", "ok" if not problems else "wrong", "ok", not problems),
    ]
    print()
    for name, shown, goal, met in checks:
        print(f"{name:44} {shown:>10}  target {goal:>6}  {'met' if met else 'MISSED'}")
    if args.profile:
        profile(workdir, csv, workdir / f"{best.label}.yaml", best.concurrency)
    return 0 if all(met for *_, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
