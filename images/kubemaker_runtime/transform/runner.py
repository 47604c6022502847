"""One BatchTransform instance: its share of the input objects through the model server.

For each object of its shard (:func:`records.shard`: every object read by exactly one
instance), in key order:

1. skip it when ``<output>/<key>.out`` exists: outputs appear only complete (an S3
   multipart upload is visible once completed, a file is renamed into place), so a
   retried pod redoes exactly the objects it had not finished;
2. stream it (never whole in memory), decompress ``Gzip``, split it into records
   (``splitType``), apply ``inputFilter``, and batch the records (``batchStrategy``,
   ``maxPayloadInMB``);
3. keep ``maxConcurrentTransforms`` requests in flight to ``/invocations``, and write
   the answers in the records' order to a local file: with ``assembleWith: Line``,
   one line per record (joined with its input record for ``joinSource: Input``, then
   ``outputFilter``);
4. upload that file as ``<key>.out``.

Settings the spec leaves unset come from the server's ``/execution-parameters``, then
SageMaker's defaults (1 request in flight, MultiRecord off, 6 MB). Errors are
:class:`TransformError`, the user's (the data, the model's 4xx, a setting: never
retried) or the platform's (storage, a server that does not answer).
"""

from __future__ import annotations

import collections
import logging
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from kubemaker_runtime.protocol import TransformConfig, TransformReport
from kubemaker_runtime.storage import (
    NotFoundError,
    StorageError,
    Store,
    StoredObject,
    StoreFactory,
    join_uri,
)
from kubemaker_runtime.transform import filters, records
from kubemaker_runtime.transform.client import (
    ExecutionParameters,
    ModelClient,
    ModelError,
    ServerError,
    execution_parameters,
)

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MB = 1 << 20
DEFAULT_MAX_PAYLOAD_MB = 6
#: SageMaker refuses maxConcurrentTransforms x maxPayloadInMB above this.
MAX_IN_FLIGHT_MB = 100


class TransformError(Exception):
    """The transform cannot go on; ``kind`` says whose fault."""

    def __init__(self, message: str, kind: Literal["user", "platform"] = "user") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass
class Progress:
    """What this instance has done so far (for a progress line or the metrics)."""

    objects_total: int = 0
    objects_found: int = 0
    objects_done: int = 0
    objects_skipped: int = 0
    records: int = 0
    bytes_in: int = 0
    started: float = field(default_factory=time.monotonic)
    current: str | None = None


@dataclass(frozen=True)
class Plan:
    """The settings in effect once the server's preferences are known."""

    strategy: Literal["MultiRecord", "SingleRecord"]
    max_payload_mb: int
    concurrency: int


def resolve(config: TransformConfig, asked: ExecutionParameters) -> Plan:
    """The spec's settings, else the server's (``asked``), else SageMaker's defaults."""
    if config.split_type == "None" and config.batch_strategy == "MultiRecord":
        raise TransformError(
            "spec.batchStrategy: MultiRecord needs records: set transformInput.splitType"
        )
    strategy = config.batch_strategy or asked.batch_strategy or "SingleRecord"
    payload = config.max_payload_in_mb
    if payload is None:
        payload = asked.max_payload_in_mb
    if payload is None:
        payload = DEFAULT_MAX_PAYLOAD_MB
    concurrency = config.max_concurrent_transforms or asked.max_concurrent_transforms or 1
    if concurrency * payload > MAX_IN_FLIGHT_MB:
        raise TransformError(
            f"spec.maxConcurrentTransforms x spec.maxPayloadInMB = {concurrency} x {payload} MB "
            f"is over {MAX_IN_FLIGHT_MB} MB (SageMaker's limit)"
        )
    return Plan(
        "MultiRecord" if strategy == "MultiRecord" else "SingleRecord", payload, concurrency
    )


def read_chunks(stream: BinaryIO, *, gzip: bool, uri: str) -> Iterator[bytes]:
    """The object's bytes, decompressed when ``gzip``, a chunk at a time."""
    inflate = zlib.decompressobj(wbits=31) if gzip else None
    while chunk := stream.read(CHUNK_BYTES):
        if inflate is None:
            yield chunk
            continue
        try:
            yield inflate.decompress(chunk)
        except zlib.error as exc:
            raise TransformError(
                f"{uri} is not Gzip data ({exc}): check transformInput.compressionType"
            ) from None
    if inflate is not None and not inflate.eof:
        raise TransformError(f"{uri} ends in the middle of its Gzip data")


class Transformer:
    """Runs one instance's share of a BatchTransform (``index`` of ``instanceCount``)."""

    def __init__(
        self,
        config: TransformConfig,
        *,
        index: int = 0,
        stop: threading.Event | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        work_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.stop = stop or threading.Event()
        self.on_progress = on_progress or (lambda _: None)
        self.work_dir = work_dir
        self.progress = Progress()
        self.content_type = config.content_type or ""
        try:
            self.input_filter = filters.compile_path(
                config.input_filter, "spec.dataProcessing.inputFilter"
            )
            self.output_filter = filters.compile_path(
                config.output_filter, "spec.dataProcessing.outputFilter"
            )
        except filters.FilterError as exc:
            raise TransformError(str(exc)) from None
        self.filtering_input = config.input_filter.strip() != "$"
        self.per_record = (
            config.join_source == "Input" or config.output_filter.strip() != "$"
        ) and config.split_type != "None"

    # --- the whole share ----------------------------------------------------------------

    def run(self) -> TransformReport:
        report = TransformReport(outcome="Completed")
        factory = StoreFactory(self.config.storage)
        client: ModelClient | None = None
        try:
            inputs = factory.for_uri(self.config.input_uri)
            mine, found = self._share(inputs)
            done = self._outputs(factory.for_uri(self.config.output_uri))
            plan = resolve(self.config, execution_parameters(self.config.server_url))
            client = ModelClient(
                self.config.server_url,
                content_type=self.config.content_type,
                accept=self.config.accept,
                timeout=self.config.invocations_timeout_in_seconds,
                retries=self.config.invocations_max_retries,
                concurrency=plan.concurrency,
            )
            logger.info(
                "%d of %d objects are this instance's; %s, %d MB, %d in flight",
                len(mine), found, plan.strategy, plan.max_payload_mb,
                plan.concurrency,
            )  # fmt: skip
            self.progress.objects_total = len(mine)
            self.progress.objects_found = found
            self.on_progress(self.progress)
            for obj in mine:
                if self.stop.is_set():
                    report = report.model_copy(update={"outcome": "Stopped"})
                    break
                if obj.key + ".out" in done:
                    self.progress.objects_skipped += 1
                    self.progress.objects_done += 1
                    self.on_progress(self.progress)
                    continue
                if not self._transform(obj, inputs, factory, client, plan):
                    report = report.model_copy(update={"outcome": "Stopped"})
                    break
                self.progress.objects_done += 1
                self.on_progress(self.progress)
        except TransformError as exc:
            report = report.model_copy(
                update={"outcome": "Failed", "failure_reason": exc.message, "error_kind": exc.kind}
            )
        except StorageError as exc:
            report = report.model_copy(
                update={
                    "outcome": "Failed",
                    "failure_reason": exc.message,
                    "error_kind": exc.kind,
                }
            )
        finally:
            if client is not None:
                client.close()
            factory.close()
        return report.model_copy(
            update={
                "objects_total": self.progress.objects_total,
                "objects_found": self.progress.objects_found,
                "objects_done": self.progress.objects_done,
                "objects_skipped": self.progress.objects_skipped,
                "records": self.progress.records,
            }
        )

    def _share(self, store: Store) -> tuple[list[StoredObject], int]:
        """This instance's objects, in key order, and how many there are in all."""
        try:
            found = [o for o in store.list(self.config.input_uri) if o.size >= 0]
        except NotFoundError:
            found = []
        if not found:
            raise TransformError(f"transformInput: no objects under {self.config.input_uri}")
        count = self.config.instance_count
        keys = set(records.shard([(o.key, o.size) for o in found], self.index, count))
        return sorted((o for o in found if o.key in keys), key=lambda o: o.key), len(found)

    def _outputs(self, store: Store) -> set[str]:
        """The outputs already complete (keys relative to the output path)."""
        try:
            return {o.key for o in store.list(self.config.output_uri)}
        except NotFoundError:
            return set()

    # --- one object ---------------------------------------------------------------------

    def _transform(
        self,
        obj: StoredObject,
        inputs: Store,
        factory: StoreFactory,
        client: ModelClient,
        plan: Plan,
    ) -> bool:
        """Transform one object into ``<key>.out``; False when stopped before its end."""
        self.progress.current = obj.key
        target = join_uri(self.config.output_uri, obj.key + ".out")
        with tempfile.TemporaryDirectory(prefix="kubemaker-transform-", dir=self.work_dir) as tmp:
            out_path = Path(tmp) / "out"
            with inputs.open(obj) as stream, out_path.open("wb") as out:
                chunks = read_chunks(stream, gzip=self.config.compression == "Gzip", uri=obj.uri)
                if not self._pipe(obj, chunks, out, client, plan):
                    return False
            factory.for_uri(target).upload(out_path, target)
        logger.info("%s -> %s", obj.uri, target)
        return True

    def _pipe(
        self,
        obj: StoredObject,
        chunks: Iterable[bytes],
        out: BinaryIO,
        client: ModelClient,
        plan: Plan,
    ) -> bool:
        """Records to requests to the output, in order, ``plan.concurrency`` in flight."""
        originals: collections.deque[bytes] = collections.deque()
        keep = self.config.join_source == "Input"

        def sent() -> Iterator[bytes]:
            for position, record in enumerate(split, start=1):
                if keep:
                    originals.append(record)
                if self.filtering_input:
                    record = filters.select(
                        self.input_filter, record, self.content_type, position=position
                    )
                yield record

        split = records.iter_records(chunks, self.config.split_type)
        # Records go to the batches as they are unless filtered or kept for the join.
        source = sent() if keep or self.filtering_input else split

        window: collections.deque[tuple[records.Batch, Future[bytes]]] = collections.deque()
        with ThreadPoolExecutor(plan.concurrency, thread_name_prefix="invoke") as pool:
            try:
                batches = records.batches(
                    source,
                    strategy=plan.strategy,
                    max_payload=plan.max_payload_mb * MB,
                    split_type=self.config.split_type,
                )
                for batch in batches:
                    if self.stop.is_set():
                        return False
                    window.append((batch, pool.submit(client.invoke, batch.body)))
                    if len(window) > plan.concurrency:
                        self._write(obj, *window.popleft(), originals, out)
                while window:
                    self._write(obj, *window.popleft(), originals, out)
            except records.RecordError as exc:
                raise TransformError(f"{obj.uri}: {exc}") from None
            except filters.FilterError as exc:
                raise TransformError(f"{obj.uri}: {exc}") from None
            finally:
                for _, future in window:
                    future.cancel()
        return True

    def _write(
        self,
        obj: StoredObject,
        batch: records.Batch,
        future: Future[bytes],
        originals: collections.deque[bytes],
        out: BinaryIO,
    ) -> None:
        where = _records(obj, batch)
        try:
            answer = future.result()
        except ModelError as exc:
            raise TransformError(
                f"{where}: the model server refused {_them(batch)} ({exc.status}: {exc.message})"
            ) from None
        except ServerError as exc:
            raise TransformError(f"{where}: {exc}", kind="platform") from None
        self.progress.records += batch.count
        self.progress.bytes_in += len(batch.body)
        self.on_progress(self.progress)
        line = self.config.assemble_with == "Line"
        if not self.per_record:
            if line and self.config.split_type != "None":
                _check_lines(answer, batch, where)
            out.write(answer if not line or answer.endswith(b"\n") else answer + b"\n")
            return
        outputs = _split_answer(answer, batch, where)
        accept = self.config.accept or self.content_type
        for offset, output in enumerate(outputs):
            record = output
            if self.config.join_source == "Input":
                record = filters.join(originals.popleft(), output, self.content_type, accept)
            record = filters.select(
                self.output_filter, record, accept if self.config.join_source == "None"
                else self.content_type, position=batch.first + offset + 1,
            )  # fmt: skip
            out.write(record + b"\n" if line else record)


def _records(obj: StoredObject, batch: records.Batch) -> str:
    first = batch.first + 1
    span = f"record {first}" if batch.count == 1 else f"records {first}-{first + batch.count - 1}"
    return f"{obj.uri}, {span}"


def _them(batch: records.Batch) -> str:
    return "it" if batch.count == 1 else "them"


def _check_lines(answer: bytes, batch: records.Batch, where: str) -> None:
    lines = answer.count(b"\n") + (0 if answer.endswith(b"\n") or not answer else 1)
    if lines != batch.count:
        raise TransformError(
            f"{where}: the model server answered {lines} line(s) for {batch.count} record(s): "
            "assembleWith Line needs one line per record (a SageMaker server answers so "
            "when SAGEMAKER_BATCH is set)"
        )


def _split_answer(answer: bytes, batch: records.Batch, where: str) -> list[bytes]:
    if batch.count == 1:
        return [answer.rstrip(b"\r\n")]
    _check_lines(answer, batch, where)
    return answer.rstrip(b"\n").split(b"\n")
