"""``kubemaker operator`` (also ``kubemaker-operator``): run the kopf operator.

One replica per cluster (the chart's Deployment uses the Recreate strategy): kopf runs
standalone, without peering objects. It watches every namespace, or only those named
by ``--namespace`` / the configuration's ``watchNamespaces``. Liveness is served by
kopf (``/healthz``), Prometheus metrics on their own port (``/metrics``).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import kopf

logger = logging.getLogger(__name__)

DEFAULT_HEALTH_PORT = 8080
DEFAULT_METRICS_PORT = 9090
DEFAULT_WORKERS = 16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="operator configuration (YAML, the chart's config.yaml); default: "
        "$KUBEMAKER_CONFIG, else built-in defaults",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        metavar="NAMESPACE",
        action="append",
        default=None,
        help="watch only this namespace (repeatable); default: the configuration's "
        "watchNamespaces, else all namespaces",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        default=None,
        help="kubeconfig to use outside a cluster (default: in-cluster, else $KUBECONFIG)",
    )
    parser.add_argument(
        "--health-address",
        default="0.0.0.0",
        help="address of the liveness endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=DEFAULT_HEALTH_PORT,
        help="port of the liveness endpoint GET /healthz; 0 disables it (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-address",
        default="0.0.0.0",
        help="address of the Prometheus endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="port of the Prometheus endpoint GET /metrics; -1 disables it (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="reconciles run at once per kind, and Kubernetes API requests in flight "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--no-events",
        dest="events",
        action="store_false",
        help="do not record Kubernetes Events on the objects",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("KUBEMAKER_LOG_FORMAT", "text"),
        help="log line format (default: %(default)s; env KUBEMAKER_LOG_FORMAT)",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    verbosity.add_argument("--quiet", "-q", action="store_true", help="warnings and errors only")


def _no_diff_base_storage() -> Any:
    import kopf

    class _NoDiffBaseStorage(kopf.DiffBaseStorage):
        """No diff base: kubemaker's controllers use watch handlers only, which never
        read one, yet kopf would deep-copy every object on every event to build it (with
        a thousand jobs' pods, that was half of the operator's CPU time)."""

        def build(self, *, body: Any, extra_fields: Any = None) -> Any:
            return {}

        def fetch(self, *, body: Any) -> Any:
            return None

        def store(self, *, body: Any, patch: Any, essence: Any) -> None:
            return None

    return _NoDiffBaseStorage()


def configure_settings(settings: Any, *, workers: int) -> None:
    """kopf settings for an operator that tracks thousands of objects.

    kopf's per-object persistence (progress, diff base, finalizer) is only used by
    change handlers; kubemaker's controllers use watch handlers and a work queue, so
    kopf writes nothing to the objects, and no diff base is computed at all. Progress
    would go to kubemaker.io annotations, never to ``status.kopf``. A controller that
    adds kopf change handlers must put a real diff base storage back.
    """
    import kopf

    settings.persistence.finalizer = "kubemaker.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubemaker.io")
    settings.persistence.diffbase_storage = _no_diff_base_storage()
    # kopf's own log-to-Event posting: only problems, never chatter.
    settings.posting.level = logging.WARNING
    # CRDs come with the chart, and namespaces are named exactly: no need to watch
    # CustomResourceDefinitions or Namespaces (and no RBAC for it).
    settings.scanning.disabled = True
    # Re-establish watches every few minutes; list big collections in pages.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.chunk_size = 500
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    # An object's kopf worker task ends soon after its last event.
    settings.queueing.idle_timeout = 2.0
    # All handlers are async: kopf's thread pool for sync handlers stays tiny.
    settings.execution.max_workers = 1
    logger.debug("kopf settings tuned for %d workers", workers)


def connection_info(configuration: Any, trust_env: bool) -> kopf.ConnectionInfo:
    """kopf's credentials from a ``kubernetes`` client configuration (as kopf's own
    ``login_via_client`` builds them, but from our configuration, not the global one)."""
    import kopf

    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else tuple(parts)
    )
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=trust_env,
    )


def run(args: argparse.Namespace) -> int:
    import kopf

    from kubemaker import metrics
    from kubemaker.config import ConfigError, load_config
    from kubemaker.controllers import endpoint, training, transform, tuning
    from kubemaker.kube import Kube, load_configuration

    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    if not args.verbose:
        # kopf logs every watch handler's success at INFO: thousands of lines a minute
        # with many objects. Its warnings and errors still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # One line per liveness probe is noise too.
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    namespaces = list(args.namespaces or config.watch_namespaces)

    kube = Kube.from_environment(kubeconfig=args.kubeconfig, max_workers=max(1, args.workers))
    trainer = training.TrainingController(
        kube, config, workers=max(1, args.workers), post_events=args.events
    )
    endpoints = endpoint.EndpointController(
        kube, config, workers=max(1, args.workers), post_events=args.events
    )
    tuner = tuning.TuningController(
        kube, config, workers=max(1, args.workers), post_events=args.events
    )
    transforms = transform.TransformController(
        kube, config, workers=max(1, args.workers), post_events=args.events
    )
    registry = kopf.OperatorRegistry()

    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_settings(settings, workers=args.workers)

    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
        # Called again by kopf after a 401, so a rotated token is picked up.
        return connection_info(
            load_configuration(kubeconfig=args.kubeconfig), settings.networking.trust_env
        )

    kopf.on.startup(registry=registry, id="kubemaker_settings")(startup)
    kopf.on.login(registry=registry, id="kubemaker_login")(login)
    training.register(registry)
    endpoint.register(registry)
    tuning.register(registry)
    transform.register(registry)

    if args.metrics_port >= 0:
        metrics.serve(args.metrics_port, args.metrics_address)
    liveness = (
        f"http://{args.health_address}:{args.health_port}/healthz" if args.health_port else None
    )
    logger.info(
        "kubemaker operator starting: %s, agent image %s",
        f"namespaces {', '.join(namespaces)}" if namespaces else "all namespaces",
        config.images.agent,
    )
    try:
        kopf.run(
            registry=registry,
            standalone=True,
            identity=operator_identity(),  # type: ignore[arg-type]
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            memo=kopf.Memo(
                training=trainer, endpoints=endpoints, tuning=tuner, transforms=transforms
            ),
        )
    finally:
        kube.close()
    return 0


def operator_identity(environ: Mapping[str, str] | None = None) -> str:
    """Who this operator is (in kopf's logs and peering): the pod's name, else host/pid.

    Given to kopf explicitly, because kopf's default asks ``getpass.getuser()``, which
    fails for a user without a passwd entry, as the image's and the chart's uid 65532.
    """
    env = os.environ if environ is None else environ
    return env.get("POD_NAME") or env.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubemaker-operator", description="Run the kubemaker operator."
    )
    add_arguments(parser)
    return run(parser.parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
