"""The operator reads a running transformer's progress over real HTTP.

The transformer's side is the real :class:`~kubemaker_runtime.transform.main.Metrics`
(prometheus_client's HTTP server, as in a transform pod); the operator's side is the
real :func:`~kubemaker.controllers.transform.read_progress` with an aiohttp session.

In a cluster every transformer listens on the same metrics port at its own pod IP. The
tests that need several instances model that with loopback addresses (127.0.0.2,
127.0.0.3, ...: all of 127/8 is the loopback interface on Linux) sharing one port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import prometheus_client
import pytest
from process_support import free_port

from kubemaker.controllers.transform import read_progress
from kubemaker.planners.transform import Progress
from kubemaker_runtime.transform import runner
from kubemaker_runtime.transform.main import Metrics

READ_TIMEOUT = 5.0

# The transformer's gauges and counter, as prometheus_client writes them, for the fake
# servers below: valid Prometheus text with this progress.
METRICS_TEXT = (
    b"# TYPE kubemaker_transform_objects gauge\n"
    b'kubemaker_transform_objects{state="found"} 7.0\n'
    b'kubemaker_transform_objects{state="total"} 3.0\n'
    b'kubemaker_transform_objects{state="done"} 2.0\n'
    b"# TYPE kubemaker_transform_records counter\n"
    b"kubemaker_transform_records_total 60.0\n"
)
METRICS_PROGRESS = Progress(objects_found=7, objects_total=3, objects_done=2, records=60)

StartTransformer = Callable[..., Metrics]
Serve = Callable[[str, int, Callable[[BaseHTTPRequestHandler], object]], None]


@pytest.fixture
def start_transformer(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartTransformer]:
    """Start a real :class:`Metrics` server: ``start_transformer(port, address=None)``.

    prometheus_client's ``start_http_server`` is wrapped (not replaced) to keep the
    ``(server, thread)`` it returns, which :class:`Metrics` drops, so that the servers
    are shut down after the test; with ``address`` it binds that address instead of
    its default (all interfaces).
    """
    real = prometheus_client.start_http_server
    started: list[tuple[Any, threading.Thread]] = []
    bind: list[str] = []

    def recording(port: int, *args: Any, **kwargs: Any) -> tuple[Any, threading.Thread]:
        if bind:
            kwargs["addr"] = bind.pop()
        server, thread = real(port, *args, **kwargs)
        started.append((server, thread))
        return server, thread

    monkeypatch.setattr(prometheus_client, "start_http_server", recording)

    def start(port: int, address: str | None = None) -> Metrics:
        bind[:] = [address] if address else []
        before = len(started)
        metrics = Metrics(port)
        assert len(started) == before + 1, "Metrics did not start prometheus_client's server"
        return metrics

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(READ_TIMEOUT)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """A tiny HTTP server in a thread: ``serve(address, port, answer)`` answers every
    GET with ``answer(handler)``."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(address: str, port: int, answer: Callable[[BaseHTTPRequestHandler], object]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((address, port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(READ_TIMEOUT)


def answer_with(status: int, body: bytes, content_type: str = "text/plain") -> Callable[..., None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def read(targets: dict[int, str], port: int, timeout: float = READ_TIMEOUT) -> dict[int, Progress]:
    async def scenario() -> dict[int, Progress]:
        async with aiohttp.ClientSession() as session:
            return await read_progress(session, targets, timeout=timeout, port=port)

    return asyncio.run(scenario())


def test_the_operator_reads_a_running_transformers_progress(
    start_transformer: StartTransformer,
) -> None:
    port = free_port()
    metrics = start_transformer(port)

    async def scenario() -> list[dict[int, Progress]]:
        # One session for every read, as the controller keeps one.
        async with aiohttp.ClientSession() as session:

            async def once() -> dict[int, Progress]:
                return await read_progress(
                    session, {0: "127.0.0.1"}, timeout=READ_TIMEOUT, port=port
                )

            reads = [await once()]
            metrics(runner.Progress(objects_total=3, objects_found=7, objects_done=2, records=41))
            reads.append(await once())
            metrics(runner.Progress(objects_total=3, objects_found=7, objects_done=3, records=60))
            reads.append(await once())
            return reads

    started, first, later = asyncio.run(scenario())

    # Before its first object a transformer says nothing yet: its progress is zero.
    assert started == {0: Progress()}
    assert first == {0: Progress(objects_found=7, objects_total=3, objects_done=2, records=41)}
    # The records counter grew by 19; the operator reads the total.
    assert later == {0: Progress(objects_found=7, objects_total=3, objects_done=3, records=60)}


def test_an_instance_nobody_answers_for_is_left_out(start_transformer: StartTransformer) -> None:
    port = free_port()
    metrics = start_transformer(port, address="127.0.0.2")
    metrics(runner.Progress(objects_total=4, objects_found=8, objects_done=1, records=5))

    # Index 1's address has nothing on the port (the transformer is bound to .2 only):
    # the connection is refused, and the read goes on without it.
    assert read({0: "127.0.0.2", 1: "127.0.0.3"}, port) == {
        0: Progress(objects_found=8, objects_total=4, objects_done=1, records=5)
    }
    assert read({1: "127.0.0.3"}, port) == {}


def test_a_port_nothing_listens_on_reads_as_nothing() -> None:
    port = free_port()  # bound, read, closed: nobody listens there now
    assert read({0: "127.0.0.1", 3: "127.0.0.1"}, port) == {}


def test_answers_that_are_not_progress_are_left_out(
    start_transformer: StartTransformer, serve: Serve
) -> None:
    port = free_port()
    metrics = start_transformer(port, address="127.0.0.2")
    metrics(runner.Progress(objects_total=3, objects_found=7, objects_done=2, records=41))
    # A page that is not Prometheus text.
    html = b"<html><body><h1>Not the metrics</h1></body></html>\n"
    serve("127.0.0.3", port, answer_with(200, html, "text/html"))
    # An error, though its body is the transformer's metrics: the status decides.
    serve("127.0.0.4", port, answer_with(500, METRICS_TEXT))
    # A server that accepts and never answers: the read's timeout leaves it out.
    hang = threading.Event()
    serve("127.0.0.5", port, lambda _handler: hang.wait(READ_TIMEOUT * 4))
    # The fake's text is read as the transformer's (it is the control for the 500).
    serve("127.0.0.6", port, answer_with(200, METRICS_TEXT))

    targets = {0: "127.0.0.2", 1: "127.0.0.3", 2: "127.0.0.4", 3: "127.0.0.5", 4: "127.0.0.6"}
    try:
        result = read(targets, port, timeout=0.5)
    finally:
        hang.set()

    assert result == {
        0: Progress(objects_found=7, objects_total=3, objects_done=2, records=41),
        4: METRICS_PROGRESS,
    }


def test_a_body_that_arrives_in_pieces_is_read_whole(serve: Serve) -> None:
    port = free_port()
    cut = METRICS_TEXT.index(b"60.0") + 1  # "...records_total 6" | "0.0\n"
    rest = threading.Event()

    def in_two_pieces(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(METRICS_TEXT)))
        handler.end_headers()
        handler.wfile.write(METRICS_TEXT[:cut])
        handler.wfile.flush()
        # The rest once the test has its answer (a reader that waits for the whole
        # body has none until then), or at this deadline.
        rest.wait(2.0)
        handler.wfile.write(METRICS_TEXT[cut:])

    serve("127.0.0.1", port, in_two_pieces)
    try:
        result = read({0: "127.0.0.1"}, port)
    finally:
        rest.set()

    assert result == {0: METRICS_PROGRESS}


def test_an_infinite_value_is_left_out_without_raising(
    start_transformer: StartTransformer, serve: Serve
) -> None:
    port = free_port()
    metrics = start_transformer(port, address="127.0.0.2")
    metrics(runner.Progress(objects_total=3, objects_found=7, objects_done=2, records=41))
    serve("127.0.0.3", port, answer_with(200, b"kubemaker_transform_records_total +Inf\n"))

    assert read({0: "127.0.0.2", 1: "127.0.0.3"}, port) == {
        0: Progress(objects_found=7, objects_total=3, objects_done=2, records=41)
    }
