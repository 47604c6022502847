"""kubemaker_runtime.transform.filters: inputFilter, joinSource and outputFilter.

The cases follow SageMaker's "Associate Prediction Results with Input Records" page:
a CSV whose first column is the label or an id, ``$[1:]`` in, ``$[0,-1]`` out; JSON
records with ``$.features`` in and ``$['id','SageMakerOutput']`` out.
"""

from __future__ import annotations

import json

import pytest

from kubemaker_runtime.transform import filters
from kubemaker_runtime.transform.filters import FilterError, compile_path

CSV = "text/csv"
JSON = "application/json"
JSONL = "application/jsonlines"
IN = "spec.dataProcessing.inputFilter"


def select(expression: str, record: bytes, content_type: str, position: int = 1) -> bytes:
    return filters.select(compile_path(expression, IN), record, content_type, position=position)


def select_json(expression: str, value: object, content_type: str = JSON) -> object:
    return json.loads(select(expression, json.dumps(value).encode(), content_type))


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "definite"),
    [
        ("$", True),
        ("$.features", True),
        ("$['features']", True),
        ('$["features"]', True),
        ("$[0]", True),
        ("$[-1]", True),
        ("$.a.b[2]", True),
        ("$['id','score']", True),  # a last step of names: one object
        ("$[1:]", False),
        ("$[:-1]", False),
        ("$[-2:]", False),
        ("$[:]", False),
        ("$[0,-1]", False),
        ("$[0,5:]", False),
        ("$.*", False),
        ("$[*]", False),
        ("$.features[1:]", False),
        ("$.a.['b','c']", True),
        ("$['a','b'].c", False),  # names not last: a union
        (" $[ 0 , -1 ] ", False),
    ],
)
def test_paths_that_parse(expression: str, definite: bool) -> None:
    assert compile_path(expression, IN).definite is definite


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("$[1:", r"expected ',' or '\]' at character 5"),
        ("features", r"expected \$ at character 1"),
        ("$.", "expected a name or '\\*' after '.' at character 3"),
        ("$..a", "expected a name"),  # recursive descent: not SageMaker's
        ("$[::2]", "slice steps are not supported"),
        ("$[?(@.a > 1)]", "expected a quoted name, an index, a slice or '\\*'"),
        ("$[]", "expected a quoted name"),
        ("$['a]", "expected a quoted name"),
        ("$[1.5]", r"expected ',' or '\]'"),
        ("$features", r"expected '\.' or '\[' at character 2"),
    ],
)
def test_paths_that_do_not_parse_name_the_field(expression: str, why: str) -> None:
    with pytest.raises(FilterError, match=rf"^{IN}: .* does not parse: {why}") as error:
        compile_path(expression, IN)
    assert repr(expression.strip()) in str(error.value)


def test_blank_is_the_root() -> None:
    assert compile_path("", IN).steps == ()
    assert compile_path("  ", IN).expression == "$"


# --- CSV -------------------------------------------------------------------------------------

ROW = b"1,0.25,3.50e1,-7"


def test_csv_drop_the_label() -> None:
    assert select("$[1:]", ROW, CSV) == b"0.25,3.50e1,-7"  # numbers keep their text


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("$", ROW),
        ("$[0,-1]", b"1,-7"),
        ("$[0]", b"1"),
        ("$[-2]", b"3.50e1"),
        ("$[1:3]", b"0.25,3.50e1"),
        ("$[:-2]", b"1,0.25"),
        ("$[-3:-1]", b"0.25,3.50e1"),
        ("$[0,2:]", b"1,3.50e1,-7"),
        ("$[*]", ROW),
        ("$.*", ROW),
    ],
)
def test_csv_selections(expression: str, selected: bytes) -> None:
    assert select(expression, ROW, CSV) == selected
    assert select(expression, ROW, "text/csv; charset=utf-8") == selected


def test_csv_quoted_values_are_kept_exactly() -> None:
    row = b'id-7,"a, b"," padded ","say ""hi""",,"",007'
    assert select("$[1:]", row, CSV) == b'"a, b"," padded ","say ""hi""",,"",007'
    assert select("$[1,3]", row, CSV) == b'"a, b","say ""hi"""'
    assert select("$[-1,4,5]", row, CSV) == b'007,,""'


def test_csv_unterminated_quote() -> None:
    with pytest.raises(FilterError, match="record 4 has an unterminated quoted CSV value"):
        select("$[1:]", b'1,"open,2', CSV, position=4)


def test_csv_selecting_nothing_names_the_record() -> None:
    with pytest.raises(FilterError, match=r"^\$\[7\] selects nothing in record 3: index 7 out"):
        select("$[7]", ROW, CSV, position=3)
    with pytest.raises(FilterError, match=r"^\$\[0,9\] selects nothing in record 2: index 9"):
        select("$[0,9]", ROW, CSV, position=2)
    with pytest.raises(FilterError, match=r"^\$\[4:\] selects nothing in record 5$"):
        select("$[4:]", ROW, CSV, position=5)
    with pytest.raises(FilterError, match=r"selects nothing in record 1: 'features' of an array"):
        select("$.features", ROW, CSV)


# --- JSON ------------------------------------------------------------------------------------

RECORD = {"id": "r-1", "features": [0.5, 2, -1.25, 8], "score": 0.75, "meta": {"x": 1, "y": None}}


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("$.features", [0.5, 2, -1.25, 8]),
        ("$['features']", [0.5, 2, -1.25, 8]),
        ("$.features[0]", 0.5),  # definite: the value
        ("$.features[0:1]", [0.5]),  # a slice: always an array
        ("$.features[1:]", [2, -1.25, 8]),
        ("$.features[-1]", 8),
        ("$.features[0,-1]", [0.5, 8]),
        ("$['id','score']", {"id": "r-1", "score": 0.75}),
        ("$.meta.y", None),
        ("$.meta.*", [1, None]),
        ("$.meta.['x','y']", {"x": 1, "y": None}),
    ],
)
def test_json_selections(expression: str, selected: object) -> None:
    assert select_json(expression, RECORD) == selected
    assert select_json(expression, RECORD, JSONL) == selected


def test_json_arrays_and_bytes() -> None:
    assert select_json("$[1:]", [1, 2.5, "x"]) == [2.5, "x"]
    assert select_json("$[-2:]", [[1, 2], [3, 4], [5, 6]]) == [[3, 4], [5, 6]]
    assert select_json("$[1:][0]", [[1, 2], [3, 4], [5, 6]]) == [3, 5]
    assert select_json("$['a','b'].x", {"a": {"x": 1}, "b": {"x": 2}, "c": 3}) == [1, 2]
    # compact, non-ASCII kept as UTF-8
    assert select("$.name", '{"name": "é", "n": 1}'.encode(), JSON) == '"é"'.encode()
    assert select("$.v", b'{"v": {"a": [1, 2]}}', JSON) == b'{"a":[1,2]}'


def test_json_selecting_nothing_names_the_record() -> None:
    doc = json.dumps(RECORD).encode()
    with pytest.raises(FilterError, match=r"^\$\.feature selects nothing in record 3: no 'feature"):
        select("$.feature", doc, JSON, position=3)
    with pytest.raises(FilterError, match=r"record 9: 'x' of a number"):
        select("$.score.x", doc, JSON, position=9)
    with pytest.raises(FilterError, match=r"record 2: 'id' of an array"):
        select("$.id", b"[1, 2]", JSON, position=2)
    with pytest.raises(FilterError, match=r"record 2: index 0 of an object"):
        select("$[0]", doc, JSON, position=2)
    with pytest.raises(FilterError, match=r"record 2: index 0 of a number"):
        select("$['features','score'][0]", doc, JSON, position=2)  # every match, strictly
    with pytest.raises(FilterError, match=r"record 2: no 'nope'"):
        select("$['id','nope']", doc, JSON, position=2)
    with pytest.raises(FilterError, match=r"^\$\.meta\.x\[1:\] selects nothing in record 2: "):
        select("$.meta.x[1:]", doc, JSON, position=2)


def test_json_that_does_not_parse() -> None:
    with pytest.raises(FilterError, match=r"record 6 is not application/jsonlines"):
        select("$.features", b'{"features": [1, 2', JSONL, position=6)


def test_other_content_types_take_only_the_root() -> None:
    image = b"\x89PNG\r\n\x1a\n\x00\x00"
    assert select("$", image, "image/png") == image
    with pytest.raises(FilterError, match=r"\$\[1:\] needs CSV or JSON records .* not 'image/png'"):
        select("$[1:]", image, "image/png")
    with pytest.raises(FilterError, match="not 'no content type'"):
        select("$.features", b"{}", "")


# --- joinSource: Input, then outputFilter -------------------------------------------------


def test_csv_join_then_output_filter_keeps_id_and_prediction() -> None:
    original = b'id-7,"a, b",0.25,3'
    sent = select("$[1:]", original, CSV)
    assert sent == b'"a, b",0.25,3'
    joined = filters.join(original, b"0.93\n", CSV, CSV)
    assert joined == b'id-7,"a, b",0.25,3,0.93'
    out = compile_path("$[0,-1]", "spec.dataProcessing.outputFilter")
    assert filters.select(out, joined, CSV, position=1) == b"id-7,0.93"
    # several output values (the classes' probabilities) are appended as they are
    assert filters.join(b"1,2", b"0.1,0.9\r\n", CSV, CSV) == b"1,2,0.1,0.9"


def test_json_object_join_then_output_filter() -> None:
    original = json.dumps(RECORD).encode()
    assert select_json("$.features", RECORD) == [0.5, 2, -1.25, 8]
    joined = filters.join(original, b'{"predicted_label": 1}\n', JSONL, JSON)
    assert json.loads(joined) == {**RECORD, "SageMakerOutput": {"predicted_label": 1}}
    out = compile_path("$['id','SageMakerOutput']", "spec.dataProcessing.outputFilter")
    assert json.loads(filters.select(out, joined, JSONL, position=1)) == {
        "id": "r-1",
        "SageMakerOutput": {"predicted_label": 1},
    }


def test_json_array_join_wraps_the_input() -> None:
    joined = filters.join(b"[1, 2.5]", b"[0.2, 0.8]", JSON, JSON)
    assert json.loads(joined) == {"SageMakerInput": [1, 2.5], "SageMakerOutput": [0.2, 0.8]}
    assert json.loads(filters.join(b'"text"', b"0.5", JSON, JSON)) == {
        "SageMakerInput": "text",
        "SageMakerOutput": 0.5,
    }


def test_json_join_of_a_non_json_output_keeps_it_as_text() -> None:
    joined = filters.join(b'{"id": 3}', b"0.93\n", JSONL, CSV)
    assert json.loads(joined) == {"id": 3, "SageMakerOutput": "0.93"}
    assert json.loads(filters.join(b'{"id": 3}', b"null", JSON, JSON)) == {
        "id": 3,
        "SageMakerOutput": None,
    }


def test_joins_refused() -> None:
    with pytest.raises(FilterError, match="text/csv input joins a text/csv output, not 'appl"):
        filters.join(b"1,2", b"[0.5]", CSV, JSON)
    with pytest.raises(FilterError, match="output of record 4 is several lines"):
        filters.join(b"1,2", b"0.5\n0.7\n", CSV, CSV, position=4)
    with pytest.raises(FilterError, match=r"needs CSV or JSON input .* not 'image/png'"):
        filters.join(b"\x89PNG", b"cat", "image/png", JSON)
    with pytest.raises(FilterError, match="the output of record 2 is not application/json"):
        filters.join(b'{"id": 1}', b"0.5,0.7", JSON, JSON, position=2)
    with pytest.raises(FilterError, match="record 5 is not application/json"):
        filters.join(b"1,2,3", b"0.5", JSON, JSON, position=5)
    with pytest.raises(FilterError, match="output of the record is not UTF-8"):
        filters.join(b'{"id": 1}', b"\xff\xfe", JSON, "text/plain")
