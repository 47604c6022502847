"""kubemaker_runtime.transform.records: split types, batching, sharding.

RecordIO and TFRecord objects are built here with their real framing: a RecordIO writer
that splits a record where its data holds the magic, as dmlc's writer does, and a
TFRecord writer whose CRC32C is a table-driven one of its own (checked against the
standard check value), so neither depends on the code under test.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest

from kubemaker_runtime.transform import records
from kubemaker_runtime.transform.records import Batch, RecordError, RecordTooLarge

CHUNK_SIZES = (1, 2, 3, 7, 64, None)  # None: the whole object as one chunk


def chunked(data: bytes, size: int | None) -> list[bytes]:
    if size is None:
        return [data]
    return [data[start : start + size] for start in range(0, len(data), size)]


def split(data: bytes, split_type: records.SplitType, size: int | None = None) -> list[bytes]:
    return list(records.iter_records(chunked(data, size), split_type))


# --- RecordIO, as dmlc-core writes and reads it -------------------------------------------

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)


def recordio_frame(data: bytes, flag: int = 0) -> bytes:
    padding = b"\0" * (-len(data) % 4)
    return struct.pack("<II", MAGIC, flag << 29 | len(data)) + data + padding


def recordio_write(data: bytes) -> bytes:
    """dmlc's RecordIOWriter: the data is cut at each 4-aligned magic, which it drops."""
    cuts = [at for at in range(0, len(data) - 3, 4) if data[at : at + 4] == MAGIC_BYTES]
    if not cuts:
        return recordio_frame(data)
    starts = [0, *(cut + 4 for cut in cuts)]
    ends = [*cuts, len(data)]
    parts = [data[start:end] for start, end in zip(starts, ends, strict=True)]
    flags = [1] + [2] * (len(parts) - 2) + [3]
    return b"".join(recordio_frame(part, flag) for part, flag in zip(parts, flags, strict=True))


def recordio_read(record: bytes) -> bytes:
    """dmlc's RecordIOReader: one record's parts joined with the magic they were cut at."""
    parts, at = [], 0
    while at < len(record):
        magic, lrecord = struct.unpack_from("<II", record, at)
        assert magic == MAGIC
        length = lrecord & ((1 << 29) - 1)
        parts.append(record[at + 8 : at + 8 + length])
        at += 8 + length + (-length % 4)
    return MAGIC_BYTES.join(parts)


# --- TFRecord ------------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked(length)) + data + struct.pack("<I", masked(data))


def test_crc32c_of_the_test_writer_and_of_the_module() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # CRC-32C's standard check value
    for data in (b"", b"x", b"123456789", bytes(range(256)) * 3):
        assert records.masked_crc32c(data) == masked(data)


# --- splitting -------------------------------------------------------------------------------


LINES = b'1,2,3\n4,"a,b",6\r\n\n  \n{"k": "\xc3\xa9"}\r\nlast'


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_lines_over_every_chunking(size: int | None) -> None:
    # terminators dropped (\n and \r\n), the empty line skipped, the spaces kept, the
    # last line without a newline a record
    assert split(LINES, "Line", size) == [
        b"1,2,3",
        b'4,"a,b",6',
        b"  ",
        b'{"k": "\xc3\xa9"}',
        b"last",
    ]


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", []),
        (b"\n\n\r\n", []),
        (b"a\n", [b"a"]),
        (b"a\r\n", [b"a"]),
        (b"a\rb\n", [b"a\rb"]),  # a lone \r is data
        (b"a\r", [b"a"]),
    ],
)
def test_line_edges(data: bytes, lines: list[bytes]) -> None:
    for size in CHUNK_SIZES:
        assert split(data, "Line", size) == lines


RECORDIO_DATA = [b"", b"a", b"ab", b"abc", b"abcd", b"x" * 37, bytes(range(256))]


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_recordio_over_every_chunking(size: int | None) -> None:
    frames = [recordio_write(data) for data in RECORDIO_DATA]
    found = split(b"".join(frames), "RecordIO", size)
    assert found == frames  # whole: header, data, padding
    assert all(len(frame) % 4 == 0 for frame in found)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_recordio_multipart_record_is_one_record(size: int | None) -> None:
    # dmlc's writer cuts a record at each aligned magic: 3 parts (flags 1, 2, 3) here
    multi = b"head" + MAGIC_BYTES + b"middle!!" + MAGIC_BYTES + b"tail."
    written = recordio_write(multi)
    frames_at = (0, 12, 28)  # 8 + "head", 8 + "middle!!", 8 + "tail." padded to 8
    assert [struct.unpack_from("<I", written, at + 4)[0] >> 29 for at in frames_at] == [1, 2, 3]
    data = recordio_write(b"before") + written + recordio_write(b"after")
    found = split(data, "RecordIO", size)
    assert [recordio_read(record) for record in found] == [b"before", multi, b"after"]
    assert found[1] == written


def test_recordio_bad_magic_names_the_offset() -> None:
    first = recordio_write(b"fine")
    data = first + b"\x01\x02\x03\x04" + struct.pack("<I", 4) + b"abcd"
    with pytest.raises(
        RecordError, match=rf"not RecordIO: bad magic 0x04030201 at byte {len(first)}"
    ):
        split(data, "RecordIO", 3)
    with pytest.raises(RecordError, match=r"bad magic .* at byte 0"):
        split(b"1,2,3\n4,5,6\n", "RecordIO")


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_recordio_truncated_names_the_offset(size: int | None) -> None:
    first = recordio_write(b"fine")
    second = recordio_write(b"x" * 20)  # 8 + 20 bytes
    with pytest.raises(RecordError, match=rf"truncated RecordIO at byte {len(first)}: 18 of 28"):
        split(first + second[:18], "RecordIO", size)
    with pytest.raises(RecordError, match=rf"truncated RecordIO at byte {len(first)}: 5 of 8"):
        split(first + second[:5], "RecordIO", size)


def test_recordio_parts_out_of_order() -> None:
    whole = recordio_frame(b"whole")  # 16 bytes
    one = recordio_frame(b"one", 1)  # 12 bytes
    with pytest.raises(RecordError, match=r"part flag 2 at byte 16 without a first part"):
        split(whole + recordio_frame(b"mid", 2), "RecordIO")
    with pytest.raises(RecordError, match=r"part flag 0 at byte 12 inside a multi-part"):
        split(one + whole, "RecordIO")
    with pytest.raises(RecordError, match=r"truncated RecordIO at byte 16: .* without its last"):
        split(whole + one + recordio_frame(b"two", 2), "RecordIO")
    with pytest.raises(RecordError, match=r"part flag 5 at byte 0"):
        split(recordio_frame(b"odd", 5), "RecordIO")


TF_DATA = [b"", b"a", b"example" * 10, bytes(range(256))]


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_tfrecord_over_every_chunking(size: int | None) -> None:
    frames = [tfrecord(data) for data in TF_DATA]
    assert split(b"".join(frames), "TFRecord", size) == frames


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_tfrecord_truncated_names_the_offset(size: int | None) -> None:
    first = tfrecord(b"fine")
    second = tfrecord(b"x" * 4)  # 12 + 4 + 4 = 20 bytes
    with pytest.raises(RecordError, match=rf"truncated TFRecord at byte {len(first)}: 10 of 12"):
        split(first + second[:10], "TFRecord", size)
    with pytest.raises(RecordError, match=rf"truncated TFRecord at byte {len(first)}: 18 of 20"):
        split(first + second[:18], "TFRecord", size)


def test_tfrecord_checks_its_crcs() -> None:
    first = tfrecord(b"fine")
    with pytest.raises(RecordError, match=rf"not TFRecord: bad length CRC at byte {len(first)}"):
        split(first + b"1,2,3,4,5,6,7,8,9\n" * 3, "TFRecord")
    corrupt = bytearray(tfrecord(b"payload"))
    corrupt[14] ^= 0x01
    with pytest.raises(RecordError, match=rf"corrupt TFRecord at byte {len(first)}: bad data"):
        split(first + bytes(corrupt), "TFRecord")


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_none_is_the_whole_object(size: int | None) -> None:
    assert split(LINES, "None", size) == [LINES]
    assert split(b"", "None", size) == []


def test_splitting_streams() -> None:
    """The first record comes out before the rest of the object is read."""
    consumed = 0

    def chunks(data: bytes) -> Iterator[bytes]:
        nonlocal consumed
        for chunk in chunked(data, 16):
            consumed += 1
            yield chunk

    objects: dict[records.SplitType, bytes] = {
        "Line": b"".join(b"%d,%d\n" % (n, n) for n in range(1000)),
        "RecordIO": b"".join(recordio_write(b"%d" % n) for n in range(1000)),
        "TFRecord": b"".join(tfrecord(b"%d" % n) for n in range(1000)),
    }
    for split_type, data in objects.items():
        consumed = 0
        found = records.iter_records(chunks(data), split_type)
        next(found)
        assert consumed <= 2, split_type
        assert len(list(found)) == 999
        assert consumed == len(chunked(data, 16))


def test_empty_chunks_are_nothing() -> None:
    frames = [recordio_write(b"ab"), recordio_write(b"cde")]
    data = b"".join(frames)
    chunks = [b"", data[:5], b"", b"", data[5:], b""]
    assert list(records.iter_records(chunks, "RecordIO")) == frames
    assert list(records.iter_records([b"", b"a\n", b"", b"b"], "Line")) == [b"a", b"b"]


def test_unknown_split_type() -> None:
    with pytest.raises(ValueError, match="unknown split type 'Lines'"):
        records.iter_records([b"a"], "Lines")  # type: ignore[arg-type]


# --- batching --------------------------------------------------------------------------------


def batched(
    found: list[bytes],
    strategy: records.BatchStrategy,
    max_payload: int,
    split_type: records.SplitType = "Line",
) -> list[Batch]:
    return list(
        records.batches(found, strategy=strategy, max_payload=max_payload, split_type=split_type)
    )


ROWS = [b"aaa", b"bbb", b"ccc", b"ddd", b"eee"]


def test_single_record() -> None:
    assert batched(ROWS, "SingleRecord", 3) == [
        Batch(position, 1, row) for position, row in enumerate(ROWS)
    ]


def test_multi_record_lines_at_the_exact_limit() -> None:
    # "aaa\nbbb" is 7 bytes: exactly the limit fits; a limit one byte smaller does not
    assert batched(ROWS, "MultiRecord", 7) == [
        Batch(0, 2, b"aaa\nbbb"),
        Batch(2, 2, b"ccc\nddd"),
        Batch(4, 1, b"eee"),
    ]
    assert batched(ROWS, "MultiRecord", 6) == batched(ROWS, "SingleRecord", 6)
    assert batched(ROWS, "MultiRecord", 11) == [
        Batch(0, 3, b"aaa\nbbb\nccc"),
        Batch(3, 2, b"ddd\neee"),
    ]


def test_multi_record_framed_records_are_concatenated() -> None:
    frames = [recordio_write(b"x" * n) for n in (4, 8, 4, 12)]  # 12, 16, 12, 20 bytes
    assert batched(frames, "MultiRecord", 28, "RecordIO") == [
        Batch(0, 2, frames[0] + frames[1]),
        Batch(2, 1, frames[2]),  # + 20 would be 32
        Batch(3, 1, frames[3]),
    ]
    assert batched(frames, "MultiRecord", 29, "RecordIO")[0].count == 2
    tf = [tfrecord(b"y" * 4)] * 3  # 20 bytes each
    assert [b.count for b in batched(tf, "MultiRecord", 40, "TFRecord")] == [2, 1]
    assert [b.count for b in batched(tf, "MultiRecord", 39, "TFRecord")] == [1, 1, 1]


def test_no_limit() -> None:
    assert batched(ROWS, "MultiRecord", 0) == [Batch(0, 5, b"\n".join(ROWS))]
    assert batched([b"x" * 10_000], "SingleRecord", 0) == [Batch(0, 1, b"x" * 10_000)]
    assert batched([], "MultiRecord", 0) == []


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_record_too_large_names_its_position(strategy: records.BatchStrategy) -> None:
    rows = [b"%03d" % n for n in range(16)] + [b"x" * 101, b"end"]
    with pytest.raises(RecordTooLarge, match=r"record 17 is 101 bytes, over .* of 100 bytes") as e:
        batched(rows, strategy, 100)
    assert (e.value.position, e.value.size, e.value.limit) == (16, 101, 100)
    assert isinstance(e.value, RecordError)
    assert batched([b"x" * 100], strategy, 100) == [Batch(0, 1, b"x" * 100)]  # exactly fits


def test_one_record_batch_is_the_record_whatever_the_strategy() -> None:
    row = [b"1.5,2,3"]
    assert batched(row, "MultiRecord", 100) == batched(row, "SingleRecord", 100)


def test_xgboost_server_reads_both_bodies() -> None:
    from kubemaker_runtime.algorithms.xgboost import data

    rows = split(b"1,2,3\n4,5,6\n7,8,9\n", "Line")
    multi = batched(rows, "MultiRecord", 0)[0].body
    assert data.parse_csv(multi).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    single = batched(rows, "SingleRecord", 0)[0].body
    assert data.parse_csv(single).tolist() == [[1, 2, 3]]


def test_batching_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_payload"):
        batched(ROWS, "MultiRecord", -1)
    with pytest.raises(ValueError, match="unknown batch strategy"):
        batched(ROWS, "Multi", 10)  # type: ignore[arg-type]


# --- sharding --------------------------------------------------------------------------------


OBJECTS = [("a.csv", 100), ("b.csv", 60), ("c.csv", 50), ("d.csv", 40), ("e.csv", 10)]


def shards(objects: list[tuple[str, int]], count: int) -> list[list[str]]:
    return [records.shard(objects, index, count) for index in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_every_key_exactly_once(count: int) -> None:
    rng = random.Random(count)
    objects = [(f"part-{n:04d}", rng.randrange(0, 10_000)) for n in range(50)]
    parts = shards(objects, count)
    keys = [key for part in parts for key in part]
    assert sorted(keys) == sorted(key for key, _ in objects)
    assert len(keys) == len(set(keys))
    assert all(part == sorted(part) for part in parts)


def test_balanced_by_bytes() -> None:
    # largest first to the least loaded: a(100) | b(60) c(50) -> a d(40) | b c e(10)
    assert shards(OBJECTS, 2) == [["a.csv", "d.csv"], ["b.csv", "c.csv", "e.csv"]]
    rng = random.Random(7)
    objects = [(f"k{n}", rng.randrange(1, 1000)) for n in range(200)]
    sizes = dict(objects)
    loads = [sum(sizes[key] for key in part) for part in shards(objects, 4)]
    assert max(loads) - min(loads) <= max(sizes.values())


def test_ties_and_empty_objects() -> None:
    # equal sizes: by key to instances 0, 1, 2, 0, ...; empty objects spread by count
    same = [(f"k{n}", 10) for n in range(6)]
    assert shards(same, 3) == [["k0", "k3"], ["k1", "k4"], ["k2", "k5"]]
    empty = [(f"e{n}", 0) for n in range(4)]
    assert [len(part) for part in shards(empty, 2)] == [2, 2]
    assert shards([], 3) == [[], [], []]


def test_deterministic_whatever_the_listing_order() -> None:
    shuffled = OBJECTS[:]
    random.Random(1).shuffle(shuffled)
    assert shards(shuffled, 3) == shards(OBJECTS, 3)


def test_shard_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="index 2 out of range for 2"):
        records.shard(OBJECTS, 2, 2)
    with pytest.raises(ValueError, match="repeat a key"):
        records.shard([("a", 1), ("a", 2)], 0, 1)
    with pytest.raises(ValueError, match="negative size"):
        records.shard([("a", -1)], 0, 1)
