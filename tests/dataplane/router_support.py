"""The Endpoint router under test: routing tables, the router process, load, metrics.

A plain module (not a test module): the tests import it by name, because pytest puts
this directory on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
