"""Fixtures of the end-to-end tests: real containers in a kind cluster, or in another
cluster with ``KUBEMAKER_E2E_KUBECONFIG`` (docs/e2e.md).

Tests marked ``e2e`` are skipped, with the reason and how to run them, when what they
need is missing here (``kindharness.e2e_problem``): a Docker engine (for kind, for the
image tests, and for building the images for another cluster; not for another cluster
with ``KUBEMAKER_E2E_BUILD=0``), or the kind node image's prerequisites.
``KUBEMAKER_E2E_REQUIRE=1``, the default where ``CI=true``, turns that skip into a
failure: CI must run them. ``kind_env`` (session) builds the tools, the images (and for
kind the node image), creates the kind cluster or connects to the other one, and installs
the S3 server and the chart (``kindharness.set_up``); at the end it deletes the kind
cluster, or removes what it installed in the other one, unless ``KUBEMAKER_E2E_KEEP=1``.
``e2e_namespace`` (function) is a fresh namespace with the storage Secret. When a test
fails, the cluster's state (job status, pod logs, events, the operator's log) is
appended to its report and written under ``.work/e2e/diagnostics/<test>/``.
"""

from __future__ import annotations

import functools
import re
import sys
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import kindharness
import pytest

E2E_DIR = Path(__file__).resolve().parent
_timings: dict[str, float] = {}


def _is_e2e(item: pytest.Item) -> bool:
    return item.get_closest_marker("e2e") is not None and E2E_DIR in Path(item.path).parents


def _uses_cluster(item: pytest.Item) -> bool:
    return "kind_env" in getattr(item, "fixturenames", ())


# `docker info` can take its whole timeout: asked once per session, and only when needed.
_docker_problem = functools.cache(kindharness.docker_engine_problem)
_node_problem = functools.cache(kindharness.kind_node_problem)


def _problem(settings: kindharness.Settings, *, uses_cluster: bool) -> str | None:
    """kindharness.e2e_problem with this machine's probes, each run at most once."""
    return kindharness.e2e_problem(
        settings,
        uses_cluster=uses_cluster,
        docker_problem=_docker_problem,
        node_problem=lambda: _node_problem(settings.node_image),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    e2e_items = [item for item in items if _is_e2e(item)]
    if not e2e_items:
        return
    try:
        settings = kindharness.Settings.from_env()
    except ValueError as exc:
        raise pytest.UsageError(f"e2e settings: {exc}") from exc
    if settings.require_docker:
        # With KUBEMAKER_E2E_REQUIRE=1 (or CI=true) the fixtures fail with the problem instead.
        return
    for item in e2e_items:
        reason = _problem(settings, uses_cluster=_uses_cluster(item))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def _live_log(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines shown as they happen (the setup takes minutes), not captured."""
    capture = config.pluginmanager.getplugin("capturemanager")

    def emit(message: str) -> None:
        if capture is None:
            print(f"[e2e] {message}", file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            print(f"[e2e] {message}", file=sys.stderr, flush=True)

    return emit


@pytest.fixture(scope="session")
def kind_env(request: pytest.FixtureRequest) -> Iterator[kindharness.Environment]:
    settings = kindharness.Settings.from_env()
    problem = _problem(settings, uses_cluster=True)
    if problem is not None:
        # Only reached with KUBEMAKER_E2E_REQUIRE=1 or CI=true (otherwise the tests were
        # skipped).
        problem = kindharness.without_skip_prefix(problem)
        pytest.fail(f"KUBEMAKER_E2E_REQUIRE=1 (or CI=true), but {problem}", pytrace=False)
    log = _live_log(request.config)
    try:
        env = kindharness.set_up(settings, log)
    except (kindharness.E2EError, kindharness.localcluster.ClusterError) as exc:
        pytest.fail(str(exc), pytrace=False)
    _timings.update(env.timings)
    try:
        yield env
    finally:
        env.tear_down()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"e2e-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def e2e_namespace(
    kind_env: kindharness.Environment, request: pytest.FixtureRequest
) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    kind_env.create_namespace(name)
    directory = kind_env.settings.workdir / "diagnostics" / name

    def diagnose() -> str:
        return kindharness.collect_diagnostics(kind_env.cluster, [name], directory)

    # Called by pytest_runtest_makereport below when the test fails, while the
    # namespace still exists.
    request.node.e2e_diagnose = diagnose
    kind = not kind_env.settings.existing
    request.node.e2e_diagnostics_title = f"{'kind ' if kind else ''}cluster diagnostics"
    try:
        yield name
    finally:
        # KUBEMAKER_E2E_KEEP=1 keeps a failed test's namespace for a look; a passed one's
        # would only hold the node's CPU against the next tests.
        if not (kind_env.settings.keep and getattr(request.node, "e2e_failed", False)):
            kind_env.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.e2e_failed = True
    diagnose = getattr(item, "e2e_diagnose", None)
    if report.when == "call" and report.failed and diagnose is not None:
        try:
            text = diagnose()
        except (kindharness.E2EError, OSError) as exc:
            text = f"collecting diagnostics failed: {exc}"
        title = getattr(item, "e2e_diagnostics_title", "cluster diagnostics")
        report.sections.append((title, text))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _timings:
        steps = ", ".join(f"{step} {seconds:.0f}s" for step, seconds in _timings.items())
        terminalreporter.write_line(f"kind e2e setup: {steps}")
