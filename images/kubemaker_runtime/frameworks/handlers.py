"""``serve`` of every script-mode framework: SageMaker's handler functions around defaults.

The user's module (``SAGEMAKER_PROGRAM``, found in ``<model_dir>/code/`` where training
put it, else in ``SAGEMAKER_SUBMIT_DIRECTORY``) may define any of:

- ``model_fn(model_dir)``: load the model;
- ``transform_fn(model, data, input_content_type, accept)``: the whole request,
  returning the body or ``(body, content_type)``; or else, one step each:
- ``input_fn(data, content_type)``, ``predict_fn(data, model)`` and
  ``output_fn(prediction, accept)``.

What the user leaves out is the framework's default: a :class:`HandlerModel` subclass
names its four (:class:`Defaults`) and the content types they read and write. The HTTP side
(routes, negotiation, limits, metrics, Open Inference Protocol) is the shared model
server's. A body the defaults cannot read is a 400 (an unknown type a 415); so is a
``ValueError``, ``TypeError``, ``KeyError`` or ``IndexError`` from the user's
``input_fn`` (it parses the request). Any other exception from the user's code is a 500
whose body names only the exception's type (the traceback goes to the log).
"""

from __future__ import annotations

import ast
import importlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks import usercode
from kubemaker_runtime.serving.errors import InvalidInput
from kubemaker_runtime.serving.model import Model

logger = logging.getLogger(__name__)

HANDLERS = ("model_fn", "transform_fn", "input_fn", "predict_fn", "output_fn")
# What a user's input_fn raises on a body it cannot parse (json, float(), a missing key):
# a 400 with its message. Anything else from the user's code stays a 500.
INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)
MESSAGE_LIMIT = 300


def defines_handlers(source: str) -> bool:
    """Whether a module defines any of SageMaker's handler functions at top level."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name in HANDLERS for node in tree.body)


def _load_module(program: str, code_dir: Path) -> ModuleType:
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))
    name = program.removesuffix(".py")
    return importlib.import_module(name)


def find_user_module(model_dir: Path, environ: Mapping[str, str]) -> ModuleType | None:
    """The module holding the handler functions, if the model has one."""
    program = environ.get(contract.SERVING_PROGRAM_ENV)
    code_dir = model_dir / usercode.MODEL_CODE_DIR
    if not program and code_dir.is_dir():
        # A model trained by kubemaker carries its code; one script is unambiguous. It is
        # imported only when it defines a handler: a plain script would train again.
        scripts = sorted(code_dir.glob("*.py"))
        if len(scripts) == 1 and defines_handlers(scripts[0].read_text(errors="replace")):
            program = scripts[0].name
    if not program:
        return None
    if not (code_dir / program).is_file():
        submit = environ.get(contract.SERVING_SUBMIT_DIRECTORY_ENV)
        if not submit:
            raise usercode.UserCodeError(
                f"{contract.SERVING_PROGRAM_ENV}={program} is not in {code_dir} and "
                f"{contract.SERVING_SUBMIT_DIRECTORY_ENV} is not set"
            )
        code_dir = usercode.stage_code(submit, Path(tempfile.mkdtemp(prefix="model-code-")))
        if not (code_dir / program).is_file():
            raise usercode.UserCodeError(f"{program} is not in {submit}")
    return _load_module(program, code_dir)


def as_bytes(result: Any) -> bytes:
    """A handler's response: the body or ``(body, content_type)``; text, bytes or JSON."""
    if isinstance(result, tuple):
        result = result[0]
    if isinstance(result, str):
        return result.encode()
    if isinstance(result, bytes | bytearray | memoryview):
        return bytes(result)
    return json.dumps(result).encode()


class _Deferred:
    """A transform_fn request: it runs once the response type is known (in encode)."""

    __slots__ = ("body", "content_type")

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body = body
        self.content_type = content_type


@dataclass(frozen=True)
class Defaults:
    """A framework's handler functions, for what the user's module leaves out."""

    model_fn: Callable[[str], Any]
    input_fn: Callable[[bytes, str], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]


class HandlerModel(Model):
    """The model server's Model for a script-mode framework, driven by the user's handlers.

    A subclass sets the framework's :class:`Defaults` and the content types they handle;
    the user's ``input_fn`` / ``output_fn`` widen the types to ``user_request_types`` /
    ``user_response_types`` (the first response type is the default for ``*/*``).
    """

    defaults: ClassVar[Defaults]
    user_request_types: ClassVar[Sequence[str]] = ()
    user_response_types: ClassVar[Sequence[str]] = ()

    def __init__(self, model_dir: str | Path, *, name: str | None = None) -> None:
        super().__init__(model_dir, name=name)
        self.module: ModuleType | None = None
        self.model: Any = None
        self._transform_fn: Callable[..., Any] | None = None
        self._input_fn: Callable[[bytes, str], Any] = self.defaults.input_fn
        self._predict_fn: Callable[[Any, Any], Any] = self.defaults.predict_fn
        self._output_fn: Callable[[Any, str], Any] = self.defaults.output_fn
        # Bind before load(): the app reads the types when it is built.
        self.module = find_user_module(self.model_dir, os.environ)
        if self.module is not None:
            logger.info("handler functions from %s", getattr(self.module, "__file__", "?"))
        hooks = vars(self.module) if self.module else {}
        if callable(hooks.get("transform_fn")) or callable(hooks.get("input_fn")):
            self.request_types = self.user_request_types or self.request_types
        if callable(hooks.get("transform_fn")) or callable(hooks.get("output_fn")):
            self.response_types = self.user_response_types or self.response_types

    def _hook(self, name: str) -> Callable[..., Any] | None:
        found = getattr(self.module, name, None) if self.module else None
        return found if callable(found) else None

    def load(self) -> None:
        model_fn = self._hook("model_fn") or self.defaults.model_fn
        self.model = model_fn(str(self.model_dir))
        self._transform_fn = self._hook("transform_fn")
        self._input_fn = self._hook("input_fn") or self.defaults.input_fn
        self._predict_fn = self._hook("predict_fn") or self.defaults.predict_fn
        self._output_fn = self._hook("output_fn") or self.defaults.output_fn
        self.loaded()
        self.ready = True

    def loaded(self) -> None:
        """Called once the model is loaded, before the model turns ready."""

    def decode(self, body: bytes, content_type: str) -> Any:
        if self._transform_fn is not None:
            return _Deferred(body, content_type)
        if self._input_fn is self.defaults.input_fn:
            return self._input_fn(body, content_type)
        try:
            return self._input_fn(body, content_type)
        except INPUT_ERRORS as error:
            # The user's input_fn parses the request: what it cannot parse is the caller's.
            text = f"{type(error).__name__}: {error}"
            raise InvalidInput(
                f"the script's input_fn rejected the {content_type} body: {text[:MESSAGE_LIMIT]}"
            ) from error

    def predict(self, inputs: Any) -> Any:
        if isinstance(inputs, _Deferred):
            return inputs
        return self._predict_fn(inputs, self.model)

    def encode(self, outputs: Any, accept: str) -> bytes:
        if isinstance(outputs, _Deferred):
            assert self._transform_fn is not None
            return as_bytes(
                self._transform_fn(self.model, outputs.body, outputs.content_type, accept)
            )
        return as_bytes(self._output_fn(outputs, accept))
