"""Pipe mode: per-channel, per-epoch FIFOs fed from the store while the algorithm reads.

As on SageMaker, the algorithm opens ``/opt/ml/input/data/<channel>_0``, reads it to
end of file and closes it; the agent then offers the whole channel again as
``<channel>_1``, and so on for as many epochs as the algorithm reads. The next
epoch's FIFO is created before the current one reaches end of file, and a consumed
epoch's FIFO is removed.

Writes are non-blocking and wait in ``select`` with a short timeout, so a feeder
stops promptly when asked even while the reader is not reading.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import select
import stat
import struct
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from kubemaker_runtime.agent.errors import AgentError, PlatformError, from_storage
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import ChannelConfig
from kubemaker_runtime.storage import StorageError, Store, StoredObject

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
POLL_SECONDS = 0.05
# RecordIO (MXNet's format, which SageMaker uses): a magic number, then a word holding a
# 3-bit continuation flag and a 29-bit length, then the data padded to 4 bytes.
RECORDIO_MAGIC = 0xCED7230A
RECORDIO_MAX_LENGTH = (1 << 29) - 1


def ensure_fifo(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path, 0o666)
        return
    if not stat.S_ISFIFO(mode):
        raise PlatformError(f"{path} exists and is not a FIFO")


class _Stopped(Exception):
    pass


class _ReaderGone(Exception):
    pass


def recordio_header(length: int, cflag: int = 0) -> bytes:
    return struct.pack("<II", RECORDIO_MAGIC, (cflag << 29) | length)


def recordio_padding(length: int) -> bytes:
    return b"\0" * (-length % 4)


def recordio_records(data: bytes) -> Iterator[bytes]:
    """One object as RecordIO: one record, or parts flagged start/middle/end if huge."""
    if len(data) <= RECORDIO_MAX_LENGTH:
        yield recordio_header(len(data)) + data + recordio_padding(len(data))
        return
    parts = [data[i : i + RECORDIO_MAX_LENGTH] for i in range(0, len(data), RECORDIO_MAX_LENGTH)]
    for index, part in enumerate(parts):
        cflag = 1 if index == 0 else 3 if index == len(parts) - 1 else 2
        yield recordio_header(len(part), cflag) + part + recordio_padding(len(part))


class PipeFeeder:
    """Feeds one Pipe-mode channel, epoch after epoch, in a background thread."""

    def __init__(
        self, channel: ChannelConfig, store: Store, objects: Sequence[StoredObject], paths: Paths
    ) -> None:
        self.channel = channel
        self.store = store
        self.objects = list(objects)
        self.paths = paths
        self.epochs_completed = 0
        self.bytes_read = 0
        self.error: AgentError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pipe-{channel.name}", daemon=True)

    def create_first_fifo(self) -> None:
        """Epoch 0's FIFO exists before the algorithm starts."""
        ensure_fifo(self.paths.pipe_fifo(self.channel.name, 0))

    def start(self) -> None:
        self.create_first_fifo()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        epoch = 0
        try:
            ensure_fifo(self.paths.pipe_fifo(self.channel.name, 0))
            while not self._stop.is_set():
                fifo = self.paths.pipe_fifo(self.channel.name, epoch)
                fd = self._open_for_writing(fifo)
                if fd is None:
                    return
                try:
                    try:
                        self._feed_epoch(fd)
                    except _ReaderGone:
                        logger.info(
                            "channel %r epoch %d: the reader closed the pipe early",
                            self.channel.name,
                            epoch,
                        )
                    # The next FIFO exists before this one reaches end of file, so a
                    # reader that sees EOF can open <channel>_<epoch+1> at once.
                    ensure_fifo(self.paths.pipe_fifo(self.channel.name, epoch + 1))
                finally:
                    os.close(fd)
                fifo.unlink(missing_ok=True)  # the reader keeps its open descriptor
                logger.info("channel %r: epoch %d fed", self.channel.name, epoch)
                self.epochs_completed += 1
                epoch += 1
        except _Stopped:
            return
        except AgentError as exc:
            self.error = exc
            logger.error("channel %r: %s", self.channel.name, exc.message)
        except OSError as exc:
            self.error = PlatformError(f"channel {self.channel.name!r} pipe: {exc}")
            logger.error("%s", self.error.message)

    def _open_for_writing(self, fifo: Path) -> int | None:
        # Opening a FIFO for writing without a reader fails with ENXIO when
        # non-blocking: poll, so that stop() is honoured while nobody reads.
        while not self._stop.is_set():
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            self._stop.wait(POLL_SECONDS)
        return None

    def _feed_epoch(self, fd: int) -> None:
        for obj in self.objects:
            for chunk in self._object_chunks(obj):
                self._write_all(fd, chunk)

    def _object_chunks(self, obj: StoredObject) -> Iterator[bytes]:
        context = f"channel {self.channel.name!r} ({obj.uri})"
        try:
            stream: BinaryIO = self.store.open(obj)
            with stream:
                source: BinaryIO = stream
                if self.channel.compression == "Gzip":
                    source = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
                if self.channel.record_wrapper_type == "RecordIO":
                    # A record needs its length first; a decompressed size is known
                    # only after reading, so the object is held in memory.
                    data = source.read()
                    self.bytes_read += obj.size
                    yield from recordio_records(data)
                    return
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    yield chunk
                self.bytes_read += obj.size
        except StorageError as exc:
            raise from_storage(exc, context) from exc
        except (OSError, EOFError) as exc:
            raise PlatformError(f"{context}: reading failed: {exc}") from exc
        except Exception as exc:
            # botocore raises its own (non-OSError) types mid-stream; they are the
            # store's failure, not the user's.
            if exc.__class__.__module__.startswith(("botocore", "urllib3")):
                raise PlatformError(f"{context}: reading failed: {exc}") from exc
            raise

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                raise _Stopped
            _, writable, _ = select.select([], [fd], [], POLL_SECONDS * 4)
            if not writable:
                continue
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                continue
            except BrokenPipeError as exc:
                raise _ReaderGone from exc
            view = view[written:]
