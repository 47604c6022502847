"""Pipe mode: per-epoch FIFOs fed from S3 while a separate reader process reads them."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from process_support import wait_for

from kubemaker_runtime.agent import Agent
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig, ChannelConfig

# Reads <data>/<channel>_<epoch> to the end for the given epochs, as an algorithm would,
# and prints one JSON line per epoch with the bytes it got (hex).
READER = r"""
import json, sys
data, channel, epochs, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for epoch in range(epochs):
    with open(f"{data}/{channel}_{epoch}", "rb") as fifo:
        got = fifo.read(limit) if limit else fifo.read()
    print(json.dumps({"epoch": epoch, "data": got.hex()}), flush=True)
"""


def pipe_config(bucket: str, **channel: Any) -> AgentConfig:
    return AgentConfig(
        job_name="pipe-job",
        hosts=["algo-1"],
        channels=[
            ChannelConfig(name="train", uri=f"s3://{bucket}/pipe/", input_mode="Pipe", **channel)
        ],
        output_path=f"s3://{bucket}/out",
    )


def run_reader(paths: Paths, epochs: int, limit: int = 0) -> list[bytes]:
    result = subprocess.run(
        [sys.executable, "-c", READER, str(paths.data_dir), "train", str(epochs), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [bytes.fromhex(json.loads(line)["data"]) for line in result.stdout.splitlines()]


def put_objects(s3_client: Any, bucket: str, bodies: dict[str, bytes]) -> None:
    for key, body in bodies.items():
        s3_client.put_object(Bucket=bucket, Key=f"pipe/{key}", Body=body)


def test_two_epochs_read_to_the_end_by_another_process(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    bodies = {f"{d}/part-{i}.csv": f"{d},{i}\n".encode() * 8000 for d in "ab" for i in range(4)}
    put_objects(s3_client, s3_bucket, bodies)
    expected = b"".join(bodies[key] for key in sorted(bodies))
    assert len(expected) > 200_000  # several times a pipe's buffer
    paths = Paths(tmp_path / "ml")
    agent = Agent(pipe_config(s3_bucket), paths=paths)
    agent.prepare()
    assert paths.pipe_fifo("train", 0).is_fifo()  # there before the algorithm starts

    with agent.running():
        epochs = run_reader(paths, 2)
        # Epoch 2 is offered once epoch 1 is consumed; consumed FIFOs go away.
        wait_for(lambda: paths.pipe_fifo("train", 2).is_fifo(), 10, "the epoch-2 FIFO")
        wait_for(lambda: not paths.pipe_fifo("train", 0).exists(), 10, "epoch 0 removed")
    assert epochs == [expected, expected]
    report = agent.finish()
    assert report.outcome == "Completed"
    assert report.bytes_downloaded >= 2 * len(expected)


def test_gzip_objects_are_decompressed_in_pipe_mode(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    bodies = {"1.csv.gz": gzip.compress(b"1,2\n" * 100), "2.csv.gz": gzip.compress(b"3,4\n")}
    put_objects(s3_client, s3_bucket, bodies)
    paths = Paths(tmp_path / "ml")
    agent = Agent(pipe_config(s3_bucket, compression="Gzip"), paths=paths)
    agent.prepare()
    with agent.running():
        [epoch] = run_reader(paths, 1)
    assert epoch == b"1,2\n" * 100 + b"3,4\n"


def test_recordio_wraps_each_object_in_one_record(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    bodies = {"a": b"first object", "b": b"second", "c": b""}
    put_objects(s3_client, s3_bucket, bodies)
    paths = Paths(tmp_path / "ml")
    agent = Agent(pipe_config(s3_bucket, record_wrapper_type="RecordIO"), paths=paths)
    agent.prepare()
    with agent.running():
        [stream] = run_reader(paths, 1)
    records, offset = [], 0
    while offset < len(stream):
        magic, word = struct.unpack_from("<II", stream, offset)
        assert magic == 0xCED7230A and word >> 29 == 0
        length = word & ((1 << 29) - 1)
        records.append(stream[offset + 8 : offset + 8 + length])
        offset += 8 + length + (-length % 4)
    assert records == [bodies["a"], bodies["b"], bodies["c"]]


def test_a_reader_that_stops_early_gets_the_next_epoch(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    put_objects(s3_client, s3_bucket, {"big": b"z" * 500_000})
    paths = Paths(tmp_path / "ml")
    agent = Agent(pipe_config(s3_bucket), paths=paths)
    agent.prepare()
    with agent.running():
        first = run_reader(paths, 1, limit=10)  # reads 10 bytes of epoch 0, closes
        assert first == [b"z" * 10]
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print(len(open(sys.argv[1], 'rb').read()))",
                str(paths.pipe_fifo("train", 1)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    assert result.stdout.strip() == "500000"


def test_feeders_stop_promptly_when_nobody_reads(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    put_objects(s3_client, s3_bucket, {"x": b"x" * 1_000_000})
    paths = Paths(tmp_path / "ml")
    agent = Agent(pipe_config(s3_bucket), paths=paths)
    agent.prepare()
    with agent.running():
        # Open the FIFO and read one byte only, leaving the feeder blocked mid-write.
        reader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys,time; f=open(sys.argv[1],'rb'); f.read(1); print('ok', flush=True); "
                "time.sleep(60)",
                str(paths.pipe_fifo("train", 0)),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ok"
        started = time.monotonic()
    stopped_in = time.monotonic() - started
    reader.kill()
    reader.wait()
    assert stopped_in < 5
    assert agent.finish().outcome == "Completed"


def test_an_object_gone_mid_job_fails_the_agent_not_silently(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    put_objects(s3_client, s3_bucket, {"a": b"first\n", "b": b"second\n"})
    paths = Paths(tmp_path / "ml")
    agent = Agent(pipe_config(s3_bucket), paths=paths)
    agent.prepare()
    s3_client.delete_object(Bucket=s3_bucket, Key="pipe/b")  # listed, then deleted
    with agent.running():
        [epoch] = run_reader(paths, 1)
    assert epoch == b"first\n"  # the reader saw end of file after what could be sent
    report = agent.finish()
    assert report.outcome == "Failed" and report.agent_error_kind == "user"
    assert report.agent_error is not None and f"s3://{s3_bucket}/pipe/b" in report.agent_error
