"""The model server's HTTP application: routes, content negotiation, limits, errors.

:func:`create_app` wraps a :class:`~kubemaker_runtime.serving.model.Model` in an
:class:`App`, which is both an ASGI application (uvicorn, hypercorn, test clients) and
an RSGI application (granian, which :mod:`.server` runs because it is the fastest
here). The routing and the handlers are written once, in :meth:`App.handle`; the two
protocol adapters only move bytes and three headers.

Per-request work is kept to what a 1-row prediction can afford: static routes are one
dict lookup, parsed Content-Type / Accept headers are cached, responses are bytes.

Why one module of this size: :class:`App` is the whole per-request path that
benchmarks/serving_xgboost.py measures; its routes, body limits and both protocol
adapters share its cached state and are best read together.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from kubemaker_runtime import rsgi
from kubemaker_runtime.serving import v2
from kubemaker_runtime.serving.errors import (
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    NotAcceptable,
    PayloadTooLarge,
    RouteNotFound,
    ServingError,
    UnsupportedMediaType,
    status_for,
)
from kubemaker_runtime.serving.metrics import ServerMetrics
from kubemaker_runtime.serving.model import Model
from kubemaker_runtime.serving.settings import ServerSettings

logger = logging.getLogger(__name__)

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
SERVER_NAME = "kubemaker"
# How long a request waits for its worker's model to load before a 503: SageMaker's
# own limit on a request to a model server.
LOAD_WAIT_SECONDS = 60.0
# Bodies at least this large are decoded and predicted in a worker thread, so that one
# big batch-transform request does not hold up /ping and small requests.
INLINE_BODY_LIMIT = 256 * 1024
_HEADER_CACHE_LIMIT = 256


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None


ReadBody = Callable[[], Awaitable[bytes]]


class App:
    """One worker's server around one model."""

    def __init__(self, model: Model, settings: ServerSettings | None = None) -> None:
        self.model = model
        self.settings = settings or ServerSettings()
        self.metrics = ServerMetrics(model.name)
        self.load_error: str | None = None
        self._load_started = False
        self._load_lock = threading.Lock()
        self._load_ended = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._media_types: dict[str, str] = {}
        self._accepts: dict[str, str] = {}
        self._request_types = frozenset(t.lower() for t in model.request_types)
        self._response_types = tuple(t.lower() for t in model.response_types)
        self._default_accept = self._response_types[0]
        configured = (self.settings.default_accept or "").split(";", 1)[0].strip().lower()
        if configured in self._response_types:
            self._default_accept = configured
        elif configured:
            logger.warning(
                "default accept %r is not a type model %s returns; using %s",
                configured,
                model.name,
                self._default_accept,
            )
        self._v2_prefix = "/v2/models/"
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[Response]]] = {
            ("GET", "/ping"): self._ping,
            ("POST", "/invocations"): self._invocations,
            ("GET", "/execution-parameters"): self._execution_parameters,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/v2"): self._v2_server_metadata,
            ("GET", "/v2/health/live"): self._v2_live,
            ("GET", "/v2/health/ready"): self._v2_ready,
        }
        self._paths = {path for _, path in self._routes}
        max_mb = self.settings.max_payload_mb
        self._over_limit = f"over the maximum of {self.settings.max_payload_bytes} ({max_mb} MB)"
        self._server_metadata_body = orjson.dumps(
            {"name": SERVER_NAME, "version": _version(), "extensions": []}
        )
        self._execution_parameters_body = orjson.dumps(
            {
                "MaxConcurrentTransforms": (
                    self.settings.max_concurrent_transforms or self.settings.workers
                ),
                "BatchStrategy": self.settings.batch_strategy,
                "MaxPayloadInMB": max_mb,
            }
        )

    # --- model loading ----------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the model in a background thread (once); /ping turns 200 when done."""
        with self._load_lock:
            if self._load_started:
                return
            self._load_started = True
        threading.Thread(target=self._load, name="model-load", daemon=True).start()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self.model.load()
        except Exception as error:
            # The worker stays up but never ready: the orchestrator's probes say why.
            self.load_error = f"{type(error).__name__}: {error}"
            logger.exception("loading model %s failed", self.model.name)
            return
        finally:
            self._load_ended.set()
        if not self.model.ready:
            self.load_error = "load() returned without setting ready"
            logger.error("model %s: %s", self.model.name, self.load_error)
            return
        logger.info("model %s loaded in %.2fs", self.model.name, time.monotonic() - started)

    async def _wait_ready(self) -> None:
        """A request to a worker still loading waits for it (up to LOAD_WAIT_SECONDS).

        Each worker loads its own copy and /ping is answered by whichever worker takes
        the connection: once one answers 200, the pod is ready and traffic may reach a
        worker that is still loading. Waiting turns that into a short delay, not a 503.
        """
        if not self.model.ready and self._load_started and not self._load_ended.is_set():
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, self._load_ended.wait, LOAD_WAIT_SECONDS)
        self._require_ready()

    def _require_ready(self) -> None:
        if not self.model.ready:
            detail = f": loading failed ({self.load_error})" if self.load_error else ""
            raise ModelNotReady(f"model {self.model.name} is not ready{detail}")

    # --- dispatch -----------------------------------------------------------------------

    async def handle(
        self,
        method: str,
        path: str,
        content_type: str | None,
        accept: str | None,
        content_length: int | None,
        read_body: ReadBody,
    ) -> Response:
        """Answer one request; never raises."""
        route = self._routes.get((method, path))
        is_invocation = path == "/invocations"
        started = time.perf_counter()
        try:
            if route is not None:
                if is_invocation:
                    return await self._invocations(
                        content_type, accept, content_length, read_body, started
                    )
                return await route()
            if path.startswith(self._v2_prefix):
                is_invocation = path.endswith("/infer")
                return await self._v2_model_route(
                    method, path, content_type, content_length, read_body, started
                )
            if path in self._paths:
                raise MethodNotAllowed(f"{method} is not allowed on {path}")
            raise RouteNotFound(f"no route {method} {path}")
        except Exception as error:
            status = status_for(error)
            if isinstance(error, ServingError):
                message = error.message
            else:
                logger.exception("unexpected error handling %s %s", method, path)
                message = f"internal error ({type(error).__name__}); the server log has details"
            if is_invocation:
                self.metrics.observe_error(status)
            if path.startswith("/v2"):
                return Response(status, orjson.dumps({"error": message}), JSON)
            return Response(status, message.encode(), TEXT)

    # --- SageMaker routes ---------------------------------------------------------------

    async def _ping(self) -> Response:
        self._require_ready()
        return Response(200, b"", None)

    async def _execution_parameters(self) -> Response:
        return Response(200, self._execution_parameters_body, JSON)

    async def _metrics(self) -> Response:
        body, content_type = self.metrics.render()
        return Response(200, body, content_type)

    async def _invocations(
        self,
        content_type: str | None,
        accept: str | None,
        content_length: int | None,
        read_body: ReadBody,
        started: float,
    ) -> Response:
        await self._wait_ready()
        self._check_length(content_length)
        media_type = self._media_type(content_type)
        response_type = self._negotiate(accept)
        body = await read_body()
        if not body:
            # What SageMaker's own containers answer to an empty payload (a batch
            # transform may send one for an empty file).
            return Response(204)
        if len(body) < INLINE_BODY_LIMIT:
            payload, model_seconds = self._run_model(body, media_type, response_type)
        else:
            payload, model_seconds = await asyncio.get_running_loop().run_in_executor(
                self._big_request_executor(), self._run_model, body, media_type, response_type
            )
        self.metrics.observe(model_seconds, time.perf_counter() - started)
        return Response(200, payload, response_type)

    def _run_model(self, body: bytes, media_type: str, response_type: str) -> tuple[bytes, float]:
        model = self.model
        inputs = model.decode(body, media_type)
        before = time.perf_counter()
        outputs = model.predict(inputs)
        model_seconds = time.perf_counter() - before
        return model.encode(outputs, response_type), model_seconds

    def _big_request_executor(self) -> ThreadPoolExecutor:
        # One thread: big requests queue behind each other instead of multiplying the
        # memory they need, while the event loop stays free for small ones.
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="big-request")
        return self._executor

    def _check_length(self, length: int | None) -> None:
        if length is not None and length > self.settings.max_payload_bytes:
            raise PayloadTooLarge(f"the request body has {length} bytes, {self._over_limit}")

    def _too_large(self) -> PayloadTooLarge:
        """A body without Content-Length (chunked) that has grown past the limit."""
        return PayloadTooLarge(f"the request body (chunked) is {self._over_limit}")

    def _media_type(self, header: str | None) -> str:
        if header is None:
            raise UnsupportedMediaType(
                "the request has no Content-Type; supported: " + ", ".join(self._request_types)
            )
        cached = self._media_types.get(header)
        if cached is not None:
            return cached
        media_type = header.split(";", 1)[0].strip().lower()
        if media_type not in self._request_types:
            raise UnsupportedMediaType(
                f"Content-Type {media_type!r} is not supported; supported: "
                + ", ".join(sorted(self._request_types))
            )
        if len(self._media_types) > _HEADER_CACHE_LIMIT:
            self._media_types.clear()
        self._media_types[header] = media_type
        return media_type

    def _negotiate(self, header: str | None) -> str:
        if not header:
            return self._default_accept
        cached = self._accepts.get(header)
        if cached is not None:
            return cached
        chosen = negotiate(header, self._response_types, self._default_accept)
        if chosen is None:
            raise NotAcceptable(
                f"Accept {header!r} names no type this model returns; supported: "
                + ", ".join(self._response_types)
            )
        if len(self._accepts) > _HEADER_CACHE_LIMIT:
            self._accepts.clear()
        self._accepts[header] = chosen
        return chosen

    # --- Open Inference Protocol routes ---------------------------------------------------

    async def _v2_server_metadata(self) -> Response:
        return Response(200, self._server_metadata_body, JSON)

    async def _v2_live(self) -> Response:
        return Response(200, b'{"live":true}', JSON)

    async def _v2_ready(self) -> Response:
        if self.model.ready:
            return Response(200, b'{"ready":true}', JSON)
        return Response(503, b'{"ready":false}', JSON)

    async def _v2_model_route(
        self,
        method: str,
        path: str,
        content_type: str | None,
        content_length: int | None,
        read_body: ReadBody,
        started: float,
    ) -> Response:
        # /v2/models/{name}[/versions/{version}][/ready|/infer]
        parts = path[len(self._v2_prefix) :].split("/")
        name, rest = parts[0], parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            rest = rest[2:]
        action = rest[0] if rest else ""
        if len(rest) > 1 or action not in ("", "ready", "infer"):
            raise RouteNotFound(f"no route {method} {path}")
        expected = "POST" if action == "infer" else "GET"
        if method != expected:
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        if name != self.model.name:
            raise ModelNotFound(f"model {name!r} is not served here (this is {self.model.name!r})")
        if action == "":
            metadata = {
                "name": self.model.name,
                "versions": [],
                "platform": self.model.platform,
                **self.model.metadata_v2(),
            }
            return Response(200, orjson.dumps(metadata), JSON)
        if action == "ready":
            body = {"name": self.model.name, "ready": bool(self.model.ready)}
            return Response(200 if self.model.ready else 503, orjson.dumps(body), JSON)
        return await self._v2_infer(content_type, content_length, read_body, started)

    async def _v2_infer(
        self,
        content_type: str | None,
        content_length: int | None,
        read_body: ReadBody,
        started: float,
    ) -> Response:
        await self._wait_ready()
        self._check_length(content_length)
        if content_type and content_type.split(";", 1)[0].strip().lower() != JSON:
            raise UnsupportedMediaType(
                f"Content-Type {content_type!r}: inference requests are application/json"
            )
        body = await read_body()
        if len(body) < INLINE_BODY_LIMIT:
            payload, model_seconds = self._run_v2(body)
        else:
            payload, model_seconds = await asyncio.get_running_loop().run_in_executor(
                self._big_request_executor(), self._run_v2, body
            )
        self.metrics.observe(model_seconds, time.perf_counter() - started)
        return Response(200, payload, JSON)

    def _run_v2(self, body: bytes) -> tuple[bytes, float]:
        request_id, inputs = v2.decode_request(body)
        before = time.perf_counter()
        outputs = self.model.infer_v2(inputs)
        model_seconds = time.perf_counter() - before
        return v2.encode_response(self.model.name, request_id, outputs), model_seconds

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._asgi_lifespan(receive, send)
            return
        if kind != "http":
            return
        content_type = accept = None
        content_length: int | None = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value.decode("latin-1")
            elif key == b"accept":
                accept = value.decode("latin-1")
            elif key == b"content-length":
                content_length = rsgi.parse_length(value)
        limit = self.settings.max_payload_bytes

        async def read_body() -> bytes:
            chunks = []
            size = 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise self._too_large()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

        response = await self.handle(
            scope["method"], scope["path"], content_type, accept, content_length, read_body
        )
        headers = [(b"content-length", str(len(response.body)).encode())]
        if response.content_type:
            headers.append((b"content-type", response.content_type.encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _asgi_lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_loading()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- RSGI (granian) -------------------------------------------------------------------

    def __rsgi_init__(self, loop: Any) -> None:
        self.start_loading()

    def __rsgi_del__(self, loop: Any) -> None:
        self.close()

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        headers = scope.headers
        length_header = headers.get("content-length")
        content_length = rsgi.parse_length(length_header) if length_header else None
        limit = self.settings.max_payload_bytes

        async def read_body() -> bytes:
            return await rsgi.read_body(protocol, content_length, limit, self._too_large)

        response = await self.handle(
            scope.method,
            scope.path,
            headers.get("content-type"),
            headers.get("accept"),
            content_length,
            read_body,
        )
        out_headers = [("content-type", response.content_type)] if response.content_type else []
        protocol.response_bytes(response.status, out_headers, response.body)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def create_app(model: Model, settings: ServerSettings | None = None) -> App:
    """The server application around ``model`` (not loaded yet: the server starts it)."""
    return App(model, settings)


def negotiate(header: str, offered: tuple[str, ...], default: str) -> str | None:
    """The offered type an Accept header prefers (q-values, wildcards), else None."""
    candidates: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        fields = part.split(";")
        media_range = fields[0].strip().lower()
        if not media_range:
            continue
        quality = 1.0
        for parameter in fields[1:]:
            key, _, value = parameter.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            candidates.append((-quality, position, media_range))
    for _, _, media_range in sorted(candidates):
        if media_range == "*/*":
            return default
        if media_range.endswith("/*"):
            major = media_range[:-1]
            if default.startswith(major):
                return default
            match = next((t for t in offered if t.startswith(major)), None)
            if match:
                return match
        elif media_range in offered:
            return media_range
    return None


def _version() -> str:
    try:
        return importlib.metadata.version("kubemaker")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
