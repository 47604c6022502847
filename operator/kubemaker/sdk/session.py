"""``Session``: where the SDK talks to, as ``sagemaker.Session`` is for SageMaker.

A Session names a Kubernetes cluster (the current kubeconfig context and namespace
unless told otherwise) and object storage (``upload_data``, model artifacts, code).
Nothing is contacted when it is made: a notebook that only runs local mode never needs
a cluster. Storage is chosen on first use, first match wins:

1. the Session's own arguments (``s3_endpoint_url``, ``boto_session``);
2. a :class:`LocalSession`: a directory, ``<local workdir>/buckets``;
3. an endpoint in boto3's environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``);
4. the endpoint of the operator's chart configuration read from the cluster
   (``config.storage``), with the credentials Secret it names when this user may read it;
5. AWS S3, when boto3 finds credentials (environment, profile, instance role);
6. else a directory, with a note: fine for local mode, refused for a cluster job.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubemaker.config import OperatorConfig
from kubemaker.sdk import _args
from kubemaker.sdk._storage import DirStore, S3Store, Store

if TYPE_CHECKING:
    from kubemaker.sdk._cluster import ClusterClient
    from kubemaker.sdk._localrun import LocalRunner

logger = logging.getLogger("kubemaker.sdk")
_CONNECTING = threading.Lock()

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
OPERATOR_CONFIG_SELECTOR = (
    "app.kubernetes.io/part-of=kubemaker,app.kubernetes.io/component=operator"
)
ROLE_ENV = "KUBEMAKER_ROLE"


class NoCluster(RuntimeError):
    """No Kubernetes API could be reached or configured; the message says what to do."""


def get_execution_role(sagemaker_session: Session | None = None) -> str | None:
    """The role jobs run with: ``$KUBEMAKER_ROLE`` (a ServiceAccount name), else None,
    which leaves the pods the namespace's default identity."""
    del sagemaker_session
    return os.environ.get(ROLE_ENV) or None


class Session:
    """The cluster and object storage the SDK's calls go to.

    SageMaker's ``boto_session`` and ``default_bucket`` keep their meaning;
    ``namespace``, ``kubeconfig``, ``context`` pick the cluster; ``s3_endpoint_url``
    (with ``region``) picks an S3 API such as MinIO, as seen from this machine (the
    pods use the operator's configured endpoint); ``local_workdir`` is where local mode
    keeps its jobs (default ``$KUBEMAKER_LOCAL_WORKDIR``, else ``./.work/local``).
    """

    local_mode = False

    def __init__(
        self,
        boto_session: Any = None,
        default_bucket: str | None = None,
        *,
        namespace: str | None = None,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        s3_endpoint_url: str | None = None,
        region: str | None = None,
        local_workdir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        _args.merge("Session", {}, kwargs)
        from kubemaker.local.record import default_workdir

        self.boto_session = boto_session
        self._default_bucket = default_bucket
        self._namespace = namespace
        self.kubeconfig = str(kubeconfig) if kubeconfig is not None else None
        self.context = context
        self.s3_endpoint_url = s3_endpoint_url
        self.region = region
        self.local_workdir = Path(local_workdir) if local_workdir else default_workdir()
        self._store: Store | None = None
        self._cluster_client: ClusterClient | None = None
        self._local_runner: LocalRunner | None = None
        self._operator_config: OperatorConfig | None = None

    # --- where ---------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._namespace = self._kubeconfig_namespace()
        return self._namespace

    def _kubeconfig_namespace(self) -> str:
        if self.kubeconfig is None and IN_CLUSTER_NAMESPACE.exists():
            return IN_CLUSTER_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
        try:
            from kubernetes import config

            contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=self.kubeconfig
            )
            chosen = next((c for c in contexts if c["name"] == self.context), active)
            return str(chosen.get("context", {}).get("namespace") or "default")
        except Exception:  # no kubeconfig at all: local mode only
            return "default"

    def cluster(self) -> ClusterClient:
        """The Kubernetes API of this session, connected on first use."""
        # One connect at a time, process-wide: predictors used from several threads
        # would otherwise import the client library concurrently, and Python can fail
        # that with a _DeadlockError that leaves kubernetes.client half-imported for
        # good (seen on kind under load: every later request failed).
        with _CONNECTING:
            if self._cluster_client is None:
                from kubemaker.sdk._cluster import ClusterClient

                self._cluster_client = ClusterClient.connect(
                    self.kubeconfig, self.context, self.namespace
                )
        return self._cluster_client

    def local(self) -> LocalRunner:
        """Local mode's runner: jobs, endpoints and transforms as processes here."""
        if self._local_runner is None:
            from kubemaker.sdk._localrun import LocalRunner

            self._local_runner = LocalRunner(self.local_workdir, self.local_env())
        return self._local_runner

    def operator_config(self) -> OperatorConfig:
        """The operator's configuration (images, storage) as its chart set it, read from
        the cluster when this user may; else the built-in defaults."""
        if self._operator_config is None:
            self._operator_config = self._read_operator_config()
        return self._operator_config

    def _read_operator_config(self) -> OperatorConfig:
        if self.local_mode:
            return OperatorConfig()
        try:
            found = self.cluster().operator_config_maps(OPERATOR_CONFIG_SELECTOR)
        except NoCluster:
            return OperatorConfig()
        return choose_operator_config(found, self.namespace)

    # --- storage -------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self._choose_store()
        return self._store

    def _choose_store(self) -> Store:
        import boto3

        if self.s3_endpoint_url or self.boto_session is not None:
            boto = self.boto_session or boto3.session.Session()
            return S3Store(
                boto.client("s3", endpoint_url=self.s3_endpoint_url, region_name=self.region)
            )
        if self.local_mode:
            return DirStore(self.local_workdir / "buckets")
        boto = boto3.session.Session()
        if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
            return S3Store(boto.client("s3", region_name=self.region))
        # The operator's endpoint before AWS credentials this machine may hold for other
        # work: the jobs read and write where the operator points them.
        storage = self.operator_config().storage
        if storage.s3_endpoint_url:
            credentials = self._chart_credentials(storage.credentials_secret)
            return S3Store(
                boto.client(
                    "s3",
                    endpoint_url=storage.s3_endpoint_url,
                    region_name=self.region or storage.region or None,
                    **credentials,
                )
            )
        if boto.get_credentials() is not None:
            return S3Store(boto.client("s3", region_name=self.region or storage.region or None))
        root = self.local_workdir / "buckets"
        logger.warning(
            "kubemaker.sdk: no object storage configured; data is kept under %s, which only "
            "local mode (instance_type='local') can read. For a cluster, give "
            "Session(s3_endpoint_url=...) or set AWS_ENDPOINT_URL_S3.",
            root,
        )
        return DirStore(root)

    def _chart_credentials(self, secret: str) -> dict[str, str]:
        if not secret:
            return {}
        try:
            data = self.cluster().secret_data(secret)
        except Exception as exc:  # forbidden or absent: boto3's own chain may still work
            logger.info("the storage Secret %s could not be read (%s)", secret, exc)
            return {}
        names = {
            "AWS_ACCESS_KEY_ID": "aws_access_key_id",
            "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
        }
        return {
            arg: base64.b64decode(data[key]).decode() for key, arg in names.items() if key in data
        }

    def local_env(self) -> dict[str, str]:
        """What a local job's processes need to reach this session's S3 API."""
        env: dict[str, str] = {}
        if self.s3_endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint_url
        if self.region:
            env["AWS_DEFAULT_REGION"] = self.region
        if self.boto_session is not None:
            credentials = self.boto_session.get_credentials()
            if credentials is not None:
                frozen = credentials.get_frozen_credentials()
                env["AWS_ACCESS_KEY_ID"] = frozen.access_key
                env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
                if frozen.token:
                    env["AWS_SESSION_TOKEN"] = frozen.token
        return env

    @property
    def keeps_data_locally(self) -> bool:
        return isinstance(self.store, DirStore)

    def default_bucket(self) -> str:
        """The session's bucket (made if missing): the one given, else
        ``kubemaker-<namespace>``."""
        bucket = self._default_bucket or f"kubemaker-{self.namespace}"
        self.store.ensure_bucket(bucket)
        self._default_bucket = bucket
        return bucket

    def upload_data(
        self,
        path: str | os.PathLike[str],
        bucket: str | None = None,
        key_prefix: str = "data",
        extra_args: Mapping[str, Any] | None = None,
        callback: Any = None,
        **kwargs: Any,
    ) -> str:
        """Upload a file or a directory's files; the URI to hand a job, as SageMaker's:
        ``<bucket>/<key_prefix>`` for a directory, ``.../<file name>`` for a file."""
        _args.merge("Session.upload_data", {}, kwargs)
        if extra_args or callback is not None:
            raise _args.UnsupportedArgument(
                "Session.upload_data: extra_args and callback are not supported"
            )
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"upload_data: {source} does not exist")
        bucket = bucket or self.default_bucket()
        self.store.ensure_bucket(bucket)
        prefix = key_prefix.strip("/")
        if source.is_file():
            key = f"{prefix}/{source.name}" if prefix else source.name
            self.store.upload_file(source, bucket, key)
            return self.store.uri(bucket, key)
        for file in sorted(p for p in source.rglob("*") if p.is_file()):
            relative = file.relative_to(source).as_posix()
            self.store.upload_file(file, bucket, f"{prefix}/{relative}" if prefix else relative)
        return self.store.uri(bucket, prefix)

    def upload_string_as_file_body(
        self, body: str, bucket: str, key: str, kms_key: str | None = None
    ) -> str:
        _args.check_supported({"kms_key": kms_key}, "Session.upload_string_as_file_body")
        self.store.ensure_bucket(bucket)
        self.store.upload_bytes(body.encode(), bucket, key)
        return self.store.uri(bucket, key)

    def download_data(
        self,
        path: str | os.PathLike[str],
        bucket: str,
        key_prefix: str = "",
        extra_args: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Download every object under ``key_prefix`` into ``path``, keeping the
        structure below the prefix; the local paths written."""
        if extra_args:
            raise _args.UnsupportedArgument("Session.download_data: extra_args is not supported")
        target = Path(path)
        written = []
        prefix_dir = key_prefix.rsplit("/", 1)[0] + "/" if "/" in key_prefix else ""
        for key in self.store.keys(bucket, key_prefix):
            local = target / key[len(prefix_dir) :]
            local.parent.mkdir(parents=True, exist_ok=True)
            self.store.download_file(bucket, key, local)
            written.append(str(local))
        return written

    def read_s3_file(self, bucket: str, key_prefix: str) -> str:
        return self.store.read(bucket, key_prefix).decode()

    def list_s3_files(self, bucket: str, key_prefix: str) -> list[str]:
        return list(self.store.keys(bucket, key_prefix))

    def read_uri(self, uri: str) -> bytes:
        """The object at a URI this session's storage handed out."""
        bucket, key = self.store.locate(uri)
        return self.store.read(bucket, key)

    # --- the API's objects, as SageMaker's describe_* return them ----------------------

    def describe_training_job(self, job_name: str) -> dict[str, Any]:
        return self._runner().get("TrainingJob", job_name)

    def describe_tuning_job(self, job_name: str) -> dict[str, Any]:
        return self._runner().get("TuningJob", job_name)

    def describe_endpoint(self, endpoint_name: str) -> dict[str, Any]:
        return self._endpoint_runner(endpoint_name).get("Endpoint", endpoint_name)

    def describe_transform_job(self, job_name: str) -> dict[str, Any]:
        return self._runner().get("BatchTransform", job_name)

    def delete_endpoint(self, endpoint_name: str) -> None:
        self._endpoint_runner(endpoint_name).delete_endpoint(endpoint_name)

    def stop_training_job(self, job_name: str) -> None:
        self._runner().stop("TrainingJob", job_name)

    def _runner(self) -> ClusterClient | LocalRunner:
        return self.local() if self.local_mode else self.cluster()

    def _endpoint_runner(self, name: str) -> ClusterClient | LocalRunner:
        """Local mode's runner for an endpoint it serves (deployed with instance_type
        'local' through this session), else the session's own."""
        if self._local_runner is not None and name in self._local_runner.endpoints:
            return self._local_runner
        return self._runner()

    def runner_for(self, instance_type: str | None) -> ClusterClient | LocalRunner:
        """Local mode for ``local`` / ``local_gpu`` (SageMaker's convention) or a
        LocalSession; the cluster otherwise."""
        if self.local_mode or is_local(instance_type):
            return self.local()
        return self.cluster()


def choose_operator_config(documents: list[str], namespace: str) -> OperatorConfig:
    """The configuration of the operator that serves ``namespace``: one that watches it
    by name, else one that watches every namespace; the defaults when none does (or
    none can be read, as a chart of another version may not be)."""
    import yaml

    by_name: list[OperatorConfig] = []
    everywhere: list[OperatorConfig] = []
    for document in documents:
        try:
            config = OperatorConfig.from_mapping(yaml.safe_load(document))
        except Exception as exc:
            logger.warning("an operator's configuration could not be read: %s", exc)
            continue
        if namespace in config.watch_namespaces:
            by_name.append(config)
        elif not config.watch_namespaces:
            everywhere.append(config)
    chosen = by_name or everywhere
    if len(chosen) > 1:
        logger.warning(
            "kubemaker.sdk: %d operators serve namespace %s; using the first one's storage "
            "and images (give Session(s3_endpoint_url=...) to choose)",
            len(chosen),
            namespace,
        )
    return chosen[0] if chosen else OperatorConfig()


LOCAL_INSTANCE_TYPES = ("local", "local_gpu")


def is_local(instance_type: str | None) -> bool:
    return instance_type in LOCAL_INSTANCE_TYPES


class LocalSession(Session):
    """``sagemaker.local.LocalSession``: everything runs on this machine through
    kubemaker's local mode, and storage is a directory unless S3 is named."""

    local_mode = True

    def __init__(self, boto_session: Any = None, default_bucket: str | None = None, **kwargs: Any):
        # SageMaker's LocalSession takes a config dict ({'local': {'local_code': True}});
        # local code is the only mode here.
        kwargs.pop("config", None)
        super().__init__(boto_session, default_bucket, **kwargs)
