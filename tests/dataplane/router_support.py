"""The Endpoint router under test: routing tables, the router process, load, metrics.

A plain module (not a test module): the tests import it by name, because pytest puts
this directory on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp
import requests
from process_support import stop, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serving_support import HERE, START_TIMEOUT, Server, run_server, serving_command

from kubemaker_runtime.routing import INVOKED_VARIANT_HEADER, RoutingTable


def fleet(name: str, url: str, weight: float = 1.0, instances: int = 1) -> dict[str, Any]:
    return {"name": name, "url": url, "weight": weight, "instances": instances}


def variant(name: str, weight: float, *fleets: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "weight": weight, "fleets": list(fleets)}


def write_table(path: Path, endpoint: str, variants: list[dict[str, Any]], **extra: Any) -> str:
    """Write a routing table as the operator does (validated, versioned); its version.

    Written next to the file and renamed over it: a reader sees the old or the new
    content, never half (a ConfigMap volume's ``..data`` swap is atomic too).
    """
    table = RoutingTable.model_validate({"endpoint": endpoint, "variants": variants, **extra})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(table.to_json())
    tmp.replace(path)
    return table.with_version().version


def router_command(routes: Path) -> list[str]:
    return [sys.executable, "-m", "kubemaker_runtime.router", "--routes", str(routes)]


@contextlib.contextmanager
def run_router(
    routes: Path, tmp_path: Path, env: dict[str, str] | None = None, *, ready: bool = True
) -> Iterator[Server]:
    with run_server(router_command(routes), tmp_path, env, ready=ready) as server:
        yield server


def wait_version(router: Server, version: str) -> None:
    def applied() -> bool:
        response = router.get("/router/config")
        return response.status_code == 200 and response.json()["version"] == version

    wait_for(applied, 10, f"the router to apply table {version}", router.process)


@contextlib.contextmanager
def model_server_on(port: int, tmp_path: Path) -> Iterator[str]:
    """A SumModel server on a given port (run_server picks its own port)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "KUBEMAKER_BIND_ADDRESS": "127.0.0.1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }
    command = serving_command("serving_support:SumModel", tmp_path)
    with (tmp_path / f"model-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: requests.get(url + "/ping", timeout=2).status_code == 200,
            START_TIMEOUT, "the model server on a fixed port", process,
        )  # fmt: skip
        yield url
    finally:
        stop(process, group=True)


@dataclass
class Result:
    status: int
    variant: str | None
    seconds: float
    body: bytes


def load(
    url: str,
    count: int,
    concurrency: int = 16,
    body: bytes = b"1,2,3",
    headers: dict[str, str] | None = None,
    until: threading.Event | None = None,
) -> list[Result]:
    """``count`` POSTs with ``concurrency`` in flight (aiohttp, keep-alive), in order sent;
    fewer if ``until`` is set first."""
    headers = {"Content-Type": "text/csv", **(headers or {})}

    async def run() -> list[Result]:
        results: list[Result | None] = [None] * count
        next_index = iter(range(count))
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def worker() -> None:
                for index in next_index:
                    if until is not None and until.is_set():
                        return
                    started = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as response:
                        payload = await response.read()
                        results[index] = Result(
                            response.status,
                            response.headers.get(INVOKED_VARIANT_HEADER),
                            time.perf_counter() - started,
                            payload,
                        )

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return [r for r in results if r is not None]

    return asyncio.run(run())


def samples(server: Server | str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` on a server's /metrics: (labels, value)."""
    url = server if isinstance(server, str) else server.url
    text = requests.get(url + "/metrics", timeout=10).text
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def value(server: Server | str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for have, v in samples(server, name) if all(have.get(k) == w for k, w in labels.items())
    )


def p99(results: list[Result]) -> float:
    times = sorted(r.seconds for r in results)
    return times[min(len(times) - 1, int(len(times) * 0.99))]


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


Mode = Literal["keepalive", "drop-body", "drop-head"]


class RawServer:
    """A tiny HTTP/1.1 server on loopback (asyncio, in a thread) for what a model server
    does only by accident, made to happen on every request that falls in its window.

    - ``keepalive``: answers every request and keeps the connection open, closing it
      after ``idle_timeout`` seconds idle. A request that arrives in the last
      ``race_window`` seconds before that is the keep-alive race: the server closes the
      connection without reading it (on loopback the real race window is microseconds
      wide; this widens it so that requests spaced around the timeout hit it often).
      Every other such close is a reset (SO_LINGER 0), the rest a FIN: both occur.
    - ``drop-body`` / ``drop-head``: answers the first request of a connection; on the
      second, sends the headers and part of the body (``drop-body``) or half a status
      line (``drop-head``) and closes: a failure after the model acted.

    ``requests``: requests read in full (the model "acted"); ``closed_unread``: races.
    """

    def __init__(self, mode: Mode, idle_timeout: float = 0.1, race_window: float = 0.02) -> None:
        self.mode = mode
        self.idle_timeout = idle_timeout
        self.race_window = race_window
        self.requests = 0
        self.closed_unread = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _RawProtocol(self), "127.0.0.1", 0), self._loop
        ).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class _RawProtocol(asyncio.Protocol):
    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.buffer = b""
        self.answered = 0
        self.idle_since: float | None = None
        self.idle_close: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        server = self.server
        if server.mode == "keepalive" and self.idle_since is not None and not self.buffer:
            idle = time.monotonic() - self.idle_since
            if idle >= server.idle_timeout - server.race_window:
                server.closed_unread += 1
                if server.closed_unread % 2:
                    sock = self.transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._close()
                return
        if self.idle_close is not None:
            self.idle_close.cancel()
            self.idle_close = None
        self.idle_since = None
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = 0
        for line in self.buffer[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        server.requests += 1
        self.answered += 1
        if server.mode != "keepalive" and self.answered == 2:
            if server.mode == "drop-body":
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 100\r\n\r\n{"sums": ['
                )
            else:
                self.transport.write(b"HTTP/1.1 2")
            self._close()
            return
        body = b'{"sums": [1.0]}'
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.idle_since = time.monotonic()
        if server.mode == "keepalive":
            self.idle_close = asyncio.get_running_loop().call_later(
                server.idle_timeout, self._close
            )

    def _close(self) -> None:
        if self.idle_close is not None:
            self.idle_close.cancel()
        if self.transport is not None:
            self.transport.close()
