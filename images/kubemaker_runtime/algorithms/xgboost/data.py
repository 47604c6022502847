"""Reading training data and request payloads: CSV, libsvm and Parquet.

Formats as SageMaker's XGBoost algorithm defines them:

- ``text/csv``: no header, the label in the first column (training only), optionally
  the instance weight in the second (``csv_weights=1``); an empty field is missing.
- ``text/libsvm`` (also ``text/x-libsvm``): ``label[:weight] index:value ...``; feature
  indices 0-based, or 1-based when no row uses index 0 (SageMaker's rule); the trainer
  stores which it saw in the model so serving reads requests the same way.
- ``application/x-parquet``: the label in the first column, features in the rest.

The same CSV and libsvm parsers read request bodies at serving time, where speed
matters: a CSV body of numbers is parsed by orjson (as one JSON array) before falling
back to a field-by-field parser that reports the bad field.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import scipy.sparse

from kubemaker_runtime import contract

logger = logging.getLogger(__name__)

CSV = "text/csv"
LIBSVM = "text/libsvm"
PARQUET = "application/x-parquet"
# Every spelling SageMaker's XGBoost accepts in a channel's ContentType.
CONTENT_TYPE_ALIASES = {
    "csv": CSV,
    "text/csv": CSV,
    "libsvm": LIBSVM,
    "text/libsvm": LIBSVM,
    "text/x-libsvm": LIBSVM,
    "parquet": PARQUET,
    "application/x-parquet": PARQUET,
}
# SageMaker's XGBoost reads a channel with no ContentType as libsvm.
DEFAULT_CONTENT_TYPE = LIBSVM
TRAIN_CHANNEL = "train"
VALIDATION_CHANNEL = "validation"
GZIP_MAGIC = b"\x1f\x8b"
# Attribute the trainer leaves in the model: "0" or "1", the libsvm index base it saw.
LIBSVM_INDEX_BASE_ATTR = "kubemaker_libsvm_index_base"
# XGBoost counts features in 32 bits and refuses 2**32 - 1 of them or more: the largest
# 0-based feature index it can take. Larger ones are refused while parsing, before
# they overflow the int64 index array or reach XGBoost.
MAX_FEATURE_INDEX = 2**32 - 3


class DataError(ValueError):
    """The data cannot be read as its content type says: the user's error."""


@dataclass
class Dataset:
    """Features (dense array or CSR), labels and optional weights of one channel."""

    features: np.ndarray | scipy.sparse.csr_matrix
    labels: np.ndarray
    weights: np.ndarray | None = None
    libsvm_index_base: int | None = None

    @property
    def num_rows(self) -> int:
        return int(self.features.shape[0])


def normalize_content_type(value: str | None) -> str:
    """The canonical content type for a channel's ``ContentType`` (params dropped)."""
    if not value:
        return DEFAULT_CONTENT_TYPE
    media_type = value.split(";", 1)[0].strip().lower()
    try:
        return CONTENT_TYPE_ALIASES[media_type]
    except KeyError:
        raise DataError(
            f"content type {value!r} is not supported by XGBoost: use text/csv, "
            "text/libsvm or application/x-parquet"
        ) from None


# --- CSV ---------------------------------------------------------------------------------


def parse_csv(body: bytes) -> np.ndarray:
    """Rows of numbers separated by commas (and newlines) into a 2-D float32 array."""
    if b"\r" in body:
        body = body.replace(b"\r", b"")
    body = body.strip(b"\n ")
    if not body:
        raise DataError("the CSV payload has no rows")
    try:
        if b"\n" in body:
            array = np.array(orjson.loads(b"[[" + body.replace(b"\n", b"],[") + b"]]"), np.float32)
        else:
            array = np.array(orjson.loads(b"[" + body + b"]"), np.float32).reshape(1, -1)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        # Empty fields, NaN, quoted numbers or a real error: parse field by field.
        return _parse_csv_fields(body)
    if array.ndim != 2:
        return _parse_csv_fields(body)
    return array


def _parse_csv_fields(body: bytes) -> np.ndarray:
    rows: list[list[float]] = []
    width = None
    for line_number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        values = []
        for column, field in enumerate(line.split(b","), start=1):
            text = field.strip().strip(b'"').strip()
            if not text:
                values.append(np.nan)
                continue
            try:
                values.append(float(text))
            except ValueError:
                raise DataError(
                    f"CSV line {line_number}, column {column}: {_show(text)} is not a number"
                ) from None
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise DataError(
                f"CSV line {line_number} has {len(values)} columns, the first line has {width}"
            )
        rows.append(values)
    if not rows:
        raise DataError("the CSV payload has no rows")
    return np.array(rows, dtype=np.float32)


def _show(text: bytes) -> str:
    shown = text[:40].decode("utf-8", errors="replace")
    return repr(shown + ("..." if len(text) > 40 else ""))


# --- libsvm ------------------------------------------------------------------------------


@dataclass
class LibsvmRows:
    labels: np.ndarray
    weights: np.ndarray | None
    rows: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    num_rows: int


def parse_libsvm(body: bytes, *, with_labels: bool) -> LibsvmRows:
    """Parse libsvm lines; indices are kept as written (see :func:`to_csr`)."""
    labels: list[float] = []
    weights: list[float] = []
    rows: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    row = 0
    for line_number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw.split(b"#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        start = 0
        if with_labels or b":" not in tokens[0]:
            label_token = tokens[0]
            start = 1
            label, _, weight = label_token.partition(b":")
            try:
                labels.append(float(label))
                if weight:
                    weights.append(float(weight))
            except ValueError:
                raise DataError(
                    f"libsvm line {line_number}: label {_show(label_token)} is not a number"
                ) from None
        for token in tokens[start:]:
            index, sep, value = token.partition(b":")
            try:
                if not sep:
                    raise ValueError
                column = int(index)
                values.append(float(value))
            except ValueError:
                raise DataError(
                    f"libsvm line {line_number}: {_show(token)} is not index:value"
                ) from None
            if not 0 <= column <= MAX_FEATURE_INDEX + 1:  # + 1: the index may be 1-based
                raise DataError(
                    f"libsvm line {line_number}: feature index {_show(index)} is out of "
                    f"range (0 to {MAX_FEATURE_INDEX + 1})"
                )
            columns.append(column)
            rows.append(row)
        row += 1
    if weights and len(weights) != len(labels):
        raise DataError("libsvm data gives a weight (label:weight) on some lines only")
    return LibsvmRows(
        labels=np.array(labels, dtype=np.float32),
        weights=np.array(weights, dtype=np.float32) if weights else None,
        rows=np.array(rows, dtype=np.int64),
        columns=np.array(columns, dtype=np.int64),
        values=np.array(values, dtype=np.float32),
        num_rows=row,
    )


def detect_index_base(columns: np.ndarray) -> int:
    """1 when no entry uses index 0 (SageMaker's rule), else 0."""
    if columns.size and int(columns.min()) >= 1:
        return 1
    return 0


def to_csr(
    parsed: LibsvmRows, index_base: int, num_features: int | None = None
) -> scipy.sparse.csr_matrix:
    columns = parsed.columns - index_base if index_base else parsed.columns
    if columns.size and int(columns.min()) < 0:
        raise DataError("libsvm data uses feature index 0 but was read as 1-based")
    width = int(columns.max()) + 1 if columns.size else 0
    if num_features is not None:
        if width > num_features:
            raise DataError(
                f"libsvm data uses feature index {width - 1 + index_base} "
                f"but the model has {num_features} features"
            )
        width = num_features
    return scipy.sparse.csr_matrix(
        (parsed.values, (parsed.rows, columns)), shape=(parsed.num_rows, width)
    )


# --- training channels -------------------------------------------------------------------


def channel_files(directory: Path) -> list[Path]:
    """Data files of a File-mode channel, in a stable order (dotfiles skipped)."""
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def read_channel(
    paths: contract.Paths,
    channel: str,
    channel_config: Mapping[str, str],
    *,
    csv_weights: bool = False,
) -> Dataset | None:
    """Read one channel (File or Pipe mode) as its ContentType says; None when absent."""
    content_type = normalize_content_type(channel_config.get("ContentType"))
    if channel_config.get("TrainingInputMode") == "Pipe":
        blobs = list(_read_pipe(paths, channel))
    else:
        blobs = [p.read_bytes() for p in channel_files(paths.channel_dir(channel))]
    blobs = [_decompress(b) for b in blobs if b]
    if not blobs:
        return None
    try:
        return read_blobs(blobs, content_type, csv_weights=csv_weights)
    except DataError as error:
        raise DataError(f"channel {channel!r} ({content_type}): {error}") from None


def read_blobs(blobs: Iterable[bytes], content_type: str, *, csv_weights: bool = False) -> Dataset:
    blobs = list(blobs)
    if content_type == CSV:
        return _csv_dataset(blobs, csv_weights)
    if content_type == LIBSVM:
        return _libsvm_dataset(blobs)
    return _parquet_dataset(blobs)


def _read_pipe(paths: contract.Paths, channel: str) -> Iterable[bytes]:
    # XGBoost needs the whole data set in memory: epoch 0's FIFO is read once, to EOF.
    fifo = paths.pipe_fifo(channel, 0)
    if fifo.exists():
        with fifo.open("rb") as stream:
            yield stream.read()


def _decompress(blob: bytes) -> bytes:
    if blob[:2] == GZIP_MAGIC:
        return gzip.decompress(blob)
    return blob


def _csv_dataset(blobs: list[bytes], csv_weights: bool) -> Dataset:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    arrays = []
    for blob in blobs:
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(blob),
                read_options=pa_csv.ReadOptions(autogenerate_column_names=True),
                convert_options=pa_csv.ConvertOptions(strings_can_be_null=True),
            )
        except pa.ArrowInvalid as error:
            raise DataError(f"not a CSV of numbers without header: {error}") from None
        arrays.append(_table_to_array(table))
    widths = {a.shape[1] for a in arrays}
    if len(widths) > 1:
        raise DataError(f"the CSV files have different numbers of columns: {sorted(widths)}")
    data = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    first_feature = 2 if csv_weights else 1
    if data.shape[1] <= first_feature:
        raise DataError(
            f"a CSV row needs the label{' and the weight' if csv_weights else ''} "
            f"then at least one feature; found {data.shape[1]} column(s)"
        )
    labels = data[:, 0]
    if np.isnan(labels).any():
        raise DataError(f"row {int(np.argmax(np.isnan(labels))) + 1} has no label")
    return Dataset(
        features=np.ascontiguousarray(data[:, first_feature:]),
        labels=np.ascontiguousarray(labels),
        weights=np.ascontiguousarray(data[:, 1]) if csv_weights else None,
    )


def _table_to_array(table: object) -> np.ndarray:
    import pyarrow as pa

    assert isinstance(table, pa.Table)
    columns = []
    for index, column in enumerate(table.columns):
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            if pa.types.is_null(column.type):
                columns.append(np.full(table.num_rows, np.nan, dtype=np.float32))
                continue
            raise DataError(f"column {index + 1} holds {column.type} values, not numbers")
        columns.append(column.to_numpy(zero_copy_only=False).astype(np.float32))
    return np.column_stack(columns)


def _libsvm_dataset(blobs: list[bytes]) -> Dataset:
    parsed = [parse_libsvm(blob, with_labels=True) for blob in blobs]
    merged = LibsvmRows(
        labels=np.concatenate([p.labels for p in parsed]),
        weights=(
            np.concatenate([p.weights for p in parsed if p.weights is not None])
            if any(p.weights is not None for p in parsed)
            else None
        ),
        rows=np.concatenate(
            [p.rows + offset for p, offset in zip(parsed, _offsets(parsed), strict=True)]
        ),
        columns=np.concatenate([p.columns for p in parsed]),
        values=np.concatenate([p.values for p in parsed]),
        num_rows=sum(p.num_rows for p in parsed),
    )
    if merged.weights is not None and merged.weights.size != merged.labels.size:
        raise DataError("some libsvm files give weights (label:weight) and some do not")
    base = detect_index_base(merged.columns)
    return Dataset(
        features=to_csr(merged, base),
        labels=merged.labels,
        weights=merged.weights,
        libsvm_index_base=base,
    )


def _offsets(parsed: list[LibsvmRows]) -> list[int]:
    offsets, total = [], 0
    for p in parsed:
        offsets.append(total)
        total += p.num_rows
    return offsets


def _parquet_dataset(blobs: list[bytes]) -> Dataset:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = []
    for blob in blobs:
        try:
            table = pq.read_table(io.BytesIO(blob))
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"not a Parquet file: {error}") from None
        arrays.append(_table_to_array(table))
    data = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    if data.shape[1] < 2:
        raise DataError("a Parquet row needs the label then at least one feature")
    return Dataset(
        features=np.ascontiguousarray(data[:, 1:]), labels=np.ascontiguousarray(data[:, 0])
    )
