"""Records, batches and shards: the pure parts of SageMaker's batch transform.

An input object arrives as chunks of any size; :func:`iter_records` splits it by the
job's ``splitType`` without holding more than one record (and one chunk) in memory,
except ``None``, where the object is the record:

- ``Line``: each line without its terminator (``\\n`` or ``\\r\\n``); a last line
  without a newline is a record too. Departure: fully empty lines are skipped (a blank
  line is no record to predict on, and would cost a request or break a CSV batch);
  a line of spaces is kept.
- ``RecordIO``: MXNet's (dmlc) framing: magic ``0xced7230a``, a uint32 whose upper 3
  bits are a continuation flag and lower 29 the length, the data padded to 4 bytes.
  Each record is yielded framed (header, data and padding), as SageMaker sends RecordIO
  records to the container. A record MXNet wrote in parts (flags 1, 2..., 3) is yielded
  as one record: its parts' frames together, which MXNet's reader reads back as one.
- ``TFRecord``: uint64 length, its masked CRC32C, the data, the data's masked CRC32C;
  yielded framed. Both CRCs are checked (``google-crc32c``, in C): a length whose CRC
  does not match is not a TFRecord file, and fails at once instead of waiting for a
  record of a garbage length.
- ``None``: the whole object is one record (an empty object, none).

Data that does not fit its split type raises :class:`RecordError` naming the byte
offset of the record at fault.

:func:`batches` groups records into request bodies (``batchStrategy``,
``maxPayloadInMB`` given in bytes, 0 for no limit as in SageMaker). Lines are joined
with ``\\n``, without a trailing newline, so that a batch of one record is the record
itself whatever the strategy, and a record fits exactly when its size is within the
limit (the XGBoost server and JSON Lines readers accept several lines either way);
RecordIO and TFRecord records are framed, so they are concatenated.

:func:`shard` splits the input objects between a job's instances by bytes (SageMaker
splits by object, ``ShardedByS3Key``, without balancing).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import google_crc32c

SplitType = Literal["None", "Line", "RecordIO", "TFRecord"]
BatchStrategy = Literal["SingleRecord", "MultiRecord"]


class RecordError(ValueError):
    """The data does not fit its split type (the message names the byte offset)."""


class RecordTooLarge(RecordError):
    """One record is larger than the payload limit.

    ``position`` is 0-based like :attr:`Batch.first`; the message counts from 1.
    """

    def __init__(self, position: int, size: int, limit: int) -> None:
        super().__init__(
            f"record {position + 1} is {size} bytes, over the payload limit of {limit} "
            "bytes (maxPayloadInMB)"
        )
        self.position = position
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Batch:
    """One request body: ``count`` records from position ``first`` (0-based) on."""

    first: int
    count: int
    body: bytes


# --- splitting ---------------------------------------------------------------------------


def iter_records(chunks: Iterable[bytes], split_type: SplitType) -> Iterator[bytes]:
    """The records of one object given as ``chunks`` (see the module's docstring)."""
    try:
        split = _SPLITTERS[split_type]
    except KeyError:
        raise ValueError(f"unknown split type {split_type!r}") from None
    return split(chunks)


def _whole(chunks: Iterable[bytes]) -> Iterator[bytes]:
    data = b"".join(chunks)
    if data:
        yield data


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    partial: list[bytes] = []  # the pieces of the line not yet ended
    for chunk in chunks:
        pieces = chunk.split(b"\n")
        if len(pieces) > 1:
            partial.append(pieces[0])
            pieces[0] = b"".join(partial)
            partial = []
            # Inline rather than a helper per line: this loop runs once per record.
            for line in pieces[:-1]:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line:
                    yield line
        partial.append(pieces[-1])
    last = b"".join(partial).removesuffix(b"\r")
    if last:
        yield last


class _Stream:
    """The bytes of chunks read forward: holds what is asked ahead, plus one chunk."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._start = 0  # the read position in _buffer
        self.offset = 0  # the object's byte offset of the read position

    def ahead(self, size: int) -> int:
        """Buffers ``size`` bytes ahead; how many there are (fewer only at the end)."""
        while len(self._buffer) - self._start < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            del self._buffer[: self._start]
            self._start = 0
            self._buffer += chunk
        return min(size, len(self._buffer) - self._start)

    def peek(self, size: int) -> bytes:
        return bytes(self._buffer[self._start : self._start + size])

    def take(self, size: int) -> bytes:
        data = self.peek(size)
        self._start += size
        self.offset += size
        return data

    def require(self, size: int, kind: str) -> None:
        have = self.ahead(size)
        if have < size:
            raise RecordError(f"truncated {kind} at byte {self.offset}: {have} of {size} bytes")


_RECORDIO_MAGIC = 0xCED7230A
_RECORDIO_HEADER = struct.Struct("<II")
_RECORDIO_LENGTH = (1 << 29) - 1
_WHOLE, _FIRST, _MIDDLE, _LAST = range(4)  # RecordIO's continuation flags


def _recordio(chunks: Iterable[bytes]) -> Iterator[bytes]:
    stream = _Stream(chunks)
    parts: list[bytes] = []  # the frames of a multi-part record so far
    started = 0  # the byte offset of its first part
    while stream.ahead(1):
        at = stream.offset
        flag, frame = _recordio_frame(stream)
        if (flag in (_MIDDLE, _LAST)) != bool(parts):
            raise RecordError(
                f"not RecordIO: part flag {flag} at byte {at} "
                + ("inside a multi-part record" if parts else "without a first part")
            )
        if flag == _WHOLE:
            yield frame
        elif flag == _FIRST:
            parts, started = [frame], at
        else:
            parts.append(frame)
        if flag == _LAST:
            yield b"".join(parts)
            parts = []
    if parts:
        raise RecordError(
            f"truncated RecordIO at byte {started}: a multi-part record without its last part"
        )


def _recordio_frame(stream: _Stream) -> tuple[int, bytes]:
    """The next frame (header, data, padding) and its continuation flag."""
    stream.require(_RECORDIO_HEADER.size, "RecordIO")
    magic, lrecord = _RECORDIO_HEADER.unpack(stream.peek(_RECORDIO_HEADER.size))
    if magic != _RECORDIO_MAGIC:
        raise RecordError(
            f"not RecordIO: bad magic 0x{magic:08x} at byte {stream.offset} "
            f"(RecordIO's is 0x{_RECORDIO_MAGIC:08x})"
        )
    flag, length = lrecord >> 29, lrecord & _RECORDIO_LENGTH
    if flag > _LAST:
        raise RecordError(f"not RecordIO: part flag {flag} at byte {stream.offset}")
    size = _RECORDIO_HEADER.size + (length + 3) // 4 * 4
    stream.require(size, "RecordIO")
    return flag, stream.take(size)


_TFRECORD_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")


def _tfrecords(chunks: Iterable[bytes]) -> Iterator[bytes]:
    stream = _Stream(chunks)
    while stream.ahead(1):
        at = stream.offset
        stream.require(_TFRECORD_HEADER.size, "TFRecord")
        header = stream.peek(_TFRECORD_HEADER.size)
        length, length_crc = _TFRECORD_HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise RecordError(f"not TFRecord: bad length CRC at byte {at}")
        stream.require(_TFRECORD_HEADER.size + length + _CRC.size, "TFRecord")
        frame = stream.take(_TFRECORD_HEADER.size + length + _CRC.size)
        (data_crc,) = _CRC.unpack_from(frame, len(frame) - _CRC.size)
        if masked_crc32c(frame[_TFRECORD_HEADER.size : -_CRC.size]) != data_crc:
            raise RecordError(f"corrupt TFRecord at byte {at}: bad data CRC")
        yield frame


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC32C, rotated right by 15 bits, plus a constant."""
    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_SPLITTERS: dict[str, Callable[[Iterable[bytes]], Iterator[bytes]]] = {
    "None": _whole,
    "Line": _lines,
    "RecordIO": _recordio,
    "TFRecord": _tfrecords,
}


# --- batching ----------------------------------------------------------------------------


def batches(
    records: Iterable[bytes],
    *,
    strategy: BatchStrategy,
    max_payload: int,
    split_type: SplitType,
) -> Iterator[Batch]:
    """Request bodies of consecutive records, each at most ``max_payload`` bytes (0: any).

    ``SingleRecord``: one record a batch. ``MultiRecord``: as many records as fit, lines
    joined with ``\\n`` (no trailing newline), framed records concatenated. A record
    larger than ``max_payload`` raises :class:`RecordTooLarge`.
    """
    if strategy not in ("SingleRecord", "MultiRecord"):
        raise ValueError(f"unknown batch strategy {strategy!r}")
    if max_payload < 0:
        raise ValueError(f"max_payload must be 0 (no limit) or more, not {max_payload}")
    separator = b"\n" if split_type == "Line" else b""
    pending: list[bytes] = []
    first = size = 0
    for position, record in enumerate(records):
        if max_payload and len(record) > max_payload:
            raise RecordTooLarge(position, len(record), max_payload)
        grown = size + len(separator) + len(record) if pending else len(record)
        if pending and (strategy == "SingleRecord" or (max_payload and grown > max_payload)):
            yield Batch(first, len(pending), separator.join(pending))
            pending, grown = [], len(record)
        if not pending:
            first = position
        pending.append(record)
        size = grown
    if pending:
        yield Batch(first, len(pending), separator.join(pending))


# --- sharding ----------------------------------------------------------------------------


def shard(objects: Sequence[tuple[str, int]], index: int, count: int) -> list[str]:
    """The keys instance ``index`` of ``count`` transforms, in key order.

    ``objects`` are (key, size in bytes). Every key goes to exactly one instance, the
    same on every instance: largest first (ties by key) to the instance with the fewest
    bytes so far, ties to the one with the fewest objects, then the lowest number.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"instance index {index} out of range for {count} instances")
    keys = [key for key, _ in objects]
    if len(set(keys)) != len(keys):
        raise ValueError("the objects to shard repeat a key")
    if any(size < 0 for _, size in objects):
        raise ValueError("an object to shard has a negative size")
    loads = [(0, 0, instance) for instance in range(count)]  # (bytes, objects, instance)
    mine: list[str] = []
    for key, size in sorted(objects, key=lambda item: (-item[1], item[0])):
        taken, number, instance = heapq.heappop(loads)
        if instance == index:
            mine.append(key)
        heapq.heappush(loads, (taken + size, number + 1, instance))
    return sorted(mine)
