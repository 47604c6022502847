"""The model server, as real processes over real HTTP: routes, error codes, workers, metrics.

The models it loads are in serving_support.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from process_support import wait_for
from serving_support import GATE_ENV, Server, SumModel, run_server, serving_command

from kubemaker_runtime.serving import ServerSettings, create_app
from kubemaker_runtime.serving.settings import available_cpus


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serving")
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "3"}
    with run_server(serving_command("serving_support:SumModel", tmp), tmp, env) as running:
        yield running


# --- tests ----------------------------------------------------------------------------------


def test_ping_answers_200_only_once_the_model_is_loaded(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    env = {GATE_ENV: str(gate)}
    command = serving_command("serving_support:SumModel", tmp_path)
    with run_server(command, tmp_path, env, ready=False) as server:
        assert server.get("/ping").status_code == 503
        assert server.get("/v2/health/ready").status_code == 503
        assert server.get("/v2/models/sum/ready").json() == {"name": "sum", "ready": False}
        assert server.get("/v2/health/live").status_code == 200
        # A request to a worker still loading waits for the model, not a 503: another
        # worker's /ping may have made the pod ready already.
        waiting = ThreadPoolExecutor(1).submit(
            requests.post, server.url + "/invocations", data="1,2",
            headers={"Content-Type": "text/csv", "Accept": "text/csv"}, timeout=60,
        )  # fmt: skip
        with pytest.raises(requests.Timeout):
            requests.post(
                server.url + "/invocations", data="1,2", headers={"Content-Type": "text/csv"},
                timeout=1,
            )  # fmt: skip
        assert not waiting.done()

        gate.touch()
        wait_for(lambda: server.get("/ping").status_code == 200, 30, "/ping to turn 200")
        assert server.get("/v2/health/ready").json() == {"ready": True}
        assert (waiting.result(timeout=60).status_code, waiting.result().text) == (200, "3.0")
        assert server.post("/invocations", "1,2", **{"Content-Type": "text/csv"}).ok


def test_a_model_that_fails_to_load_is_never_ready_and_says_why(tmp_path: Path) -> None:
    command = serving_command("serving_support:BrokenModel", tmp_path)
    with run_server(command, tmp_path, ready=False) as server:
        wait_for(lambda: "no model file" in server.get("/ping").text, 30, "the load error on /ping")
        assert server.get("/ping").status_code == 503


def test_invocations_honours_content_type_and_accept(server: Server) -> None:
    csv = {"Content-Type": "text/csv"}
    response = server.post("/invocations", "1,2,3\n4,5,6", **csv)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["sums"] == [6.0, 15.0]

    response = server.post("/invocations", "1,2", **csv, Accept="text/csv")
    assert (response.headers["Content-Type"], response.text) == ("text/csv", "3.0")
    # q-values and wildcards pick among what the model offers.
    response = server.post(
        "/invocations", "1,2", **csv, Accept="application/json;q=0.5, text/*;q=0.9"
    )
    assert response.headers["Content-Type"] == "text/csv"
    assert server.post("/invocations", "1", **csv, Accept="*/*").json()["sums"] == [1.0]

    body = json.dumps({"instances": [[1, 1], [2, 2]]})
    response = server.post(
        "/invocations", body, **{"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.json()["sums"] == [2.0, 4.0]


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"Content-Type": "text/csv"}, "1,x", 400, "cannot read the rows"),
        ({"Content-Type": "text/plain"}, "1,2", 415, "'text/plain' is not supported"),
        ({}, "1,2", 415, "no Content-Type"),
        ({"Content-Type": "text/csv", "Accept": "image/png"}, "1,2", 406, "image/png"),
        ({"Content-Type": "text/csv"}, "9" * (1024 * 1024 + 10), 413, "over the maximum"),
        ({"Content-Type": "text/csv"}, "boom", 500, "internal error (RuntimeError)"),
    ],
    ids=["400-bad-input", "415-type", "415-no-type", "406-accept", "413-too-large", "500-bug"],
)
def test_bad_requests_get_their_status_and_a_message_never_a_traceback(
    server: Server, headers: dict[str, str], body: str, status: int, message: str
) -> None:
    response = server.post("/invocations", body, **headers)
    assert response.status_code == status
    assert message in response.text
    assert "Traceback" not in response.text
    assert "secret internal detail" not in response.text


def _send_chunked_until_answered(
    server: Server, path: str, content_type: str, total: int
) -> tuple[int, int, bytes]:
    """POST a chunked body of up to ``total`` bytes over a raw socket, stopping as soon
    as the server answers (as a client must, for an early 413). Returns the number of
    bytes sent, the response's status and its body."""
    address = urlsplit(server.url)
    piece = b"1," * 32768
    chunk = b"%x\r\n%b\r\n" % (len(piece), piece)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: {content_type}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        pending = b""
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break  # the answer (or the server's close): stop sending
            assert writable, "the server neither reads the body nor answers"
            pending = pending or chunk
            try:
                count = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed while this was sending
            pending = pending[count:]
            sent += count
        else:
            sock.sendall(pending + b"0\r\n\r\n")  # all sent: end the body
        response = b""
        while data := sock.recv(65536):  # after an early answer the server closes
            response += data
    head_block, _, body = response.partition(b"\r\n\r\n")
    return sent, int(head_block.split(maxsplit=2)[1]), body


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/invocations", "text/csv"), ("/v2/models/sum/infer", "application/json")],
)
def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(
    server: Server, path: str, content_type: str
) -> None:
    # No Content-Length: the server can only count while reading. It must stop at the
    # limit (1 MB here) and answer 413 long before the client is done with 256 MB.
    pid_before = server.post("/invocations", "1", **{"Content-Type": "text/csv"}).json()["pid"]
    total = 256 * 1024 * 1024
    sent, status, body = _send_chunked_until_answered(server, path, content_type, total)
    assert status == 413, body
    assert sent < total // 4, f"the server answered only after reading {sent} bytes"
    assert b"the request body (chunked) is over the maximum of 1048576 (1 MB)" in body
    # Still healthy, and the same worker (it neither crashed nor ran out of memory).
    assert server.get("/ping").status_code == 200
    response = server.post("/invocations", "1,2", **{"Content-Type": "text/csv"})
    assert response.json()["sums"] == [3.0]
    assert response.json()["pid"] == pid_before


def test_a_chunked_body_under_the_limit_is_read_whole(server: Server) -> None:
    pieces = [b"1,2", b",3\n4,5", b",6\n", b"7,8,9"]
    response = requests.post(
        server.url + "/invocations",
        data=iter(pieces),  # a generator body: Transfer-Encoding: chunked
        headers={"Content-Type": "text/csv"},
        timeout=30,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["sums"] == [6.0, 15.0, 24.0]


def test_unknown_routes_methods_and_empty_payloads(server: Server) -> None:
    assert server.get("/nope").status_code == 404
    assert server.get("/invocations").status_code == 405
    assert server.post("/ping", "").status_code == 405
    # SageMaker's containers answer an empty payload (an empty batch file) with 204.
    assert server.post("/invocations", "", **{"Content-Type": "text/csv"}).status_code == 204


def test_execution_parameters_are_what_batch_transform_expects(server: Server) -> None:
    response = server.get("/execution-parameters")
    assert response.status_code == 200
    assert response.json() == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 1,
    }


def test_open_inference_protocol_routes(server: Server) -> None:
    assert server.get("/v2").json()["name"] == "kubemaker"
    assert server.get("/v2/models/sum").json()["name"] == "sum"
    assert server.get("/v2/models/sum/versions/1/ready").json() == {"name": "sum", "ready": True}
    request = {
        "id": "r1",
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}],
    }
    response = server.post(
        "/v2/models/sum/infer", json.dumps(request), **{"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "model_name": "sum",
        "id": "r1",
        "outputs": [{"name": "predict", "shape": [2], "datatype": "FP32", "data": [3.0, 7.0]}],
    }
    missing = server.post("/v2/models/other/infer", json.dumps(request))
    assert missing.status_code == 404
    assert "other" in missing.json()["error"]
    bad = dict(request, inputs=[dict(request["inputs"][0], shape=[3, 2])])
    response = server.post("/v2/models/sum/infer", json.dumps(bad))
    assert response.status_code == 400
    assert "needs 6" in response.json()["error"]
    response = server.post("/v2/models/sum/infer", "{not json")
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT8", "[1, 300]", "out of range for INT8 (-128 to 127): 300"),
        ("UINT8", "[-1, 2]", "out of range for UINT8 (0 to 255): -1"),
        ("INT64", "[1, 9223372036854775808]", "out of range for INT64 (-9223372036854775808 to "),
        ("UINT64", "[1, 18446744073709551616]", "out of range for UINT64 (0 to "),
        ("INT16", "[1, 1e300]", "out of range for INT16 (-32768 to 32767): 1e+300"),
        ("INT32", '[1, "x"]', "does not hold INT32 values"),
        ("FP32", "[1, [2, 3]]", "does not hold FP32 values"),
    ],
)
def test_open_inference_protocol_values_the_datatype_cannot_hold_are_400(
    server: Server, datatype: str, data: str, message: str
) -> None:
    # Written by hand: the values are what a JSON encoder would refuse to produce.
    body = (
        f'{{"inputs": [{{"name": "x", "shape": [2], "datatype": "{datatype}", "data": {data}}}]}}'
    )
    response = server.post("/v2/models/sum/infer", body, **{"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith("inputs[0] ('x').data"), error
    assert message in error


def test_open_inference_protocol_malformed_tensors_are_400(server: Server) -> None:
    def infer(tensor: dict[str, Any]) -> requests.Response:
        return server.post("/v2/models/sum/infer", json.dumps({"inputs": [tensor]}))

    good = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
    assert infer(good).json()["outputs"][0]["data"] == [3.0]
    for bad, message in [
        (dict(good, shape=[True, 2]), "shape must be a list of non-negative integers"),
        (dict(good, shape=[1, -2]), "shape must be a list of non-negative integers"),
        (dict(good, datatype="FP128"), "'FP128' is not one of"),
        ({"name": "x", "shape": [2]}, "lacks datatype, data"),
    ]:
        response = infer(bad)
        assert response.status_code == 400, (bad, response.text)
        assert message in response.json()["error"]


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_invocations_errors_and_latency(server: Server) -> None:
    before = server.get("/metrics").text
    csv = {"Content-Type": "text/csv"}
    for _ in range(3):
        assert server.post("/invocations", "1,2", **csv).ok
    assert server.post("/invocations", "1,x", **csv).status_code == 400
    after = server.get("/metrics").text

    def delta(name: str, **labels: str) -> float:
        return _metric(after, name, **labels) - _metric(before, name, **labels)

    assert delta("kubemaker_invocations_total", model="sum") == 4
    assert delta("kubemaker_invocation_errors_total", code="400") == 1
    assert delta("kubemaker_model_latency_seconds_count", model="sum") == 3
    assert delta("kubemaker_overhead_latency_seconds_count", model="sum") == 3


def test_worker_count_is_honoured_and_metrics_add_up_across_workers(tmp_path: Path) -> None:
    command = serving_command("serving_support:SumModel", tmp_path)
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    with run_server(command, tmp_path, env) as server:
        # Requests that hold a worker busy push new connections to the other one.
        def call(_: int) -> int:
            response = server.post("/invocations", "sleep 0.2", **{"Content-Type": "text/csv"})
            return int(response.json()["pid"])

        with ThreadPoolExecutor(8) as pool:
            pids = set(pool.map(call, range(16)))
        assert len(pids) == 2
        assert server.process.pid not in pids
        assert server.get("/execution-parameters").json()["MaxConcurrentTransforms"] == 2
        # Every worker's samples, whichever worker answers /metrics.
        for _ in range(4):
            text = server.get("/metrics").text
            assert _metric(text, "kubemaker_invocations_total", model="sum") == 16


def test_the_app_is_also_an_asgi_application(tmp_path: Path) -> None:
    """The same app object under any ASGI server (here driven directly, in process)."""
    # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=text/csv: the answer to a request without Accept.
    settings = ServerSettings(max_payload_bytes=64, default_accept="text/csv")
    app = create_app(SumModel(tmp_path), settings)

    async def call(method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]):  # type: ignore[no-untyped-def]
        chunks = [body[:3], body[3:]]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": headers}
        await app(scope, receive, send)
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]

    async def scenario() -> None:
        lifespan = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        replies: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return lifespan.pop(0)

        async def send(message: dict[str, Any]) -> None:
            replies.append(message)

        await app({"type": "lifespan"}, receive, send)
        assert [r["type"] for r in replies] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    async def requests_() -> None:
        csv = [(b"content-type", b"text/csv"), (b"accept", b"text/csv")]
        status, headers, body = await call("POST", "/invocations", b"1,2,3\n4,5,6", csv)
        assert (status, headers[b"content-type"], body) == (200, b"text/csv", b"6.0,15.0")
        # Chunked (no Content-Length) and over the limit: counted while reading.
        status, _, body = await call("POST", "/invocations", b"1," * 40 + b"1", csv)
        assert status == 413
        status, _, _ = await call("GET", "/ping", b"", [])
        assert status == 200
        status, headers, body = await call("POST", "/invocations", b"1,2", csv[:1])
        assert (status, headers[b"content-type"], body) == (200, b"text/csv", b"3.0")

    asyncio.run(scenario())
    # Startup began loading in a thread; the model is ready once that thread is done.
    wait_for(lambda: app.model.ready, 10, "the model to load")
    asyncio.run(requests_())


def test_available_cpus_honours_a_cgroup_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert available_cpus(tmp_path) == 1


def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    command = serving_command("serving_support:SumModel", tmp_path)
    with run_server(command, tmp_path) as server:
        csv = {"Content-Type": "text/csv"}
        first_pid = server.post("/invocations", "1", **csv).json()["pid"]
        with contextlib.suppress(requests.ConnectionError):
            server.post("/invocations", "die", **csv)

        def replaced() -> bool:
            response = server.post("/invocations", "1", **csv)
            return response.ok and response.json()["pid"] != first_pid

        wait_for(replaced, 30, "a new worker to answer", server.process)
        assert server.process.poll() is None


def test_sigterm_to_the_main_process_stops_every_worker(tmp_path: Path) -> None:
    # What Kubernetes does to a pod's container: SIGTERM to its main process only.
    command = serving_command("serving_support:SumModel", tmp_path)
    with run_server(command, tmp_path, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}) as server:
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        # The two workers (and multiprocessing's resource tracker).
        processes = [int(pid) for pid in children.read_text().split()]
        assert len(processes) >= 2
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        wait_for(
            lambda: all(_state(pid) in ("gone", "Z") for pid in processes),
            10, f"the workers {processes} to exit",
        )  # fmt: skip


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
