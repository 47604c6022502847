"""The SDK's side of a cluster: kubemaker objects through the Kubernetes API.

Jobs are followed by reading their status every few seconds (a notebook cell blocks on
it, as SageMaker's ``fit`` does); a TrainingJob's first instance's log is streamed
while it runs. Predictions reach an Endpoint's Service through the API server's
service proxy with the user's own credentials, so no ingress is needed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlparse

from kubemaker.api import API_VERSION, GROUP, KINDS, VERSION
from kubemaker.sdk._http import headers
from kubemaker.sdk.exceptions import ModelError
from kubemaker.sdk.session import NoCluster

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger("kubemaker.sdk")

JSON = dict[str, Any]
POLL_SECONDS = 2.0
STATUS_FIELD = {
    "TrainingJob": "trainingJobStatus",
    "TuningJob": "hyperParameterTuningJobStatus",
    "BatchTransform": "transformJobStatus",
    "Endpoint": "endpointStatus",
}
TERMINAL = ("Completed", "Failed", "Stopped")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
ALGORITHM_CONTAINER = "algorithm"
TUNING_JOB_LABEL = "kubemaker.io/tuning-job"


def _plural(kind: str) -> str:
    return next(info.plural for info in KINDS if info.kind == kind)


class ClusterClient:
    """kubemaker's four kinds in one namespace of one cluster, over the API's REST paths
    (the client library's raw layer: bodies go out as the bytes given, so a prediction
    reaches the model exactly as serialized)."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str) -> ClusterClient:
        from kubernetes.client import ApiClient

        from kubemaker.kube import load_configuration

        try:
            configuration = load_configuration(kubeconfig=kubeconfig, context=context)
        except Exception as exc:
            raise NoCluster(
                f"no Kubernetes cluster to talk to ({exc}); set KUBECONFIG or "
                "Session(kubeconfig=...), or run here with instance_type='local'"
            ) from None
        return cls(ApiClient(configuration), namespace)

    # --- requests ------------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        stream: bool = False,
        read_timeout: float = 60.0,
    ) -> Any:
        """The urllib3 response of a request with this user's credentials."""
        import urllib3

        full = f"{path}?{urlencode(query)}" if query else path
        _, url, header_params, _, _ = self.api.param_serialize(
            method, full, header_params=dict(headers or {}), auth_settings=["BearerToken"]
        )
        try:
            return self.api.rest_client.pool_manager.request(
                method,
                url,
                body=body,
                headers=header_params,
                preload_content=not stream,
                timeout=urllib3.Timeout(connect=10.0, read=None if stream else read_timeout),
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise NoCluster(f"the Kubernetes API did not answer ({exc})") from None

    def request(
        self,
        what: str,
        method: str,
        path: str,
        obj: JSON | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JSON:
        """A JSON request; the answer's JSON, or an error that says what went wrong."""
        body = json.dumps(obj).encode() if obj is not None else None
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        response = self.send(method, path, body=body, headers=headers, query=query)
        data = response.data or b""
        if not 200 <= response.status <= 299:
            raise _api_error(what, response.status, data, self.namespace)
        result: JSON = json.loads(data) if data else {}
        return result

    def _path(self, kind: str, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{_plural(kind)}"
        return f"{base}/{name}" if name else base

    # --- objects -------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> JSON:
        return self.request(f"{kind} {name}", "GET", self._path(kind, name))

    def create(self, manifest: JSON) -> JSON:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        body = {**manifest, "apiVersion": API_VERSION}
        result = self.request(f"creating {kind} {name}", "POST", self._path(kind), body)
        print(f"kubemaker: created {kind} {self.namespace}/{name}", flush=True)
        return result

    def patch(self, kind: str, name: str, body: JSON) -> JSON:
        return self.request(
            f"updating {kind} {name}",
            "PATCH",
            self._path(kind, name),
            body,
            content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, name: str) -> None:
        self.request(f"deleting {kind} {name}", "DELETE", self._path(kind, name))

    def list_objects(self, kind: str, label_selector: str) -> list[JSON]:
        result = self.request(
            f"listing {kind}s", "GET", self._path(kind), query={"labelSelector": label_selector}
        )
        return list(result.get("items", []))

    def stop(self, kind: str, name: str) -> None:
        self.patch(kind, name, {"spec": {"stop": True}})

    def delete_endpoint(self, name: str) -> None:
        self.delete("Endpoint", name)
        print(f"kubemaker: deleted Endpoint {self.namespace}/{name}", flush=True)

    def operator_config_maps(self, selector: str) -> list[str]:
        """The ``config.yaml`` of the operator's chart: cluster-wide when this user may
        list ConfigMaps, else in the session's namespace; none when neither is allowed."""
        for path in ("/api/v1/configmaps", f"/api/v1/namespaces/{self.namespace}/configmaps"):
            try:
                found = self.request(
                    "reading the operator's configuration",
                    "GET",
                    path,
                    query={"labelSelector": selector},
                )
            except PermissionError:
                continue
            return [
                i["data"]["config.yaml"]
                for i in found.get("items", [])
                if "config.yaml" in (i.get("data") or {})
            ]
        return []

    def secret_data(self, name: str) -> dict[str, str]:
        secret = self.request(
            f"Secret {name}", "GET", f"/api/v1/namespaces/{self.namespace}/secrets/{name}"
        )
        return dict(secret.get("data") or {})

    # --- following -----------------------------------------------------------------------

    def follow(
        self,
        kind: str,
        name: str,
        *,
        until: tuple[str, ...] = TERMINAL,
        on_change: Callable[[JSON], None] | None = None,
        timeout: float | None = None,
        generation: int = 0,
    ) -> JSON:
        """Read the object until its status string is one of ``until`` for a spec of at
        least ``generation`` (an update is judged by its own status); the last read."""
        field = STATUS_FIELD[kind]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            obj = self.get(kind, name)
            if on_change is not None:
                on_change(obj)
            status = obj.get("status", {})
            current = int(status.get("observedGeneration", 0)) >= generation
            if current and status.get(field) in until:
                return obj
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {name} is still {obj.get('status', {}).get(field)}")
            time.sleep(POLL_SECONDS)

    def follow_training(self, name: str, *, logs: bool) -> JSON:
        """Print the job's secondary statuses as SageMaker's ``fit`` does and, with
        ``logs``, its first instance's algorithm log; the job once it ended."""
        printed = 0
        streams: dict[str, threading.Thread] = {}

        def on_change(obj: JSON) -> None:
            nonlocal printed
            status = obj.get("status", {})
            transitions = status.get("secondaryStatusTransitions", [])
            for item in transitions[printed:]:
                stamp = str(item.get("startTime", ""))[:19].replace("T", " ")
                message = item.get("statusMessage", "")
                print(f"{stamp} {item.get('status')} - {message}".rstrip(" -"), flush=True)
            printed = len(transitions)
            job = status.get("jobName")
            if (
                logs
                and job
                and job not in streams
                and status.get("secondaryStatus")
                in (
                    "Downloading",
                    "Training",
                    "Uploading",
                    "Completed",
                    "Failed",
                )
            ):
                streams[job] = threading.Thread(
                    target=self._print_log, args=(job,), daemon=True, name=f"log-{job}"
                )
                streams[job].start()

        obj = self.follow("TrainingJob", name, on_change=on_change)
        for thread in streams.values():
            thread.join(timeout=10)
        status = obj.get("status", {})
        if status.get("trainingTimeInSeconds") is not None:
            print(f"Training seconds: {status['trainingTimeInSeconds']}", flush=True)
        return obj

    def _print_log(self, job: str) -> None:
        """Stream the log of the job's index-0 pod's algorithm container to stdout."""
        try:
            for line in self._log_lines(job):
                print(line, flush=True)
        except Exception as exc:  # the status is what matters; the log is a nicety
            logger.info("the log of %s could not be read: %s", job, exc)

    def _log_lines(self, job: str) -> Iterator[str]:
        pods_path = f"/api/v1/namespaces/{self.namespace}/pods"
        selector = f"job-name={job},{COMPLETION_INDEX}=0"
        deadline = time.monotonic() + 300
        pod = None
        while pod is None and time.monotonic() < deadline:
            pods = self.request("pods", "GET", pods_path, query={"labelSelector": selector})
            started = [
                p["metadata"]["name"]
                for p in pods.get("items", [])
                if p.get("status", {}).get("phase") not in (None, "Pending")
            ]
            pod = started[0] if started else None
            if pod is None:
                time.sleep(POLL_SECONDS)
        if pod is None:
            return
        response = self.send(
            "GET",
            f"{pods_path}/{pod}/log",
            query={"container": ALGORITHM_CONTAINER, "follow": "true"},
            stream=True,
        )
        if response.status != 200:
            raise RuntimeError(f"the log of pod {pod}: {response.status} {response.reason}")
        pending = b""
        for chunk in response.stream(decode_content=True):
            # A chunk may end mid-line: keep the partial line for the next one.
            *lines, pending = (pending + chunk).split(b"\n")
            yield from (line.decode(errors="replace") for line in lines)
        if pending:
            yield pending.decode(errors="replace")

    def wait_for(self, kind: str, name: str, *, logs: bool) -> JSON:
        """Follow a job to its end (a TrainingJob with its log, others their status)."""
        if kind == "TrainingJob":
            return self.follow_training(name, logs=logs)
        return self.follow(kind, name, on_change=print_status(kind) if logs else None)

    def trials(self, tuning_job: str) -> list[JSON]:
        return self.list_objects("TrainingJob", f"{TUNING_JOB_LABEL}={tuning_job}")

    def deploy(self, manifest: JSON, *, wait: bool = True) -> JSON:
        obj = self.create(manifest)
        if not wait:
            return obj
        return self.follow(
            "Endpoint",
            manifest["metadata"]["name"],
            until=("InService", "Failed"),
            on_change=print_status("Endpoint"),
        )

    def update_endpoint(self, name: str, manifest: JSON) -> JSON:
        """Replace the Endpoint's spec (an UpdateEndpoint: the operator rolls it out) and
        wait until it is InService again."""
        patched = self.patch("Endpoint", name, {"spec": manifest["spec"]})
        return self.follow(
            "Endpoint",
            name,
            until=("InService", "Failed"),
            on_change=print_status("Endpoint"),
            generation=int(patched["metadata"].get("generation", 0)),
        )

    # --- predictions ---------------------------------------------------------------------

    def invoke(
        self,
        endpoint: str,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        target_variant: str | None,
    ) -> tuple[bytes, str]:
        """POST to the Endpoint's ``/invocations`` through the service proxy."""
        url = self.get("Endpoint", endpoint).get("status", {}).get("endpointUrl")
        if not url:
            raise ModelError(f"Endpoint {endpoint} has no URL yet: it is not InService", 503)
        parsed = urlparse(url)
        service = (parsed.hostname or "").split(".")[0]
        path = (
            f"/api/v1/namespaces/{self.namespace}/services/"
            f"{service}:{parsed.port or 80}/proxy/invocations"
        )
        sent = headers(content_type, accept, target_variant)
        response = self.send("POST", path, body=body, headers=sent)
        data: bytes = response.data or b""
        if not 200 <= response.status <= 299:
            message = data.decode(errors="replace").strip() or response.reason
            raise ModelError(
                f"Endpoint {endpoint} answered {response.status}: {message}", response.status
            )
        return data, str(response.headers.get("Content-Type", ""))


def _api_error(what: str, status: int, data: bytes, namespace: str) -> Exception:
    """An API error as the exception a notebook user reads best, with the API's message."""
    message = data.decode(errors="replace")
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(data).get("message", message)
    if status == 404:
        return LookupError(f"{what}: not found in namespace {namespace}")
    if status == 409:
        return ValueError(f"{what}: it already exists in namespace {namespace}: {message}")
    if status == 422:
        return ValueError(f"{what}: the cluster refused it: {message}")
    if status in (401, 403):
        return PermissionError(f"{what}: not allowed in namespace {namespace}: {message}")
    return RuntimeError(f"{what}: the Kubernetes API answered {status}: {message}")


def print_status(kind: str) -> Callable[[JSON], None]:
    """An ``on_change`` that prints the status string each time it changes."""
    last: list[str | None] = [None]
    field = STATUS_FIELD[kind]

    def show(obj: JSON) -> None:
        status = obj.get("status", {}).get(field)
        if status != last[0]:
            last[0] = status
            sys.stdout.write(f"{kind} {obj['metadata']['name']}: {status}\n")
            sys.stdout.flush()

    return show
