"""An Endpoint's data-plane metrics: parsing real exposition text, rates, alarms, and the
two sources (pods' /metrics and the Prometheus HTTP API) over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kubemaker.api.endpoint import Alarm
from kubemaker.planners.endpoint_metrics import (
    FleetCounters,
    FleetRates,
    Snapshot,
    evaluate_alarm,
    parse_router_text,
    parse_server_text,
    rates,
)
from kubemaker.reconcile.scrape import (
    ScrapeError,
    ScrapeTarget,
    prometheus_queries,
    query_prometheus,
    scrape_pods,
)

ROUTER_LABELS = ["endpoint", "variant", "fleet"]


def router_text(
    traffic: Mapping[tuple[str, str], tuple[int, int, int, list[float]]],
    held: Mapping[str, int] | None = None,
    version: str = "v1",
) -> str:
    """A router's /metrics as prometheus_client writes it. ``traffic``: per (variant,
    fleet), (invocations, 4xx, 5xx, latencies in seconds observed as model latency and,
    halved, as overhead latency)."""
    registry = CollectorRegistry()
    invocations = Counter(
        "kubemaker_router_invocations", "requests", ROUTER_LABELS, registry=registry
    )
    errors_4xx = Counter(
        "kubemaker_router_invocation_4xx_errors", "4xx", ROUTER_LABELS, registry=registry
    )
    errors_5xx = Counter(
        "kubemaker_router_invocation_5xx_errors", "5xx", ROUTER_LABELS, registry=registry
    )
    model = Histogram(
        "kubemaker_router_model_latency_seconds", "model", ROUTER_LABELS, registry=registry
    )
    overhead = Histogram(
        "kubemaker_router_overhead_latency_seconds", "overhead", ROUTER_LABELS, registry=registry
    )
    held_gauge = Gauge(
        "kubemaker_router_held_requests", "held", ["endpoint", "variant"], registry=registry
    )
    config = Gauge(
        "kubemaker_router_config_info", "table", ["endpoint", "version"], registry=registry
    )
    for (variant, fleet), (count, e4, e5, latencies) in traffic.items():
        labels = ("ep", variant, fleet)
        invocations.labels(*labels).inc(count)
        errors_4xx.labels(*labels).inc(e4)
        errors_5xx.labels(*labels).inc(e5)
        for seconds in latencies:
            model.labels(*labels).observe(seconds)
            overhead.labels(*labels).observe(seconds / 2)
    for variant, count in (held or {}).items():
        held_gauge.labels("ep", variant).set(count)
    config.labels("ep", version).set(1)
    return generate_latest(registry).decode()


def server_text(invocations: int, errors: Mapping[str, int], latencies: list[float]) -> str:
    """A model server's /metrics, with the names and labels serving/metrics.py uses."""
    registry = CollectorRegistry()
    counter = Counter("kubemaker_invocations", "requests", ["model"], registry=registry)
    error_counter = Counter(
        "kubemaker_invocation_errors", "errors", ["model", "code"], registry=registry
    )
    model = Histogram("kubemaker_model_latency_seconds", "m", ["model"], registry=registry)
    overhead = Histogram("kubemaker_overhead_latency_seconds", "o", ["model"], registry=registry)
    counter.labels("xgb").inc(invocations)
    for code, count in errors.items():
        error_counter.labels("xgb", code).inc(count)
    for seconds in latencies:
        model.labels("xgb").observe(seconds)
        overhead.labels("xgb").observe(seconds / 4)
    return generate_latest(registry).decode()


# --- parsing ------------------------------------------------------------------------------


def test_router_text_parses_into_series_held_and_versions() -> None:
    text = router_text(
        {
            ("A", "blue"): (10, 2, 1, [0.25, 0.5]),
            ("A", "green"): (4, 0, 3, []),
            ("B", "b1"): (7, 0, 0, [1.0]),
        },
        held={"C": 3},
        version="abc123",
    )
    assert "kubemaker_router_invocations_created" in text  # real text, _created included
    snapshot = parse_router_text(text, taken_at=100.0, source="10.0.0.5:9090")
    assert snapshot.taken_at == 100.0
    assert snapshot.series == {
        ("10.0.0.5:9090", "A", "blue"): FleetCounters(10, 2, 1, 0.75, 2, 0.375, 2),
        ("10.0.0.5:9090", "A", "green"): FleetCounters(4, 0, 3, 0, 0, 0, 0),
        ("10.0.0.5:9090", "B", "b1"): FleetCounters(7, 0, 0, 1.0, 1, 0.5, 1),
    }
    assert snapshot.held == {"C": 3}
    assert snapshot.config_versions == frozenset({"abc123"})
    assert snapshot.variants == frozenset({"A", "B", "C"})


def test_server_text_counts_errors_by_the_codes_first_digit() -> None:
    text = server_text(20, {"400": 2, "404": 1, "500": 4, "503": 1, "5xx": 2}, [0.5, 0.25])
    snapshot = parse_server_text(text, "A", "blue", taken_at=5.0, source="10.0.0.7:8080")
    assert snapshot.series == {
        ("10.0.0.7:8080", "A", "blue"): FleetCounters(20, 3, 7, 0.75, 2, 0.1875, 2),
    }
    assert snapshot.held == {}
    assert snapshot.config_versions == frozenset()


def test_text_that_is_not_exposition_format_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_router_text("<html>this is not it</html>\n", taken_at=0)


def test_merge_adds_series_held_and_unites_versions() -> None:
    a = parse_router_text(
        router_text({("A", "blue"): (10, 1, 0, [])}, held={"A": 2}, version="v1"),
        taken_at=10,
        source="r1",
    )
    b = parse_router_text(
        router_text({("A", "blue"): (5, 0, 2, [])}, held={"A": 1}, version="v2"),
        taken_at=11,
        source="r2",
    )
    merged = a.merge([b, Snapshot(9, {("r1", "A", "blue"): FleetCounters(invocations=1)})])
    assert merged.taken_at == 11
    assert merged.series == {
        ("r1", "A", "blue"): FleetCounters(11, 1, 0),
        ("r2", "A", "blue"): FleetCounters(5, 0, 2),
    }
    assert merged.fleets == {("A", "blue"): FleetCounters(16, 1, 2)}
    assert merged.held == {"A": 3}
    assert merged.config_versions == frozenset({"v1", "v2"})


# --- rates ----------------------------------------------------------------------------------


def test_rates_per_variant_and_fleet_with_a_restarted_router_replica() -> None:
    previous = Snapshot(
        0,
        {
            ("r1", "A", "blue"): FleetCounters(100, 4, 2, 10.0, 100, 1.0, 100),
            ("r2", "A", "blue"): FleetCounters(900, 0, 0, 90.0, 900, 9.0, 900),
            ("r1", "A", "green"): FleetCounters(10, 0, 0, 1.0, 10, 0.1, 10),
            ("r3", "A", "blue"): FleetCounters(50, 0, 0, 5.0, 50, 0.5, 50),  # r3 stops
        },
    )
    current = Snapshot(
        30,
        {
            ("r1", "A", "blue"): FleetCounters(130, 5, 2, 13.0, 130, 1.3, 130),
            # r2 restarted: its counters went back, so all of them count.
            ("r2", "A", "blue"): FleetCounters(15, 1, 0, 3.0, 15, 0.15, 15),
            ("r1", "A", "green"): FleetCounters(25, 0, 3, 2.5, 25, 0.25, 25),
            # A new replica: all of it counts.
            ("r4", "B", "b1"): FleetCounters(6, 0, 0, 0.0, 0, 0.0, 0),
        },
    )
    result = rates(previous, current, variants=["A", "B", "C"])
    assert set(result) == {"A", "B", "C"}
    a = result["A"]
    # 30 (r1 blue) + 15 (r2 reset) + 15 (green) = 60 in 30 s.
    assert a.total.invocations == 60
    assert a.invocations_per_minute == 120.0
    assert a.total.errors_4xx == 2 and a.total.errors_4xx_per_minute == 4.0
    assert a.total.errors_5xx == 3 and a.total.errors_5xx_per_minute == 6.0
    # (3.0 + 3.0 + 1.5) s over 60 requests: 125 ms.
    assert a.total.model_latency_us == pytest.approx(125_000.0)
    assert a.fleets["blue"].invocations_per_minute == 90.0
    assert a.fleets["blue"].model_latency_us == pytest.approx(6.0 / 45 * 1e6)  # 133 ms
    assert a.fleets["blue"].overhead_latency_us == pytest.approx(10_000.0)
    assert a.fleets["green"] == FleetRates(
        seconds=30,
        invocations=15,
        errors_4xx=0,
        errors_5xx=3,
        invocations_per_minute=30.0,
        errors_4xx_per_minute=0.0,
        errors_5xx_per_minute=6.0,
        model_latency_us=pytest.approx(100_000.0),
        overhead_latency_us=pytest.approx(10_000.0),
    )
    assert result["B"].invocations_per_minute == 12.0
    assert result["B"].total.model_latency_us is None  # no latency observed
    assert result["C"].invocations_per_minute == 0.0  # named, no series: no traffic
    assert result["C"].fleets == {}


def test_no_rates_without_a_positive_interval() -> None:
    snapshot = Snapshot(10, {("r", "A", "f"): FleetCounters(5)})
    assert rates(snapshot, snapshot, variants=["A"]) == {}
    assert rates(snapshot, Snapshot(5), variants=["A"]) == {}


# --- alarms -------------------------------------------------------------------------------

HIGH_ERRORS = Alarm(
    alarm_name="HighErrors",
    metric_name="Invocation5XXErrors",
    threshold=5,
    period_in_seconds=60,
    evaluation_periods=2,
)


def history(
    points: list[tuple[float, Mapping[str, tuple[float, float]]]],
) -> list[Snapshot]:
    """Snapshots of router r1, variant A: per time, per fleet (invocations, 5xx)."""
    return [
        Snapshot(
            t,
            {
                ("r1", "A", fleet): FleetCounters(invocations=n, errors_5xx=e)
                for fleet, (n, e) in fleets.items()
            },
        )
        for t, fleets in points
    ]


# Every 30 s; the new fleet's 5xx: 9 in (0, 60], 12 in (60, 120]. The old fleet: 1 each.
ERRORS = history(
    [
        (0, {"new": (0, 0), "old": (0, 0)}),
        (30, {"new": (50, 4), "old": (100, 0)}),
        (60, {"new": (100, 9), "old": (200, 1)}),
        (90, {"new": (150, 15), "old": (300, 1)}),
        (120, {"new": (200, 21), "old": (400, 2)}),
    ]
)


def test_alarm_fires_when_each_of_the_n_periods_breaches() -> None:
    state = evaluate_alarm(HIGH_ERRORS, list(reversed(ERRORS)), "new")
    assert state.fired is True
    assert state.value == 12
    assert state.values == (9, 12)
    assert state.message == (
        "alarm HighErrors: Invocation5XXErrors 9, 12 > 5 in each of the last 2 periods of 60 s"
    )


def test_alarm_does_not_fire_when_one_period_is_below_threshold() -> None:
    quiet_start = history(
        [
            (0, {"new": (0, 0)}),
            (30, {"new": (50, 1)}),
            (60, {"new": (100, 3)}),
            (90, {"new": (150, 9)}),
            (120, {"new": (200, 15)}),
        ]
    )
    state = evaluate_alarm(HIGH_ERRORS, quiet_start, "new")
    assert state.fired is False
    assert state.values == (3, 12)
    assert state.message == (
        "alarm HighErrors: Invocation5XXErrors 3, 12 in the last 2 periods of 60 s; "
        "fires when each is > 5"
    )


def test_alarm_missing_data_does_not_breach() -> None:
    # Only the newest period has snapshots.
    state = evaluate_alarm(HIGH_ERRORS, ERRORS[2:], "new")
    assert state.fired is False
    assert state.values == (None, 12)
    assert state.message == (
        "alarm HighErrors: Invocation5XXErrors no data, 12 in the last 2 periods of 60 s; "
        "fires when each is > 5"
    )
    # A period with snapshots but no requests at all is missing data too.
    idle = history([(0, {"new": (10, 10)}), (30, {"new": (10, 10)}), (60, {"new": (10, 10)})])
    assert evaluate_alarm(HIGH_ERRORS, idle, "new").values == (None, None)
    assert evaluate_alarm(HIGH_ERRORS, [], "new").values == (None, None)


def test_alarm_on_one_fleet_or_the_whole_variant() -> None:
    old_only = evaluate_alarm(HIGH_ERRORS, ERRORS, "old")
    assert (old_only.fired, old_only.values) == (False, (1, 1))
    whole = evaluate_alarm(HIGH_ERRORS, ERRORS, None)
    assert (whole.fired, whole.values) == (True, (10, 13))
    assert evaluate_alarm(HIGH_ERRORS, ERRORS, None, variant="B").values == (None, None)


def test_alarm_greater_or_equal_and_a_single_period() -> None:
    alarm = Alarm(
        alarm_name="Any4xx",
        metric_name="Invocation4XXErrors",
        comparison_operator="GreaterThanOrEqualToThreshold",
        threshold=2,
        period_in_seconds=60,
    )
    snapshots = [
        Snapshot(0, {("r1", "A", "new"): FleetCounters(invocations=10, errors_4xx=1)}),
        Snapshot(45, {("r1", "A", "new"): FleetCounters(invocations=30, errors_4xx=3)}),
    ]
    state = evaluate_alarm(alarm, snapshots, "new")
    assert state.fired is True
    assert state.message == "alarm Any4xx: Invocation4XXErrors 2 >= 2 in the last period of 60 s"


def test_latency_alarm_in_microseconds_with_a_counter_reset() -> None:
    alarm = Alarm(
        alarm_name="SlowModel",
        metric_name="ModelLatency",
        threshold=100_000,
        period_in_seconds=60,
    )

    def point(t: float, count: float, seconds: float) -> Snapshot:
        counters = FleetCounters(
            invocations=count, model_latency_sum=seconds, model_latency_count=count
        )
        return Snapshot(t, {("r1", "A", "new"): counters})

    # 20 s in, the router restarted: the 4 requests since (1.0 s in all) are the increase.
    slow = [point(0, 100, 5.0), point(20, 4, 1.0), point(40, 8, 2.0)]
    state = evaluate_alarm(alarm, slow, "new")
    assert state.fired is True
    assert state.value == 250_000
    assert state.message == (
        "alarm SlowModel: ModelLatency 250000 > 100000 in the last period of 60 s"
    )
    fast = evaluate_alarm(
        alarm.model_copy(update={"comparison_operator": "LessThanThreshold"}), slow, "new"
    )
    assert fast.fired is False
    assert fast.message == (
        "alarm SlowModel: ModelLatency 250000 in the last period of 60 s; fires when it is < 100000"
    )


# --- the sources over loopback HTTP -------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(routes: Mapping[str, Handler]) -> tuple[web.AppRunner, int]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


def text_handler(text: str) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(text=text, content_type="text/plain")

    return handler


def test_scrape_pods_merges_what_answered_and_names_what_did_not() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def hang(_: web.Request) -> web.StreamResponse:
            await release.wait()
            return web.Response(text="")

        async def broken(_: web.Request) -> web.StreamResponse:
            return web.Response(status=500, text="oops")

        texts = [
            router_text({("A", "blue"): (10, 1, 2, [0.5])}, held={"A": 1}, version="v7"),
            router_text({("A", "blue"): (5, 0, 0, [])}, held={"A": 2}, version="v7"),
        ]
        servers = [await serve({"/metrics": text_handler(t)}) for t in texts]
        servers.append(await serve({"/metrics": text_handler(server_text(3, {"503": 1}, []))}))
        servers.append(await serve({"/metrics": hang}))
        servers.append(await serve({"/metrics": broken}))
        servers.append(await serve({"/metrics": text_handler("<html>nope</html>\n")}))
        closed_runner, closed_port = await serve({})
        await closed_runner.cleanup()  # nothing listens there any more
        ports = [port for _, port in servers]
        targets = [
            ScrapeTarget("127.0.0.1", ports[0]),
            ScrapeTarget("127.0.0.1", ports[1]),
            ScrapeTarget("127.0.0.1", ports[2], kind="server", variant="S", fleet="s1"),
            ScrapeTarget("127.0.0.1", ports[3]),
            ScrapeTarget("127.0.0.1", ports[4]),
            ScrapeTarget("127.0.0.1", ports[5]),
            ScrapeTarget("127.0.0.1", closed_port),
        ]
        try:
            async with aiohttp.ClientSession() as session:
                result = await scrape_pods(session, targets, timeout=1.0, taken_at=42.0)
        finally:
            release.set()
            for runner, _ in servers:
                await runner.cleanup()
        snapshot = result.snapshot
        assert snapshot.taken_at == 42.0
        assert snapshot.series == {
            (f"127.0.0.1:{ports[0]}", "A", "blue"): FleetCounters(10, 1, 2, 0.5, 1, 0.25, 1),
            (f"127.0.0.1:{ports[1]}", "A", "blue"): FleetCounters(5, 0, 0, 0, 0, 0, 0),
            (f"127.0.0.1:{ports[2]}", "S", "s1"): FleetCounters(3, 0, 1, 0, 0, 0, 0),
        }
        assert snapshot.held == {"A": 3}
        assert snapshot.config_versions == frozenset({"v7"})
        assert len(result.errors) == 4
        assert result.errors[:2] == [
            f"router 127.0.0.1:{ports[3]}: timed out",
            f"router 127.0.0.1:{ports[4]}: HTTP 500",
        ]
        # The rest of this line is prometheus_client's parser's own message.
        assert result.errors[2].startswith(
            f"router 127.0.0.1:{ports[5]}: not Prometheus exposition text: ValueError: "
        )
        assert result.errors[3].startswith(f"router 127.0.0.1:{closed_port}: ClientConnectorError")
        assert "\n" not in result.errors[3]

    asyncio.run(scenario())


def test_scrape_target_urls() -> None:
    assert ScrapeTarget("10.1.2.3", 9090).url == "http://10.1.2.3:9090/metrics"
    assert ScrapeTarget("fd00::1", 9090).url == "http://[fd00::1]:9090/metrics"


# The loopback server below stands in for a Prometheus server (none can run here): it
# answers /api/v1/query with the JSON that Prometheus' HTTP API documents for an
# instant query, {"status": "success", "data": {"resultType": "vector", ...}}.


def vector(samples: list[tuple[dict[str, str], str]]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1700000000.0, v]} for m, v in samples],
        },
    }


def test_query_prometheus_reads_the_instant_vectors() -> None:
    queries = prometheus_queries("team-a", "ep")
    answers = {
        queries["invocations"]: vector(
            [
                ({"variant": "A", "fleet": "blue", "instance": "10.0.0.5:9090"}, "120"),
                ({"variant": "A", "fleet": "blue", "instance": "10.0.0.6:9090"}, "30"),
                ({"variant": "A", "fleet": "green", "instance": "10.0.0.5:9090"}, "7"),
            ]
        ),
        queries["errors_5xx"]: vector(
            [({"variant": "A", "fleet": "green", "instance": "10.0.0.5:9090"}, "2")]
        ),
        queries["model_latency_sum"]: vector(
            [({"variant": "A", "fleet": "blue", "instance": "10.0.0.5:9090"}, "1.5")]
        ),
        queries["model_latency_count"]: vector(
            [({"variant": "A", "fleet": "blue", "instance": "10.0.0.5:9090"}, "120")]
        ),
        queries["held"]: vector([({"variant": "B"}, "4")]),
        queries["versions"]: vector([({"version": "v3"}, "2"), ({"version": "v4"}, "1")]),
    }
    seen: list[tuple[str, str]] = []

    async def query(request: web.Request) -> web.StreamResponse:
        q = request.query["query"]
        seen.append((q, request.query["time"]))
        return web.json_response(answers.get(q, vector([])))

    async def scenario() -> None:
        runner, port = await serve({"/api/v1/query": query})
        try:
            async with aiohttp.ClientSession() as session:
                snapshot = await query_prometheus(
                    session, f"http://127.0.0.1:{port}/", "team-a", "ep", 2.0, taken_at=1234.5
                )
        finally:
            await runner.cleanup()
        assert snapshot.taken_at == 1234.5
        assert snapshot.series == {
            ("10.0.0.5:9090", "A", "blue"): FleetCounters(
                invocations=120, model_latency_sum=1.5, model_latency_count=120
            ),
            ("10.0.0.6:9090", "A", "blue"): FleetCounters(invocations=30),
            ("10.0.0.5:9090", "A", "green"): FleetCounters(invocations=7, errors_5xx=2),
        }
        assert snapshot.held == {"B": 4}
        assert snapshot.config_versions == frozenset({"v3", "v4"})

    asyncio.run(scenario())
    assert sorted(q for q, _ in seen) == sorted(queries.values())
    assert {t for _, t in seen} == {"1234.500"}  # all evaluated at one instant
    assert queries["invocations"] == (
        "sum by (variant, fleet, instance) "
        '(kubemaker_router_invocations_total{namespace="team-a", endpoint="ep"})'
    )
    assert queries["model_latency_count"] == (
        "sum by (variant, fleet, instance) "
        '(kubemaker_router_model_latency_seconds_count{namespace="team-a", endpoint="ep"})'
    )
    assert queries["held"] == (
        'sum by (variant) (kubemaker_router_held_requests{namespace="team-a", endpoint="ep"})'
    )
    assert queries["versions"] == (
        'count by (version) (kubemaker_router_config_info{namespace="team-a", endpoint="ep"})'
    )


def test_query_prometheus_errors_are_one_line_scrape_errors() -> None:
    async def refuse(_: web.Request) -> web.StreamResponse:
        body = {"status": "error", "errorType": "bad_data", "error": "parse error\nat char 5"}
        return web.Response(status=400, text=json.dumps(body), content_type="application/json")

    async def gateway(_: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="<html>bad gateway</html>")

    async def scenario() -> tuple[str, str, str]:
        messages = []
        for handler in (refuse, gateway):
            runner, port = await serve({"/api/v1/query": handler})
            try:
                async with aiohttp.ClientSession() as session:
                    with pytest.raises(ScrapeError) as caught:
                        await query_prometheus(
                            session, f"http://127.0.0.1:{port}", "ns", "ep", 2.0, taken_at=1
                        )
                messages.append(str(caught.value).replace(str(port), "PORT"))
            finally:
                await runner.cleanup()
        closed, port = await serve({})
        await closed.cleanup()
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ScrapeError) as caught:
                await query_prometheus(
                    session, f"http://127.0.0.1:{port}", "ns", "ep", 2.0, taken_at=1
                )
        messages.append(str(caught.value).replace(str(port), "PORT"))
        return messages[0], messages[1], messages[2]

    refused, bad_gateway, unreachable = asyncio.run(scenario())
    assert refused.startswith("Prometheus refused 'sum by (variant, fleet, instance) (kubemaker_")
    assert refused.endswith(": bad_data: parse error at char 5")
    assert bad_gateway == "Prometheus at http://127.0.0.1:PORT: HTTP 502"
    assert unreachable.startswith("Prometheus at http://127.0.0.1:PORT: ClientConnectorError")
    assert "\n" not in refused + bad_gateway + unreachable


def test_a_pod_answering_too_much_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kubemaker.reconcile.scrape.MAX_METRICS_BYTES", 100)
    text = router_text({("A", "blue"): (1, 0, 0, [])})
    assert len(text) > 100

    async def scenario() -> list[str]:
        runner, port = await serve({"/metrics": text_handler(text)})
        try:
            async with aiohttp.ClientSession() as session:
                result = await scrape_pods(
                    session, [ScrapeTarget("127.0.0.1", port)], timeout=2.0, taken_at=1
                )
        finally:
            await runner.cleanup()
        assert result.snapshot.series == {}
        return [e.replace(str(port), "PORT") for e in result.errors]

    assert asyncio.run(scenario()) == ["router 127.0.0.1:PORT: more than 100 bytes"]
