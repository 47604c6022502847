"""kubemaker.sdk.serializers and .deserializers: SageMaker's outputs, round trips, errors."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import numpy as np
import pytest

from kubemaker.sdk import deserializers, serializers
from kubemaker.sdk.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    JSONDeserializer,
    JSONLinesDeserializer,
    NumpyDeserializer,
    PandasDeserializer,
    StreamDeserializer,
    StringDeserializer,
)
from kubemaker.sdk.serializers import (
    CSVSerializer,
    IdentitySerializer,
    JSONLinesSerializer,
    JSONSerializer,
    LibSVMSerializer,
    NumpySerializer,
)


class Body(io.BytesIO):
    """A response body that records whether it was closed after being read."""

    def __init__(self, data: bytes | str) -> None:
        super().__init__(data.encode() if isinstance(data, str) else data)
        self.was_closed = False

    def close(self) -> None:
        self.was_closed = True
        super().close()


# --- serializers --------------------------------------------------------------------


def test_content_types_default_to_sagemakers_and_can_be_set() -> None:
    assert CSVSerializer().CONTENT_TYPE == "text/csv"
    assert NumpySerializer().CONTENT_TYPE == "application/x-npy"
    assert JSONSerializer().CONTENT_TYPE == "application/json"
    assert IdentitySerializer().CONTENT_TYPE == "application/octet-stream"
    assert JSONLinesSerializer().CONTENT_TYPE == "application/jsonlines"
    assert LibSVMSerializer().CONTENT_TYPE == "text/libsvm"
    assert CSVSerializer(content_type="text/plain").CONTENT_TYPE == "text/plain"
    assert IdentitySerializer(content_type="image/png").CONTENT_TYPE == "image/png"


def test_content_type_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="content_type must be a string"):
        JSONSerializer(content_type=3)  # type: ignore[arg-type]


def test_base_classes_are_abstract() -> None:
    with pytest.raises(TypeError):
        serializers.BaseSerializer()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        serializers.SimpleBaseSerializer()  # type: ignore[abstract]

    class Upper(serializers.SimpleBaseSerializer):
        def serialize(self, data: Any) -> Any:
            return str(data).upper()

    upper = Upper(content_type="text/plain")
    assert upper.serialize("a") == "A"
    assert upper.CONTENT_TYPE == "text/plain"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2, 3], "1,2,3"),
        ([[1, 2, 3], [3, 4, 5]], "1,2,3\n3,4,5"),
        ([[1.5, "a"], [2, "b,c"]], '1.5,a\n2,"b,c"'),
        (["1,2,3", "4,5,6"], "1,2,3\n4,5,6"),
        ("1,2,3", "1,2,3"),
        (b"1,2\n3,4", b"1,2\n3,4"),
        (np.array([1, 2, 3]), "1,2,3"),
        (np.array([[1, 2, 3], [3, 4, 5]]), "1,2,3\n3,4,5"),
        (np.array([0.5, 1.25]), "0.5,1.25"),
        (np.array(7), "7"),
        (np.ones((2, 1, 2)), "1.0,1.0\n1.0,1.0"),
        ((1, 2), "1,2"),
    ],
)
def test_csv_serializer_matches_sagemaker(data: Any, expected: str | bytes) -> None:
    assert CSVSerializer().serialize(data) == expected


def test_csv_serializer_reads_a_file_like_object() -> None:
    assert CSVSerializer().serialize(io.StringIO("1,2\n3,4\n")) == "1,2\n3,4\n"


@pytest.mark.parametrize("data", [[], np.array([]), np.array([[], []])])
def test_csv_serializer_refuses_empty_arrays(data: Any) -> None:
    with pytest.raises(ValueError, match="empty array"):
        CSVSerializer().serialize(data)


@pytest.mark.parametrize(
    ("data", "type_name"), [(5, "int"), (None, "NoneType"), ({"a": 1}, "dict"), (3.5, "float")]
)
def test_csv_serializer_names_the_type_it_cannot_serialize(data: Any, type_name: str) -> None:
    with pytest.raises(ValueError, match=f"CSVSerializer cannot serialize {type_name}") as e:
        CSVSerializer().serialize(data)
    assert "nested lists" in str(e.value)


def test_csv_serializer_writes_a_dataframe_without_header_or_index() -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"a": [1, 2], "b": [3, 4]})
    assert CSVSerializer().serialize(frame) == "1,3\n2,4\n"


def test_csv_rows_read_back_with_the_csv_deserializer() -> None:
    rows = [[1, "x y", 2.5], [3, "with,comma", -1], [4, 'say "hi"', 0]]
    body = CSVSerializer().serialize(rows)
    assert CSVDeserializer().deserialize(Body(body), "text/csv") == [
        [str(value) for value in row] for row in rows
    ]


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.5, -1.25, 3e10]),
        np.arange(12, dtype=np.float64).reshape(3, 4) / 7,
        np.array([[1.5, 2.5]], dtype=np.float32),
    ],
)
def test_numpy_round_trip(array: np.ndarray[Any, Any]) -> None:
    body = NumpySerializer().serialize(array)
    assert isinstance(body, bytes)
    assert body.startswith(b"\x93NUMPY")
    stream = Body(body)
    result = NumpyDeserializer().deserialize(stream, "application/x-npy")
    assert result.dtype == array.dtype
    assert result.shape == array.shape
    np.testing.assert_array_equal(result, array)
    assert stream.was_closed


def test_numpy_serializer_converts_lists_and_applies_dtype() -> None:
    result = np.load(io.BytesIO(NumpySerializer().serialize([[1, 2], [3, 4]])))
    np.testing.assert_array_equal(result, [[1, 2], [3, 4]])
    half = np.load(io.BytesIO(NumpySerializer(dtype="float16").serialize([1, 2, 3])))
    assert half.dtype == np.float16
    from_array = NumpySerializer(dtype="float32").serialize(np.array([1.0, 2.0]))
    assert np.load(io.BytesIO(from_array)).dtype == np.float32
    strings = np.array(["one", "two"])
    np.testing.assert_array_equal(
        np.load(io.BytesIO(NumpySerializer().serialize(strings))), strings
    )


def test_numpy_serializer_passes_npy_files_through() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ones((2, 3)))
    buffer.seek(0)
    body = NumpySerializer().serialize(buffer)
    np.testing.assert_array_equal(np.load(io.BytesIO(body)), np.ones((2, 3)))


@pytest.mark.parametrize("data", [[], np.array([]), np.array([[], []])])
def test_numpy_serializer_refuses_empty_arrays(data: Any) -> None:
    with pytest.raises(ValueError, match="NumpySerializer cannot serialize an empty array"):
        NumpySerializer().serialize(data)


def test_numpy_serializer_refuses_what_would_be_a_pickle() -> None:
    with pytest.raises(ValueError, match="NumpySerializer cannot serialize set") as e:
        NumpySerializer().serialize({1, 2, 3})
    assert "numpy arrays" in str(e.value)
    with pytest.raises(ValueError, match="NumpySerializer cannot serialize list"):
        NumpySerializer().serialize([[1, 2], [3]])


def test_numpy_serializer_names_a_dtype_it_cannot_convert_to() -> None:
    with pytest.raises(ValueError, match="cannot serialize list as an array of dtype float"):
        NumpySerializer(dtype="float").serialize(["a", "b"])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2, 3], "[1, 2, 3]"),
        ({"a": 1, "b": [True, None]}, '{"a": 1, "b": [true, null]}'),
        ("text", '"text"'),
        ([], "[]"),
        ({}, "{}"),
        (np.array([1, 2, 3]), "[1, 2, 3]"),
        (np.array([[1, 2], [3, 4]]), "[[1, 2], [3, 4]]"),
        (np.array([]), "[]"),
        ({"instances": np.array([[0.5, 1.0]])}, '{"instances": [[0.5, 1.0]]}'),
        ([np.int64(3), np.float32(0.5)], "[3, 0.5]"),
    ],
)
def test_json_serializer(data: Any, expected: str) -> None:
    assert JSONSerializer().serialize(data) == expected


def test_json_serializer_reads_a_file_like_object() -> None:
    assert JSONSerializer().serialize(io.StringIO('{"a": 1}')) == '{"a": 1}'


@pytest.mark.parametrize(("data", "type_name"), [(object(), "object"), ([b"x"], "bytes")])
def test_json_serializer_names_the_type_it_cannot_serialize(data: Any, type_name: str) -> None:
    with pytest.raises(ValueError, match=f"JSONSerializer cannot serialize {type_name}") as e:
        JSONSerializer().serialize(data)
    assert "numpy arrays" in str(e.value)


def test_json_round_trip() -> None:
    payload = {"instances": [[1, 2.5], [3, 4]], "name": "é"}
    body = JSONSerializer().serialize(payload)
    assert JSONDeserializer().deserialize(Body(body), "application/json") == payload


def test_identity_serializer_returns_the_data_unchanged() -> None:
    data = b"\x89PNG..."
    assert IdentitySerializer().serialize(data) is data


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([["Name", "Score"], ["Gilbert", 24]], '["Name", "Score"]\n["Gilbert", 24]'),
        (
            [{"Name": "Gilbert", "Score": 24}, {"Name": "Alexa", "Score": 29}],
            '{"Name": "Gilbert", "Score": 24}\n{"Name": "Alexa", "Score": 29}',
        ),
        ((x for x in [1, "a"]), '1\n"a"'),
        ([np.array([1, 2])], "[1, 2]"),
        ('{"a": 1}\n{"a": 2}', '{"a": 1}\n{"a": 2}'),
        (b'{"a": 1}', b'{"a": 1}'),
    ],
)
def test_json_lines_serializer(data: Any, expected: str | bytes) -> None:
    assert JSONLinesSerializer().serialize(data) == expected


def test_json_lines_serializer_reads_a_file_like_object() -> None:
    assert JSONLinesSerializer().serialize(io.StringIO('{"a": 1}\n')) == '{"a": 1}\n'


@pytest.mark.parametrize(("data", "type_name"), [(5, "int"), ({"a": 1}, "dict")])
def test_json_lines_serializer_names_the_type_it_cannot_serialize(
    data: Any, type_name: str
) -> None:
    with pytest.raises(ValueError, match=f"JSONLinesSerializer cannot serialize {type_name}") as e:
        JSONLinesSerializer().serialize(data)
    assert "a list of JSON values" in str(e.value)


def test_json_lines_round_trip() -> None:
    records = [{"source": "a b"}, {"source": "c", "n": [1, 2]}, [1, 2], "text", 3]
    body = JSONLinesSerializer().serialize(records)
    assert len(body.splitlines()) == len(records)
    stream = Body(body + "\n")
    assert JSONLinesDeserializer().deserialize(stream, "application/jsonlines") == records
    assert stream.was_closed


def test_libsvm_serializer_passes_text_and_files_through() -> None:
    assert LibSVMSerializer().serialize("0 0:1 5:1") == "0 0:1 5:1"
    assert LibSVMSerializer().serialize(io.StringIO("1 3:0.5\n")) == "1 3:0.5\n"


@pytest.mark.parametrize(("data", "type_name"), [([1, 2], "list"), (np.array([1]), "ndarray")])
def test_libsvm_serializer_accepts_only_text(data: Any, type_name: str) -> None:
    with pytest.raises(ValueError, match=f"LibSVMSerializer cannot serialize {type_name}") as e:
        LibSVMSerializer().serialize(data)
    assert "LibSVM text" in str(e.value)


# --- deserializers ------------------------------------------------------------------


def test_accept_is_a_tuple() -> None:
    assert StringDeserializer().ACCEPT == ("application/json",)
    assert BytesDeserializer().ACCEPT == ("*/*",)
    assert CSVDeserializer().ACCEPT == ("text/csv",)
    assert StreamDeserializer().ACCEPT == ("*/*",)
    assert NumpyDeserializer().ACCEPT == ("application/x-npy",)
    assert JSONDeserializer().ACCEPT == ("application/json",)
    assert PandasDeserializer().ACCEPT == ("text/csv", "application/json")
    assert JSONLinesDeserializer().ACCEPT == ("application/jsonlines",)
    assert NumpyDeserializer(accept=("text/csv", "application/json")).ACCEPT == (
        "text/csv",
        "application/json",
    )


def test_base_deserializers_are_abstract() -> None:
    with pytest.raises(TypeError):
        deserializers.BaseDeserializer()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        deserializers.SimpleBaseDeserializer()  # type: ignore[abstract]


def test_string_and_bytes_deserializers_read_and_close() -> None:
    stream = Body("héllo".encode())
    assert StringDeserializer().deserialize(stream, "text/plain") == "héllo"
    assert stream.was_closed
    latin = Body("héllo".encode("latin-1"))
    assert StringDeserializer(encoding="latin-1").deserialize(latin, "text/plain") == "héllo"
    raw = Body(b"\x00\x01")
    assert BytesDeserializer().deserialize(raw, "application/octet-stream") == b"\x00\x01"
    assert raw.was_closed


def test_deserializers_take_text_streams_and_streams_without_close() -> None:
    class NoClose:
        def read(self) -> str:
            return '{"a": [1, 2]}'

    assert JSONDeserializer().deserialize(NoClose(), "application/json") == {"a": [1, 2]}
    assert BytesDeserializer().deserialize(io.StringIO("ab"), "text/plain") == b"ab"


def test_csv_deserializer_returns_rows_of_strings() -> None:
    body = 'a,b\n1,"x,y"\n2,"two\nlines"\n'
    stream = Body(body)
    assert CSVDeserializer().deserialize(stream, "text/csv") == [
        ["a", "b"],
        ["1", "x,y"],
        ["2", "two\nlines"],
    ]
    assert stream.was_closed


def test_stream_deserializer_hands_the_stream_over_unread() -> None:
    stream = Body(b"data")
    result, content_type = StreamDeserializer().deserialize(stream, "text/plain")
    assert result is stream
    assert content_type == "text/plain"
    assert not stream.was_closed
    assert stream.read() == b"data"


def test_numpy_deserializer_reads_csv_and_json() -> None:
    csv_array = NumpyDeserializer().deserialize(Body("1.5,2.0\n3.0,4.5\n"), "text/csv")
    np.testing.assert_array_equal(csv_array, [[1.5, 2.0], [3.0, 4.5]])
    # dtype None infers each column's type, as SageMaker's does: integers stay integers.
    ints = NumpyDeserializer().deserialize(Body("1,2\n3,4"), "text/csv")
    assert ints.dtype.kind == "i"
    row = NumpyDeserializer(dtype="float32").deserialize(Body("1,2,3"), "text/csv; charset=utf-8")
    assert row.dtype == np.float32
    np.testing.assert_array_equal(row, [1, 2, 3])
    json_array = NumpyDeserializer().deserialize(Body("[[1, 2], [3, 4]]"), "application/json")
    np.testing.assert_array_equal(json_array, [[1, 2], [3, 4]])
    typed = NumpyDeserializer(dtype="float64").deserialize(Body("[1, 2]"), "Application/JSON")
    assert typed.dtype == np.float64


def test_numpy_deserializer_refuses_other_content_types_and_closes() -> None:
    stream = Body(b"x")
    with pytest.raises(ValueError, match="cannot read content type 'image/png'") as e:
        NumpyDeserializer().deserialize(stream, "image/png")
    assert "application/x-npy" in str(e.value)
    assert stream.was_closed


def test_numpy_deserializer_loads_pickles_only_when_allowed() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        NumpyDeserializer().deserialize(Body(buffer.getvalue()), "application/x-npy")
    loaded = NumpyDeserializer(allow_pickle=True).deserialize(
        Body(buffer.getvalue()), "application/x-npy"
    )
    assert loaded[0] == {"a": 1}


def test_json_lines_deserializer_skips_blank_lines() -> None:
    body = '{"a": 1}\r\n\n{"a": 2}\n'
    assert JSONLinesDeserializer().deserialize(Body(body), "application/jsonlines") == [
        {"a": 1},
        {"a": 2},
    ]


def test_pandas_deserializer_without_pandas_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    stream = Body("a\n1\n")
    with pytest.raises(ImportError, match="PandasDeserializer needs pandas") as e:
        PandasDeserializer().deserialize(stream, "text/csv")
    assert "pip install pandas" in str(e.value)
    assert stream.was_closed


def test_pandas_deserializer_reads_csv_and_json() -> None:
    pandas = pytest.importorskip("pandas")
    frame = PandasDeserializer().deserialize(Body("a,b\n1,2\n3,4\n"), "text/csv")
    pandas.testing.assert_frame_equal(frame, pandas.DataFrame({"a": [1, 3], "b": [2, 4]}))
    from_json = PandasDeserializer().deserialize(
        Body(json.dumps({"a": {"0": 1, "1": 3}})), "application/json"
    )
    assert list(from_json["a"]) == [1, 3]
    with pytest.raises(ValueError, match="cannot read content type 'text/plain'"):
        PandasDeserializer().deserialize(Body("x"), "text/plain")
