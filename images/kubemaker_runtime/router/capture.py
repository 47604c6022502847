"""SageMaker data capture: sampled request/response records, written in batches.

Each sampled request becomes one JSON line in SageMaker's capture format (what Model
Monitor and existing notebooks parse)::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
      "data": "1,2,3", "encoding": "CSV"}, "endpointOutput": {...  "mode": "OUTPUT" ...}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceTime": "2026-12-02T06:00:00Z",
      "inferenceId": "<X-Amzn-SageMaker-Inference-Id, if sent>"}, "eventVersion": "0"}

Records wait in memory and are written every few seconds (or every N records, and at
shutdown) to ``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm-ss-ms>-<uuid>.jsonl``
(the records' hour, UTC), one file per variant and hour. Writing goes through
:mod:`kubemaker_runtime.storage` in a thread, off the event loop. A failed write is
counted and logged; it never fails a request. The buffer is bounded: when the store is
slower than the traffic, records are dropped and counted instead of filling memory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import os
import random
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

import orjson

from kubemaker_runtime.protocol import StorageConfig
from kubemaker_runtime.router.metrics import RouterMetrics
from kubemaker_runtime.router.table import Routes
from kubemaker_runtime.storage import StorageError, StoreFactory, join_uri

logger = logging.getLogger(__name__)

# (destination, endpoint, variant, hour path, first record's time)
_Key = tuple[str, str, str, str]


class CaptureWriter:
    def __init__(
        self,
        metrics: RouterMetrics,
        flush_seconds: float,
        flush_records: int,
        max_records: int,
        stores: StoreFactory | None = None,
    ) -> None:
        self._metrics = metrics
        self._flush_seconds = flush_seconds
        self._flush_records = flush_records
        self._max_records = max_records
        self._stores = stores or StoreFactory(StorageConfig())
        self._buffer: list[tuple[_Key, dt.datetime, bytes]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    def record(
        self,
        routes: Routes,
        variant: str,
        input_type: str | None,
        input_body: bytes,
        output_type: str | None,
        output_body: bytes,
        inference_id: str | None,
    ) -> None:
        capture = routes.table.capture
        if capture is None:
            return
        sampling = capture.sampling_percentage
        if sampling < 100 and random.random() * 100 >= sampling:
            return
        if len(self._buffer) >= self._max_records:
            self._metrics.capture_dropped.labels(routes.endpoint).inc()
            return
        now = dt.datetime.now(dt.UTC)
        data: dict[str, object] = {}
        if capture.capture_input:
            data["endpointInput"] = _payload(
                "INPUT", input_type, input_body, capture.csv_content_types,
                capture.json_content_types,
            )  # fmt: skip
        if capture.capture_output:
            data["endpointOutput"] = _payload(
                "OUTPUT", output_type, output_body, capture.csv_content_types,
                capture.json_content_types,
            )  # fmt: skip
        metadata = {
            "eventId": str(uuid.uuid4()),
            "inferenceTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if inference_id:
            metadata["inferenceId"] = inference_id
        line = orjson.dumps({"captureData": data, "eventMetadata": metadata, "eventVersion": "0"})
        key = (capture.destination, routes.endpoint, variant, now.strftime("%Y/%m/%d/%H"))
        self._buffer.append((key, now, line))
        if len(self._buffer) >= self._flush_records and self._wake is not None:
            self._wake.set()

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_seconds)
            self._wake.clear()
            batch = self._take()
            if batch:
                await asyncio.to_thread(self._write, batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        batch = self._take()
        if batch:
            await asyncio.to_thread(self._write, batch)
        await asyncio.to_thread(self._stores.close)

    def _take(self) -> dict[_Key, list[tuple[dt.datetime, bytes]]]:
        batch: dict[_Key, list[tuple[dt.datetime, bytes]]] = defaultdict(list)
        buffer, self._buffer = self._buffer, []
        for key, when, line in buffer:
            batch[key].append((when, line))
        return batch

    def _write(self, batch: dict[_Key, list[tuple[dt.datetime, bytes]]]) -> None:
        """One file per destination, variant and hour (in a thread)."""
        for (destination, endpoint, variant, hour), records in batch.items():
            first = records[0][0]
            name = f"{first:%M-%S}-{first.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
            uri = join_uri(destination, endpoint, variant, hour, name)
            fd, tmp = tempfile.mkstemp(prefix="kubemaker-capture-", suffix=".jsonl")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(b"\n".join(line for _, line in records) + b"\n")
                self._stores.for_uri(uri).upload(Path(tmp), uri)
            except (StorageError, OSError) as error:
                self._metrics.capture_failures.labels(endpoint).inc(len(records))
                logger.error(
                    "writing %d capture record(s) to %s failed: %s", len(records), uri, error
                )
            else:
                self._metrics.capture_records.labels(endpoint, variant).inc(len(records))
            finally:
                Path(tmp).unlink(missing_ok=True)


def _payload(
    mode: str, content_type: str | None, body: bytes, csv_types: list[str], json_types: list[str]
) -> dict[str, str]:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    encoding = "CSV" if media_type in csv_types else "JSON" if media_type in json_types else None
    data: str | None = None
    if encoding is not None:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = None
    if encoding is None or data is None:
        encoding, data = "BASE64", base64.b64encode(body).decode("ascii")
    return {
        "observedContentType": content_type or "",
        "mode": mode,
        "data": data,
        "encoding": encoding,
    }
