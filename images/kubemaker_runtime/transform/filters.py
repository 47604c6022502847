"""SageMaker's batch transform data processing: ``inputFilter``, ``joinSource``,
``outputFilter``.

JSONPath, the subset SageMaker documents: ``$``, ``.name``, ``.*``, ``['a','b']``,
``[n,m]`` (negative from the end), ``[a:b]`` (either bound optional or negative), unions
of indexes and slices (``$[0,5:]``, from SageMaker's own examples), and chains of them
(``$.features[1:]``, ``$.a.['b','c']``). Our own parser: jsonpath-ng, the maintained
Python library, does not parse ``$[0,5:]`` and returns nothing where SageMaker errs.

Semantics, as SageMaker (whose JSONPath follows Jayway's):

- a path of single names and indexes selects a value; one with a slice, a wildcard or
  a union selects a list of values (a JSON array, even of one value); a last step of
  several names picks those keys into an object (``$['id','SageMakerOutput']`` gives
  ``{"id": ..., "SageMakerOutput": ...}``);
- a name that is not there or an index out of range is an error, as SageMaker's
  "indexes that aren't within the dimension size" are, wherever it is in the path
  (Jayway skips such values after a wildcard or a union: we do not, so that a CSV
  never loses a column silently); so is a path that selects nothing; every such error
  names the record's 1-based position;
- ``text/csv``: a record is one CSV line seen as an array of its values, which keep
  their exact text (quotes, spaces, number formats); a selection is written back as one
  CSV line;
- JSON (``application/json``, JSON Lines): a record is one JSON value, written back as
  compact JSON (numbers keep their value, not always their spelling: ``1e2`` comes
  back as ``100.0``);
- other content types pass only ``$``;
- ``joinSource: Input``: a CSV input line gets the output line appended (the output
  must be CSV); a JSON object gets the output under ``SageMakerOutput`` (replacing one
  there); any other JSON value becomes ``{"SageMakerInput": ..., "SageMakerOutput":
  ...}``. The output is parsed as JSON when ``accept`` is JSON, else kept as a string.
  The joined record has the input's content type, for ``outputFilter``.

Departures: a blank expression means ``$``; slice steps, recursive descent (``..``) and
filter expressions (``?()``) are refused when the path is compiled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

CSV_TYPES = frozenset({"text/csv"})
JSON_TYPES = frozenset(
    {"application/json", "application/jsonlines", "application/jsonl", "application/x-jsonlines"}
)


class FilterError(ValueError):
    """A filter that does not parse, or does not apply to a record."""


# --- paths -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Name:
    key: str


@dataclass(frozen=True, slots=True)
class Index:
    index: int


@dataclass(frozen=True, slots=True)
class Slice:
    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class Wildcard:
    pass


Selector = Name | Index | Slice | Wildcard


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled expression: each step is a union of selectors."""

    expression: str
    steps: tuple[tuple[Selector, ...], ...]

    @property
    def definite(self) -> bool:
        """Whether it selects one value (names and indexes, or a last merge), else a list."""
        return all(
            (len(step) == 1 and isinstance(step[0], Name | Index)) or self.merges(number)
            for number, step in enumerate(self.steps)
        )

    def merges(self, number: int) -> bool:
        """Whether step ``number`` picks an object's keys into an object (Jayway's
        multi-property leaf: ``$['id','score']`` gives ``{"id": ..., "score": ...}``)."""
        step = self.steps[number]
        last = number == len(self.steps) - 1
        return last and len(step) > 1 and all(isinstance(item, Name) for item in step)


def compile_path(expression: str, field: str) -> JsonPath:
    """Parses ``expression``; a :class:`FilterError` names ``field`` when it does not."""
    text = expression.strip() or "$"
    try:
        return JsonPath(text, _Parser(text).path())
    except _SyntaxError as error:
        raise FilterError(f"{field}: {text!r} does not parse: {error}") from None


class _SyntaxError(Exception):
    pass


_NAME = re.compile(r"[A-Za-z_][\w-]*")
_INDEX = re.compile(r"\s*(-?\d+)\s*")
_QUOTED = re.compile(r"\s*(?:'([^']*)'|\"([^\"]*)\")\s*")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, what: str) -> _SyntaxError:
        return _SyntaxError(f"{what} at character {self.at + 1}")

    def path(self) -> tuple[tuple[Selector, ...], ...]:
        if not self.text.startswith("$"):
            raise self.fail("expected $")
        self.at = 1
        steps: list[tuple[Selector, ...]] = []
        while self.at < len(self.text):
            steps.append(self.step())
        return tuple(steps)

    def step(self) -> tuple[Selector, ...]:
        if self.text.startswith(".[", self.at):  # SageMaker's $.a.['b','c']
            self.at += 1
        if self.eat("["):
            selectors = [self.selector()]
            while self.eat(","):
                selectors.append(self.selector())
            if not self.eat("]"):
                raise self.fail("expected ',' or ']'")
            return tuple(selectors)
        if not self.eat("."):
            raise self.fail("expected '.' or '['")
        if self.eat("*"):
            return (Wildcard(),)
        name = _NAME.match(self.text, self.at)
        if not name:
            raise self.fail("expected a name or '*' after '.'")
        self.at = name.end()
        return (Name(name.group()),)

    def selector(self) -> Selector:
        quoted = _QUOTED.match(self.text, self.at)
        if quoted:
            self.at = quoted.end()
            return Name(quoted.group(1) if quoted.group(1) is not None else quoted.group(2))
        if self.eat("*"):
            return Wildcard()
        start = self.number()
        if not self.eat(":"):
            if start is None:
                raise self.fail("expected a quoted name, an index, a slice or '*'")
            return Index(start)
        end = self.number()
        if self.text.startswith(":", self.at):
            raise self.fail("slice steps are not supported")
        return Slice(start, end)

    def number(self) -> int | None:
        match = _INDEX.match(self.text, self.at)
        if not match:
            return None
        self.at = match.end()
        return int(match.group(1))

    def eat(self, token: str) -> bool:
        while self.text.startswith(" ", self.at):
            self.at += 1
        if not self.text.startswith(token, self.at):
            return False
        self.at += len(token)
        return True


class _Miss(Exception):
    """A selector that does not apply to a value (the message says why)."""


def _find(path: JsonPath, root: Any) -> list[Any]:
    nodes = [root]
    for number, step in enumerate(path.steps):
        if path.merges(number):
            nodes = [_merge(step, node) for node in nodes]
        else:
            nodes = [child for node in nodes for item in step for child in _apply(item, node)]
    return nodes


def _merge(step: tuple[Selector, ...], node: Any) -> dict[str, Any]:
    names = [item.key for item in step if isinstance(item, Name)]
    return {name: _apply(Name(name), node)[0] for name in names}


def _apply(selector: Selector, node: Any) -> list[Any]:
    if isinstance(selector, Name):
        if not isinstance(node, dict):
            raise _Miss(f"{selector.key!r} of {_kind(node)}")
        if selector.key not in node:
            raise _Miss(f"no {selector.key!r}")
        return [node[selector.key]]
    if isinstance(selector, Wildcard):
        if isinstance(node, dict):
            return list(node.values())
        if isinstance(node, list):
            return list(node)
        raise _Miss(f"'*' of {_kind(node)}")
    if not isinstance(node, list):
        raise _Miss(f"{_show(selector)} of {_kind(node)}")
    if isinstance(selector, Slice):
        return list(node[selector.start : selector.end])
    if not -len(node) <= selector.index < len(node):
        raise _Miss(f"index {selector.index} out of range for {len(node)} values")
    return [node[selector.index]]


def _show(selector: Index | Slice) -> str:
    if isinstance(selector, Index):
        return f"index {selector.index}"
    start, end = ("" if bound is None else bound for bound in (selector.start, selector.end))
    return f"slice [{start}:{end}]"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a string" if isinstance(value, str | bytes) else "a number"


# --- records -----------------------------------------------------------------------------


def select(path: JsonPath, record: bytes, content_type: str, *, position: int) -> bytes:
    """The part of ``record`` (1-based ``position`` in its object) that ``path`` selects."""
    if not path.steps:
        return record
    media = _media(content_type)
    if media in CSV_TYPES:
        return b",".join(_found(path, _csv_values(record, position), position))
    if media in JSON_TYPES:
        found = _found(path, _load(record, content_type, f"record {position}"), position)
        return _dump(found[0] if path.definite else found)
    raise FilterError(
        f"{path.expression} needs CSV or JSON records (text/csv, application/json, "
        f"application/jsonlines), not {content_type or 'no content type'!r}"
    )


def _found(path: JsonPath, root: Any, position: int) -> list[Any]:
    try:
        found = _find(path, root)
    except _Miss as miss:
        raise FilterError(
            f"{path.expression} selects nothing in record {position}: {miss}"
        ) from None
    if not found:
        raise FilterError(f"{path.expression} selects nothing in record {position}")
    return found


def join(
    input_record: bytes,
    output_record: bytes,
    content_type_in: str,
    accept: str,
    *,
    position: int | None = None,
) -> bytes:
    """``joinSource: Input``: the input record with its output (see the module docstring)."""
    record = "the record" if position is None else f"record {position}"
    output = output_record.rstrip(b"\r\n")
    if _media(content_type_in) in CSV_TYPES:
        if _media(accept) not in CSV_TYPES:
            raise FilterError(
                f"joinSource Input: a text/csv input joins a text/csv output, not {accept!r}"
            )
        if b"\n" in output:
            raise FilterError(f"joinSource Input: the output of {record} is several lines")
        return input_record + b"," + output
    if _media(content_type_in) not in JSON_TYPES:
        raise FilterError(
            f"joinSource Input needs CSV or JSON input (text/csv, application/json, "
            f"application/jsonlines), not {content_type_in or 'no content type'!r}"
        )
    value = _load(input_record, content_type_in, record)
    if _media(accept) in JSON_TYPES:
        result = _load(output, accept, f"the output of {record}")
    else:
        result = _text(output, f"the output of {record}")
    if isinstance(value, dict):
        return _dump({**value, "SageMakerOutput": result})
    return _dump({"SageMakerInput": value, "SageMakerOutput": result})


# --- formats -----------------------------------------------------------------------------


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _csv_values(line: bytes, position: int) -> list[bytes]:
    """A CSV line's values, each its exact text (quotes included)."""
    if b'"' not in line:
        return line.split(b",")
    values: list[bytes] = []
    start, quoted = 0, False
    for at, byte in enumerate(line):
        if byte == 0x22:  # '"': "" inside quotes toggles twice
            quoted = not quoted
        elif byte == 0x2C and not quoted:  # ','
            values.append(line[start:at])
            start = at + 1
    if quoted:
        raise FilterError(f"record {position} has an unterminated quoted CSV value")
    values.append(line[start:])
    return values


def _load(data: bytes, content_type: str, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise FilterError(f"{what} is not {content_type} ({error})") from None


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise FilterError(f"joinSource Input: {what} is not UTF-8 text") from None
