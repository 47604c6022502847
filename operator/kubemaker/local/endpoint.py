"""``kubemaker local serve -f endpoint.yaml``: a whole Endpoint on this machine.

Every production variant and the shadow variant get one model server each, started as
:mod:`kubemaker.local.serving` starts one (same model resolution, same launch code), on
a free loopback port. In front of them runs the Endpoint's router
(``python -m kubemaker_runtime.router``) on the requested address and port, reading a
routing table built by the operator's own rules
(:func:`kubemaker.builders.routes.routing_table_for`): weighted variants, the
target-variant header, shadow copies, data capture.

Not simulated: autoscaling (each variant gets one process, whatever its instance count
or ``minCapacity``), updates (``deploymentConfig``), instance types. A change to the
manifest needs a restart.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kubemaker.api import Endpoint, ProductionVariant
from kubemaker.builders.routes import routing_table_for
from kubemaker.config import OperatorConfig
from kubemaker.local import launch
from kubemaker.local.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    LocalError,
    RunError,
    UnsupportedError,
)
from kubemaker.local.serving import (
    ModelToServe,
    Started,
    check_port_free,
    endpoint_storage,
    example_request,
    from_variant,
    prepare_model,
    start_server,
    stop_server,
    stop_signals,
    wait_for_ping,
)
from kubemaker_runtime.routing import (
    ROUTES_FILE,
    TARGET_VARIANT_HEADER,
    Fleet,
    RoutingTable,
)

logger = logging.getLogger(__name__)

ROUTER_MODULE = "kubemaker_runtime.router"
# Under the workdir: endpoints/<name>/<variant>/ (each variant's /opt/ml) and routes.json.
ENDPOINTS_DIR = "endpoints"
FLEET_PREFIX = "local-"
WATCH_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True)
class VariantToServe:
    name: str
    served: ModelToServe
    shadow: bool = False


@dataclass(frozen=True)
class EndpointOptions:
    address: str = launch.LOOPBACK
    port: int = 8080
    workers: int = 1
    startup_timeout: float = 120.0
    # Replaces dataCaptureConfig.destinationS3Uri (an s3:// bucket this machine cannot
    # reach, say) with this directory.
    capture_dir: Path | None = None


# --- what to serve ---------------------------------------------------------------------------


def needs_router(endpoint: Endpoint) -> bool:
    """Whether ``--model endpoint.yaml`` (no ``--variant``) serves the whole Endpoint:
    several variants, a shadow or capture. ``-f`` always does."""
    spec = endpoint.spec
    capture = spec.data_capture_config is not None and spec.data_capture_config.enable_capture
    return len(spec.production_variants) > 1 or bool(spec.shadow_production_variants) or capture


def _named(variant: str, exc: LocalError) -> LocalError:
    """The same error, its message starting with the variant it is about."""
    named = type(exc)(f"variant {variant}: {exc.message}")
    named.exit_code = exc.exit_code
    return named


def resolve_variants(
    endpoint: Endpoint, workdir: Path, config: OperatorConfig
) -> list[VariantToServe]:
    """Every production variant's model, then the shadow variant's."""
    entries: list[tuple[ProductionVariant, bool]] = [
        (v, False) for v in endpoint.spec.production_variants
    ]
    entries += [(v, True) for v in endpoint.spec.shadow_production_variants or ()]
    result = []
    for variant, shadow in entries:
        try:
            served = from_variant(endpoint, variant, workdir, config, shadow=shadow)
        except LocalError as exc:
            raise _named(variant.variant_name, exc) from None
        result.append(VariantToServe(variant.variant_name, served, shadow))
    return result


def not_simulated(endpoint: Endpoint) -> list[str]:
    """What the manifest asks for that local mode does not do, one line each."""
    notes = []
    spec = endpoint.spec
    for variant in [*spec.production_variants, *(spec.shadow_production_variants or ())]:
        name = variant.variant_name
        if variant.auto_scaling is not None:
            notes.append(f"{name}: autoScaling is ignored locally (one model server)")
        elif variant.initial_instance_count != 1:
            notes.append(
                f"{name}: initialInstanceCount {variant.initial_instance_count} is one model "
                "server locally"
            )
    if spec.deployment_config is not None:
        notes.append("deploymentConfig is ignored locally (a changed manifest needs a restart)")
    return notes


def local_routing_table(
    endpoint: Endpoint, ports: Mapping[str, int], capture_dir: Path | None = None
) -> RoutingTable:
    """The operator's table for the Endpoint, each variant one local fleet on its port."""
    fleets = {
        name: [Fleet(name=f"{FLEET_PREFIX}{name}", url=f"http://{launch.LOOPBACK}:{port}")]
        for name, port in ports.items()
    }
    table = routing_table_for(endpoint.spec, endpoint.metadata.name, fleets)
    if capture_dir is None:
        return table
    if table.capture is None:
        raise LocalError(
            f"--capture-dir {capture_dir}: Endpoint {endpoint.metadata.name} captures nothing "
            "(no dataCaptureConfig, or enableCapture is false)"
        )
    destination = capture_dir.resolve().as_uri()
    capture = table.capture.model_copy(update={"destination": destination})
    return table.model_copy(update={"capture": capture}).with_version()


# --- running it ------------------------------------------------------------------------------


def require_router() -> None:
    if importlib.util.find_spec("aiohttp") is None:
        raise UnsupportedError(
            "serving an Endpoint locally runs its router, which needs aiohttp: "
            "pip install 'kubemaker[runtime]'"
        )


def router_env(endpoint: Endpoint, config: OperatorConfig) -> dict[str, str]:
    """The router's storage settings for capture (boto3 reads them from the environment)."""
    storage = endpoint_storage(endpoint, config)
    env = {"PYTHONUNBUFFERED": "1"}
    if storage.s3_endpoint_url:
        env["AWS_ENDPOINT_URL_S3"] = storage.s3_endpoint_url
    if storage.region:
        env["AWS_DEFAULT_REGION"] = storage.region
    return env


def try_request(url: str, example: Path | None, runtime: launch.Runtime, target: str) -> str:
    """The example request (see :func:`example_request`), sent to ``target``."""
    command = example_request(url, example, runtime)
    header = f" -H {shlex.quote(f'{TARGET_VARIANT_HEADER}: {target}')}"
    return command.replace(f"{url}/invocations", f"{url}/invocations{header}", 1)


def describe(
    endpoint: Endpoint,
    variants: list[VariantToServe],
    started: Mapping[str, Started],
    table: RoutingTable,
    url: str,
    routes: Path,
) -> list[str]:
    """What ``serve_endpoint`` prints once everything answers /ping."""
    width = max(len(v.name) for v in variants)
    lines = [f"Serving Endpoint {endpoint.metadata.name} with the router at {url}"]
    for variant in variants:
        server = started[variant.name]
        if variant.shadow:
            assert table.shadow is not None
            role = f"shadow, {table.shadow.mirror_percentage:g}% copied"
        else:
            found = table.variant(variant.name)
            assert found is not None
            role = f"weight {found.weight:g}"
        lines.append(
            f"  {variant.name:<{width}}  {server.url}  {role}  {variant.served.label} "
            f"with {server.runtime.describe()}"
        )
        lines.append(f"  {'':<{width}}  model: {variant.served.model_uri}")
    if table.capture is not None:
        lines.append(
            f"  capture: {table.capture.sampling_percentage:g}% of requests to "
            f"{table.capture.destination}/{endpoint.metadata.name}/<variant>/yyyy/mm/dd/hh/"
        )
    lines.append(f"  routes: {routes}")
    production = [v for v in variants if not v.shadow]
    first = variants[0]
    example = try_request(
        url, first.served.example_csv, started[first.name].runtime, production[-1].name
    )
    lines.append(f"  try:   {example}")
    lines.append(f"         (no {TARGET_VARIANT_HEADER} header: a variant drawn by weight)")
    lines.append("  stop:  Ctrl-C")
    return lines


def serve_endpoint(
    endpoint: Endpoint,
    variants: list[VariantToServe],
    options: EndpointOptions,
    *,
    workdir: Path,
    config: OperatorConfig,
) -> int:
    """Start every variant's model server and the router; serve until stopped."""
    require_router()
    for note in not_simulated(endpoint):
        logger.info("%s", note)
    port = options.port or launch.free_port(options.address)
    check_port_free(options.address, port)
    root = (workdir / ENDPOINTS_DIR / endpoint.metadata.name).resolve()
    with contextlib.ExitStack() as cleanup:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        cleanup.callback(shutil.rmtree, root, True)
        runtimes = {}
        for variant in variants:
            try:
                runtimes[variant.name] = prepare_model(variant.served, root / variant.name, config)
            except LocalError as exc:
                raise _named(variant.name, exc) from None
        deadline = time.monotonic() + options.startup_timeout
        with stop_signals() as stop:
            started: dict[str, Started] = {}
            for variant in variants:
                try:
                    started[variant.name] = start_server(
                        variant.served,
                        runtimes[variant.name],
                        root / variant.name,
                        address=launch.LOOPBACK,
                        port=launch.free_port(launch.LOOPBACK),
                        workers=options.workers,
                        cleanup=cleanup,
                    )
                except LocalError as exc:
                    raise _named(variant.name, exc) from None
            for name, server in started.items():
                left = max(0.0, deadline - time.monotonic())
                what = f"variant {name}: the model server"
                if not wait_for_ping(server.url, server.process, left, stop, what):
                    return EXIT_INTERRUPTED

            ports = {name: int(server.url.rsplit(":", 1)[1]) for name, server in started.items()}
            table = local_routing_table(endpoint, ports, options.capture_dir)
            routes = root / ROUTES_FILE
            routes.write_text(table.to_json() + "\n", encoding="utf-8")
            command = [
                sys.executable, "-m", ROUTER_MODULE, "--routes", str(routes),
                "--port", str(port), "--address", options.address,
            ]  # fmt: skip
            logger.info("starting the router: %s", " ".join(command))
            router = subprocess.Popen(
                command,
                env={**os.environ, **router_env(endpoint, config)},
                cwd=root,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            # Last in, first out: the router stops before the servers behind it.
            cleanup.callback(stop_server, router, "the router")
            host = launch.LOOPBACK if options.address in ("0.0.0.0", "") else options.address
            url = f"http://{host}:{port}"
            left = max(0.0, deadline - time.monotonic())
            if not wait_for_ping(url, router, left, stop, "the router"):
                return EXIT_INTERRUPTED
            for line in describe(endpoint, variants, started, table, url, routes):
                print(line, flush=True)

            processes = {"the router": router}
            processes.update(
                {f"variant {name}: the model server": s.process for name, s in started.items()}
            )
            while not stop.wait(WATCH_INTERVAL_SECONDS):
                for what, process in processes.items():
                    code = process.poll()
                    if code is not None:
                        raise RunError(f"{what} stopped by itself (exit code {code})")
            logger.info("stopping the router and %d model server(s)", len(started))
    return EXIT_OK
