"""The Endpoint router as a process: real model servers behind it, real HTTP on loopback.

Routing tables are written to a file as the operator's ConfigMap would hold them; the
router under test re-reads it. Model servers are the real server with SumModel.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from process_support import free_port, wait_for
from router_support import (
    Mode,
    RawServer,
    fleet,
    jsonl,
    load,
    model_server_on,
    p99,
    run_router,
    samples,
    value,
    variant,
    wait_version,
    write_table,
)
from serving_support import Server, run_server, serving_command

from kubemaker_runtime.routing import INVOKED_VARIANT_HEADER, TARGET_VARIANT_HEADER


@pytest.fixture(scope="module")
def model_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("model-a")
    with run_server(serving_command("serving_support:SumModel", path), path) as server:
        yield server


@pytest.fixture(scope="module")
def model_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("model-b")
    with run_server(serving_command("serving_support:SumModel", path), path) as server:
        yield server


def served(server: Server) -> float:
    return value(server, "kubemaker_invocations_total")


def test_weights_split_requests(model_a: Server, model_b: Server, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    variants = [
        variant("a", 7, fleet("a-1", model_a.url)),
        variant("b", 3, fleet("b-1", model_b.url)),
    ]
    write_table(routes, "ep", variants)
    with run_router(routes, tmp_path) as router:
        results = load(router.url + "/invocations", 10_000, concurrency=32)
    assert Counter(r.status for r in results) == {200: 10_000}
    share = Counter(r.variant for r in results)["a"] / len(results)
    assert abs(share - 0.7) < 0.03, share


def test_target_variant_and_errors(model_a: Server, model_b: Server, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    variants = [
        variant("a", 1, fleet("a-1", model_a.url)),
        variant("b", 0, fleet("b-1", model_b.url)),
    ]
    write_table(routes, "ep", variants)
    with run_router(routes, tmp_path, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}) as router:
        before = served(model_b)
        for _ in range(5):
            answer = router.post(
                "/invocations", b"1,2", **{"Content-Type": "text/csv", TARGET_VARIANT_HEADER: "b"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers[INVOKED_VARIANT_HEADER] == "b"
            assert answer.json()["sums"] == [3.0]
        assert served(model_b) == before + 5

        unknown = router.post(
            "/invocations", b"1", **{"Content-Type": "text/csv", TARGET_VARIANT_HEADER: "nope"}
        )
        assert unknown.status_code == 400
        assert "'nope'" in unknown.text and "a, b" in unknown.text

        bad = router.post("/invocations", b"x,y", **{"Content-Type": "text/csv"})
        assert bad.status_code == 400 and "cannot read the rows" in bad.text
        assert bad.headers[INVOKED_VARIANT_HEADER] == "a"
        unsupported = router.post("/invocations", b"1", **{"Content-Type": "image/png"})
        assert unsupported.status_code == 415

        too_big = router.post("/invocations", b"1," * 600_000, **{"Content-Type": "text/csv"})
        assert too_big.status_code == 413

        infer = requests.post(
            router.url + "/v2/models/sum/infer",
            json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]},
            timeout=10,
        )
        assert infer.status_code == 200, infer.text
        assert infer.headers[INVOKED_VARIANT_HEADER] == "a"
        assert router.get("/v2/health/ready").json() == {"ready": True}
        assert router.get("/nowhere").status_code == 404
        assert router.get("/invocations").status_code == 405
        assert value(router, "kubemaker_router_rejected_total", code="400") == 1
        assert value(router, "kubemaker_router_invocation_4xx_errors_total", variant="a") == 2


def test_missing_table_then_written(model_a: Server, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    with run_router(routes, tmp_path, ready=False) as router:
        ping = router.get("/ping")
        assert ping.status_code == 503 and "no routing table" in ping.text
        routes.write_text("{not json")
        wait_for(lambda: "invalid" in router.get("/ping").text, 10, "the invalid table noticed")
        assert router.get("/ping").status_code == 503
        write_table(routes, "ep", [variant("a", 1, fleet("a-1", model_a.url))])
        wait_for(lambda: router.get("/ping").status_code == 200, 10, "the table to load")
        assert router.post("/invocations", b"1", **{"Content-Type": "text/csv"}).ok


class _Sleeper(BaseHTTPRequestHandler):
    """A shadow that takes 5 s to answer: a tiny server, not a model server, because
    the shadow receives production's very body, so a SumModel told to sleep by its
    body would slow production just the same."""

    release = threading.Event()
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            type(self).received += 1
        self.release.wait(5)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_shadow_gets_copies_and_never_slows_production(
    model_a: Server, model_b: Server, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"
    production = [variant("a", 1, fleet("a-1", model_a.url))]
    version = write_table(
        routes, "ep", production,
        shadow={"variant": variant("s", 1, fleet("s-1", model_b.url)), "mirror_percentage": 100},
    )  # fmt: skip
    sleeper = ThreadingHTTPServer(("127.0.0.1", 0), _Sleeper)
    threading.Thread(target=sleeper.serve_forever, daemon=True).start()
    env = {"KUBEMAKER_ROUTER_SHADOW_QUEUE": "20"}
    try:
        with run_router(routes, tmp_path, env) as router:
            wait_version(router, version)
            before = served(model_b)
            assert all(r.status == 200 for r in load(router.url + "/invocations", 50, 4))
            wait_for(lambda: served(model_b) == before + 50, 10, "50 shadow copies")
            shadow_sent = {"variant": "s", "outcome": "sent"}
            wait_for(
                lambda: value(router, "kubemaker_router_shadow_requests_total", **shadow_sent) == 50
            )
            assert value(router, "kubemaker_router_invocations_total", variant="s") == 50

            without = write_table(routes, "ep", production)
            wait_version(router, without)
            load(router.url + "/invocations", 100, 4)  # warm
            baseline = p99(load(router.url + "/invocations", 600, 4))
            slow_shadow = {
                "variant": variant(
                    "slow", 1, fleet("slow-1", f"http://127.0.0.1:{sleeper.server_address[1]}")
                ),
                "mirror_percentage": 100,
            }
            wait_version(router, write_table(routes, "ep", production, shadow=slow_shadow))
            results = load(router.url + "/invocations", 600, 4)
            assert all(r.status == 200 for r in results)
            with_shadow = p99(results)
            assert with_shadow < baseline + 0.05, (baseline, with_shadow)
            assert _Sleeper.received >= 1
            dropped = value(
                router, "kubemaker_router_shadow_requests_total", variant="slow", outcome="dropped"
            )
            assert dropped >= 600 - 20 - 4 - _Sleeper.received
    finally:
        _Sleeper.release.set()
        sleeper.shutdown()
        sleeper.server_close()


def _objects(s3_client: Any, bucket: str, prefix: str) -> dict[str, str]:
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        item["Key"]: s3_client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        for item in listing
    }


def test_capture_records_sampled_to_s3(
    model_a: Server, tmp_path: Path, s3_bucket: str, s3_client: Any
) -> None:
    routes = tmp_path / "routes.json"
    variants = [variant("a", 1, fleet("a-1", model_a.url))]
    destination = f"s3://{s3_bucket}/capture"
    env = {"KUBEMAKER_ROUTER_CAPTURE_FLUSH_SECONDS": "0.5"}
    write_table(
        routes, "ep-30", variants, capture={"destination": destination, "sampling_percentage": 30}
    )
    with run_router(routes, tmp_path, env) as router:
        assert all(r.status == 200 for r in load(router.url + "/invocations", 2000, 16))
        wait_version(router, write_table(
            routes, "ep-0", variants, capture={"destination": destination, "sampling_percentage": 0}
        ))  # fmt: skip
        assert all(r.status == 200 for r in load(router.url + "/invocations", 200, 8))
        capture_input = {"destination": destination, "capture_output": False}
        wait_version(router, write_table(routes, "ep-in", variants, capture=capture_input))
        json_body = b'{"instances": [[1, 2]]}'
        for number in range(20):
            answer = router.post(
                "/invocations", json_body,
                **{"Content-Type": "application/json",
                   "X-Amzn-SageMaker-Inference-Id": f"id-{number}"},
            )  # fmt: skip
            assert answer.ok
        # At shutdown the router writes what it holds: every record is there after it.
    sampled = _objects(s3_client, s3_bucket, "capture/ep-30/")
    assert sampled, "no capture file"
    for key in sampled:
        assert re.fullmatch(
            r"capture/ep-30/a/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl", key
        ), key
    records = [record for text in sampled.values() for record in jsonl(text)]
    assert 540 <= len(records) <= 660, len(records)
    first = records[0]
    assert first["eventVersion"] == "0"
    assert set(first["eventMetadata"]) == {"eventId", "inferenceTime"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["eventMetadata"]["inferenceTime"])
    assert first["captureData"]["endpointInput"] == {
        "observedContentType": "text/csv", "mode": "INPUT", "data": "1,2,3", "encoding": "CSV",
    }  # fmt: skip
    output = first["captureData"]["endpointOutput"]
    assert output["mode"] == "OUTPUT" and output["encoding"] == "JSON"
    assert output["observedContentType"] == "application/json"
    assert '"sums":[6.0]' in output["data"].replace(" ", "")
    assert len({r["eventMetadata"]["eventId"] for r in records}) == len(records)

    assert _objects(s3_client, s3_bucket, "capture/ep-0/") == {}
    inputs = [
        r for text in _objects(s3_client, s3_bucket, "capture/ep-in/").values() for r in jsonl(text)
    ]
    assert len(inputs) == 20
    assert all(set(r["captureData"]) == {"endpointInput"} for r in inputs)
    assert inputs[0]["captureData"]["endpointInput"]["encoding"] == "JSON"
    assert {r["eventMetadata"]["inferenceId"] for r in inputs} == {f"id-{n}" for n in range(20)}


def test_table_reload_under_load_drops_nothing(
    model_a: Server, model_b: Server, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.json"

    def table(weight_a: float, weight_b: float) -> str:
        return write_table(routes, "ep", [
            variant("a", weight_a, fleet("a-1", model_a.url)),
            variant("b", weight_b, fleet("b-1", model_b.url)),
        ])  # fmt: skip

    first = table(1, 0)
    with run_router(routes, tmp_path) as router:
        wait_version(router, first)
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(load, router.url + "/invocations", 10**6, 8, until=stop)
            versions = [first]
            try:
                for weights in ((0, 1), (1, 1), (3, 1), (0, 2)):
                    versions.append(table(*weights))
                    wait_version(router, versions[-1])
                # Requests sent after the last table applied show it.
                served_before = served(model_b)
                wait_for(lambda: served(model_b) > served_before + 100, 10, "traffic on b")
            finally:
                stop.set()
            results = running.result()
        assert len(set(versions)) == len(versions)
        assert len(results) > 1000
        assert Counter(r.status for r in results) == {200: len(results)}
        assert results[-1].variant == "b"
        assert Counter(r.variant for r in results).keys() == {"a", "b"}
        assert value(router, "kubemaker_router_config_info", version=versions[-1]) == 1
        assert len(samples(router, "kubemaker_router_config_info")) == 1


def test_hold_while_scaling_from_zero(model_a: Server, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    cold_port = free_port()  # nothing listens here yet
    cold_url = f"http://127.0.0.1:{cold_port}"

    def table(zero: dict[str, Any], hold: float) -> str:
        return write_table(routes, "ep", [
            variant("a", 1, fleet("a-1", model_a.url)),
            variant("zero", 0, zero),
            variant("cold", 0, fleet("cold-1", cold_url)),
        ], hold_timeout_seconds=hold)  # fmt: skip

    table(fleet("zero-1", "http://127.0.0.1:9", instances=0), 30)
    with run_router(routes, tmp_path) as router:

        def invoke(target: str) -> requests.Response:
            return router.post(
                "/invocations",
                b"1,1",
                **{"Content-Type": "text/csv", TARGET_VARIANT_HEADER: target},
            )

        with ThreadPoolExecutor(6) as pool:
            zero = [pool.submit(invoke, "zero") for _ in range(3)]
            cold = [pool.submit(invoke, "cold") for _ in range(3)]
            for name in ("zero", "cold"):
                wait_for(
                    lambda name=name: value(
                        router, "kubemaker_router_held_requests", variant=name
                    ) == 3,
                    10, f"3 held requests for {name}",
                )  # fmt: skip
            assert not any(f.done() for f in zero + cold)
            with model_server_on(cold_port, tmp_path):
                for future in cold:
                    answer = future.result(timeout=30)
                    assert (
                        answer.status_code == 200
                        and answer.headers[INVOKED_VARIANT_HEADER] == "cold"
                    )
                assert not any(f.done() for f in zero)
                table(fleet("zero-2", model_a.url, instances=1), 30)
                for future in zero:
                    answer = future.result(timeout=30)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["sums"] == [2.0]
        assert value(router, "kubemaker_router_held_requests") == 0
        assert (
            value(router, "kubemaker_router_invocations_total", variant="zero", fleet="zero-2") == 3
        )

        wait_version(router, table(fleet("zero-3", "http://127.0.0.1:9", instances=0), 2))
        started = time.monotonic()
        answer = invoke("zero")
        waited = time.monotonic() - started
        assert answer.status_code == 503
        assert "scaling up from zero" in answer.text and "Traceback" not in answer.text
        assert 1.5 <= waited < 10, waited
        assert value(router, "kubemaker_router_hold_timeouts_total", variant="zero") == 1
        assert value(router, "kubemaker_router_invocation_5xx_errors_total", variant="zero") == 1


def test_metrics_after_traffic(model_a: Server, model_b: Server, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    version = write_table(routes, "ep-m", [
        variant("a", 1, fleet("a-blue", model_a.url, weight=1, instances=2),
                fleet("a-green", model_b.url, weight=1, instances=2)),
    ], shadow={"variant": variant("s", 1, fleet("s-1", model_b.url)),
               "mirror_percentage": 100})  # fmt: skip
    with run_router(routes, tmp_path) as router:
        results = load(router.url + "/invocations", 200, 8)
        assert all(r.status == 200 for r in results)
        router.post("/invocations", b"x", **{"Content-Type": "text/csv"})
        config = router.get("/router/config").json()
        assert config["version"] == version and config["endpoint"] == "ep-m"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", config["loadedAt"])
        wait_for(
            lambda: value(router, "kubemaker_router_shadow_requests_total", outcome="sent") == 201,
            10, "the shadow copies",
        )  # fmt: skip
        by_fleet = {"endpoint": "ep-m", "variant": "a"}
        blue = value(router, "kubemaker_router_invocations_total", fleet="a-blue", **by_fleet)
        green = value(router, "kubemaker_router_invocations_total", fleet="a-green", **by_fleet)
        assert blue + green == 201 and blue > 50 and green > 50
        for name in (
            "kubemaker_router_invocation_4xx_errors_total",
            "kubemaker_router_invocation_5xx_errors_total",
            "kubemaker_router_model_latency_seconds_count",
            "kubemaker_router_overhead_latency_seconds_count",
        ):
            labels = {tuple(sorted(have)) for have, _ in samples(router, name)}
            assert labels == {("endpoint", "fleet", "variant")}, (name, labels)
        assert value(router, "kubemaker_router_invocation_4xx_errors_total", variant="a") == 1
        assert value(router, "kubemaker_router_model_latency_seconds_count", variant="a") == 201
        per_instance = value(router, "kubemaker_router_invocations_per_instance_total", variant="a")
        assert per_instance == pytest.approx(201 / 4)
        assert samples(router, "kubemaker_router_config_info") == [
            ({"endpoint": "ep-m", "version": version}, 1.0)
        ]
        assert value(router, "kubemaker_router_invocations_total", variant="s") == 201
        names = {
            name
            for name in router.get("/metrics").text.split()
            if name.startswith("kubemaker_router_")
        }
        for expected in ("held_requests", "hold_timeouts_total", "capture_records_total",
                         "capture_failures_total", "rejected_total"):  # fmt: skip
            assert any(n.startswith("kubemaker_router_" + expected) for n in names), expected


def test_keepalive_race_is_sent_again(tmp_path: Path) -> None:
    """A fleet that closes idle keep-alive connections as requests go out on them: every
    request still gets its answer, each read by the server exactly once."""
    routes = tmp_path / "routes.json"
    with RawServer("keepalive", idle_timeout=0.1, race_window=0.02) as upstream:
        write_table(routes, "ep", [variant("a", 1, fleet("a-1", upstream.url))])
        with run_router(routes, tmp_path) as router, requests.Session() as client:
            statuses: Counter[int] = Counter()
            failures: list[str] = []
            rng = random.Random(7)
            count = 80
            for _ in range(count):
                answer = client.post(
                    router.url + "/invocations", b"1", headers={"Content-Type": "text/csv"}
                )
                statuses[answer.status_code] += 1
                if answer.status_code != 200:
                    failures.append(answer.text)
                # Around the server's idle timeout: some requests reuse a live
                # connection, some land in the race, some find it closed.
                time.sleep(rng.uniform(0.06, 0.12))
            retries = value(router, "kubemaker_router_upstream_retries_total", fleet="a-1")
    assert statuses == {200: count}, (statuses, failures)
    assert upstream.closed_unread >= 5, upstream.closed_unread  # the race did happen
    # More retries than races made by the server: its own idle close can race a request.
    assert retries >= upstream.closed_unread
    assert upstream.requests == count  # and no request was read twice


@pytest.mark.parametrize("mode", ["drop-body", "drop-head"])
def test_disconnect_mid_response_is_not_sent_again(mode: Mode, tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    with RawServer(mode) as upstream:
        write_table(routes, "ep", [variant("a", 1, fleet("a-1", upstream.url))])
        with run_router(routes, tmp_path) as router:
            first = router.post("/invocations", b"1", **{"Content-Type": "text/csv"})
            assert first.status_code == 200, first.text
            # The same pooled connection: the server answers part, then closes.
            second = router.post("/invocations", b"1", **{"Content-Type": "text/csv"})
            assert second.status_code == 502, second.text
            assert "fleet a-1 broke the connection" in second.text
            assert second.headers[INVOKED_VARIANT_HEADER] == "a"
            assert value(router, "kubemaker_router_upstream_retries_total") == 0
    assert upstream.requests == 2


def test_held_request_for_a_removed_variant_ends_at_once(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    nowhere = "http://127.0.0.1:9"
    write_table(routes, "ep", [
        variant("a", 1, fleet("a-1", nowhere)),
        variant("zero", 0, fleet("zero-1", nowhere, instances=0)),
    ], hold_timeout_seconds=60)  # fmt: skip
    with run_router(routes, tmp_path, ready=False) as router:
        wait_for(lambda: router.get("/ping").status_code == 200, 10, "the table to load")
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                router.post, "/invocations", b"1",
                **{"Content-Type": "text/csv", TARGET_VARIANT_HEADER: "zero"},
            )  # fmt: skip
            wait_for(
                lambda: value(router, "kubemaker_router_held_requests", variant="zero") == 1,
                10, "the request held",
            )  # fmt: skip
            removed = time.monotonic()
            wait_version(
                router, write_table(routes, "ep", [variant("a", 1, fleet("a-1", nowhere))])
            )
            answer = held.result(timeout=30)
            waited = time.monotonic() - removed
    assert answer.status_code == 503, answer.text
    assert "variant zero is no longer a production variant of endpoint ep" in answer.text
    assert answer.headers[INVOKED_VARIANT_HEADER] == "zero"
    assert waited < 5, waited  # the table poll (1 s) and one backoff, not the 60 s hold
