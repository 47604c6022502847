"""Training metrics from the algorithm's log: when reads happen, what they find, and that a
failing read changes nothing but a debug line.

The KWOK control plane of the cluster tests has no kubelet, so no log can be read there
(that path is covered end to end in tests/cluster). A successful read is exercised here
against a loopback HTTP server answering the ``pods/log`` request as a kubelet would
through the apiserver; a failing one against a closed port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from kubemaker.api.training import TrainingJobSpec
from kubemaker.controllers.training_logs import (
    LIVE_SECONDS,
    LOG_LIMIT_BYTES,
    LOG_TAIL_LINES,
    SERIES_SECONDS,
    SINCE_OVERLAP_SECONDS,
    JobLog,
    LogRead,
    TrainingLogMetrics,
    plan_log_read,
)
from kubemaker.kube import Kube
from kubemaker.metric_definitions import MetricParser
from kubemaker.planners.training_status import read_status
from kubemaker.planners.training_views import ContainerView, PodView

KEY = ("ml", "bank")
RUNNING = read_status(
    {"trainingJobStatus": "InProgress", "secondaryStatus": "Training", "retryCount": 0}
)
COMPLETED = read_status(
    {"trainingJobStatus": "Completed", "secondaryStatus": "Completed", "retryCount": 0}
)


def spec(definitions: bool = True) -> TrainingJobSpec:
    algorithm: dict[str, Any] = {"algorithmName": "xgboost"}
    if definitions:
        algorithm["metricDefinitions"] = [
            {"name": "validation:auc", "regex": r"validation-auc:([0-9.]+)"},
            {"name": "train:auc", "regex": r"#011train-auc:([0-9.]+)"},
        ]
    return TrainingJobSpec.model_validate(
        {
            "algorithmSpecification": algorithm,
            "outputDataConfig": {"s3OutputPath": "s3://models/bank"},
            "resourceConfig": {"instanceType": "ml.m5.xlarge"},
        }
    )


def pod(state: str = "running", *, index: int = 0, attempt: int = 0) -> PodView:
    job = "bank" if attempt == 0 else f"bank-r{attempt}"
    return PodView(
        name=f"{job}-{index}-x7k2p",
        attempt=attempt,
        index=index,
        phase="Running",
        algorithm=ContainerView(name="algorithm", state=state),
    )


def job_log(**fields: Any) -> JobLog:
    return JobLog(MetricParser(spec().algorithm_specification.metric_definitions), **fields)


# --- when to read (pure) ------------------------------------------------------------------


def test_a_running_algorithm_is_read_now_and_then_every_minute() -> None:
    first = pod()
    read, wake = plan_log_read([pod(index=1), first], 0, job_log(), now=1000.0)
    assert read == LogRead(first.name, final=False, since_seconds=None)
    assert wake == LIVE_SECONDS
    # Read 10 s ago: nothing yet, come back in 50 s.
    assert plan_log_read([first], 0, job_log(last_read=990.0), now=1000.0) == (None, 50.0)
    # Read 70 s ago: the lines since then, with some overlap.
    read, _ = plan_log_read([first], 0, job_log(last_read=930.0), now=1000.0)
    assert read is not None and read.since_seconds == 70 + SINCE_OVERLAP_SECONDS


def test_an_ended_algorithm_is_read_once_more_to_the_end() -> None:
    ended = pod("terminated")
    read, wake = plan_log_read([ended], 0, job_log(last_read=990.0), now=1000.0)
    assert read == LogRead(ended.name, final=True) and wake is None
    assert plan_log_read([ended], 0, job_log(final_pod=ended.name), now=1000.0) == (None, None)


def test_only_the_first_host_of_the_current_attempt_is_read() -> None:
    old = pod("terminated", attempt=0)
    assert plan_log_read([old, pod(index=1, attempt=1)], 1, job_log(), now=0.0) == (None, None)
    current = pod(attempt=1)
    read, _ = plan_log_read([old, current], 1, job_log(attempt=0, last_read=0.0), now=1.0)
    # A new attempt starts from the end of its own log, whatever was read before.
    assert read == LogRead(current.name, final=False, since_seconds=None)


def test_nothing_is_read_before_the_algorithm_runs_or_live_after_the_job_ended() -> None:
    assert plan_log_read([pod("waiting")], 0, job_log(), now=0.0) == (None, None)
    assert plan_log_read([], 0, job_log(), now=0.0) == (None, None)
    assert plan_log_read([pod()], 0, job_log(), now=0.0, live=False) == (None, None)


# --- reading through the API --------------------------------------------------------------


class LogServer(BaseHTTPRequestHandler):
    """Answers GET .../pods/<name>/log as the apiserver does (text/plain)."""

    body: ClassVar[bytes] = b""
    requests: ClassVar[list[tuple[str, dict[str, list[str]]]]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        type(self).requests.append((url.path, parse_qs(url.query)))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def log_server() -> Iterator[str]:
    LogServer.requests = []
    server = HTTPServer(("127.0.0.1", 0), LogServer)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class Harness:
    def __init__(self, host: str) -> None:
        configuration = client.Configuration()
        configuration.host = host
        configuration.retries = False
        self.kube = Kube(client.ApiClient(configuration), max_workers=1)
        self.requeued: list[Any] = []
        self.delayed: list[tuple[Any, float]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.logs = TrainingLogMetrics(
            self.kube,
            requeue=self.requeued.append,
            requeue_after=lambda key, delay: self.delayed.append((key, delay)),
            spawn=self.spawn,
        )

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks.append(asyncio.create_task(coroutine))

    async def settle(self) -> None:
        await asyncio.gather(*self.tasks)
        self.tasks.clear()

    def close(self) -> None:
        self.kube.close()


def test_live_and_final_reads_find_the_last_values(log_server: str) -> None:
    async def scenario() -> None:
        harness = Harness(log_server)
        logs = harness.logs
        LogServer.body = b"[0]#011train-auc:0.80#011validation-auc:0.79\n[1]#011train-auc:0.85\n"
        logs.schedule(KEY, spec(), RUNNING, [pod()])
        logs.schedule(KEY, spec(), RUNNING, [pod()])  # one read at a time
        await harness.settle()
        assert logs.latest(KEY) == {"train:auc": 0.85, "validation:auc": 0.79}
        assert logs.final(KEY) == {}  # live values are for the gauges, not the status
        assert harness.requeued == [KEY] and harness.delayed == [(KEY, LIVE_SECONDS)]
        path, query = LogServer.requests[0]
        assert path == "/api/v1/namespaces/ml/pods/bank-0-x7k2p/log"
        assert query == {
            "container": ["algorithm"],
            "tailLines": [str(LOG_TAIL_LINES)],
            "limitBytes": [str(LOG_LIMIT_BYTES)],
            "timestamps": ["true"],
        }

        # The end of the log, cut at limitBytes in the middle of a line: that line is
        # left out rather than misread (0.9 of 0.93).
        LogServer.body = (
            b"validation-auc:0.91\n".ljust(LOG_LIMIT_BYTES - 20, b" ") + b"\nvalidation-auc:0.93"
        )
        logs.schedule(KEY, spec(), RUNNING, [pod("terminated")])
        await harness.settle()
        assert logs.final(KEY) == {0: {"train:auc": 0.85, "validation:auc": 0.91}}
        assert "sinceSeconds" not in LogServer.requests[1][1]
        # Nothing more to read; once the job has ended its values are in the status and
        # dropped here.
        logs.schedule(KEY, spec(), RUNNING, [pod("terminated")])
        assert len(harness.tasks) == 0 and len(logs) == 1
        logs.schedule(KEY, spec(), COMPLETED, [pod("terminated")])
        assert len(logs) == 0 and logs.final(KEY) == {}
        harness.close()

    asyncio.run(scenario())


def test_overlapping_reads_feed_each_line_once_so_steps_count_values(log_server: str) -> None:
    """Live reads overlap (sinceSeconds + a margin): the kubelet's timestamps, whose
    trailing zeros it trims, keep a line from being fed twice and a step from repeating."""

    async def scenario() -> None:
        harness = Harness(log_server)
        logs = harness.logs
        LogServer.body = (
            b"2026-12-02T08:00:01.5Z [0]#011validation-auc:0.70\n"
            b"2026-12-02T08:00:01.51Z [1]#011validation-auc:0.72\n"
        )
        logs.schedule(KEY, spec(), RUNNING, [pod()], series=True)
        await harness.settle()
        assert harness.delayed == [(KEY, SERIES_SECONDS)]
        # The next read repeats the second line and brings a third.
        LogServer.body = (
            b"2026-12-02T08:00:01.51Z [1]#011validation-auc:0.72\n"
            b"2026-12-02T08:00:01.6Z [2]#011validation-auc:0.75\n"
        )
        logs._jobs[KEY].last_read = None  # due now, without waiting SERIES_SECONDS
        logs.schedule(KEY, spec(), RUNNING, [pod()], series=True)
        await harness.settle()
        assert logs.series(KEY) == {0: {"validation:auc": [(1, 0.70), (2, 0.72), (3, 0.75)]}}
        harness.close()

    asyncio.run(scenario())


def test_finished_jobs_and_jobs_without_definitions_are_never_read(log_server: str) -> None:
    async def scenario() -> None:
        harness = Harness(log_server)
        harness.logs.schedule(KEY, spec(definitions=False), RUNNING, [pod()])
        # A restarted operator meets finished jobs: their metrics are in their status.
        harness.logs.schedule(KEY, spec(), COMPLETED, [pod("terminated")])
        assert harness.tasks == [] and len(harness.logs) == 0
        harness.close()

    asyncio.run(scenario())
    assert LogServer.requests == []


def test_a_failing_read_is_a_debug_line_and_is_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens

    async def scenario() -> None:
        harness = Harness(closed)
        ended = pod("terminated")
        harness.logs.schedule(KEY, spec(), RUNNING, [ended])
        await harness.settle()
        assert harness.requeued == [KEY]  # the reconcile goes on without log values
        assert harness.logs.final(KEY) == {0: {}}
        harness.logs.schedule(KEY, spec(), RUNNING, [ended])
        assert harness.tasks == []
        harness.close()

    with caplog.at_level(logging.DEBUG, logger="kubemaker.controllers.training_logs"):
        asyncio.run(scenario())
    (record,) = caplog.records
    assert record.levelno == logging.DEBUG
    assert "Could not read the log of ml/bank-0-x7k2p" in record.getMessage()
