"""Reading a manifest for local mode: the API's own models, errors naming the field.

A manifest is parsed exactly as the operator parses the object (the pydantic models of
:mod:`kubemaker.api`), so a spec that runs locally is one the cluster accepts, with one
local-mode convenience: a relative ``file://`` URI (``file://data/train``,
``file://./data``) is resolved against the manifest's directory before validation.
The CRD only accepts absolute ``file:///`` URIs, so such a manifest is for local use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from kubemaker.api import API_VERSION, Endpoint, TrainingJob
from kubemaker.api.common import ObjectMeta, ResourceBase, check_object_name
from kubemaker.builders.errors import validation_message
from kubemaker.local.errors import ManifestError

Resource = TypeVar("Resource", bound=ResourceBase)

# Spec fields holding a storage URI, wherever they appear (channels, output,
# checkpoints, script-mode code, an Endpoint's model).
URI_KEYS = frozenset({"uri", "s3Uri", "s3OutputPath", "sourceDir", "modelDataUrl"})
FILE_SCHEME = "file://"


def read_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a file that are mappings (others are skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start : exc.start + 1]!r})"
        ) from None
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply") from None
    return [doc for doc in documents if isinstance(doc, dict)]


def resolve_file_uri(uri: str, base_dir: Path) -> str:
    """``file://relative/path`` -> ``file:///<base_dir>/relative/path``; others unchanged."""
    if not uri.startswith(FILE_SCHEME) or uri.startswith(FILE_SCHEME + "/"):
        return uri
    relative = uri[len(FILE_SCHEME) :]
    resolved = (base_dir / relative).resolve()
    # Keep a trailing slash: it tells "every object under this prefix" apart.
    suffix = "/" if relative.endswith("/") and resolved.as_posix() != "/" else ""
    return f"{FILE_SCHEME}{resolved.as_posix()}{suffix}"


def resolve_relative_uris(value: Any, base_dir: Path) -> Any:
    """A copy of a spec with every relative ``file://`` URI made absolute (pure)."""
    if isinstance(value, Mapping):
        return {
            key: resolve_file_uri(item, base_dir)
            if key in URI_KEYS and isinstance(item, str)
            else resolve_relative_uris(item, base_dir)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [resolve_relative_uris(item, base_dir) for item in value]
    return value


def parse_resource(doc: Mapping[str, Any], model: type[Resource], source: str) -> Resource:
    """One object, checked as the apiserver and the operator would check it."""
    kind = model.info.kind
    api_version = doc.get("apiVersion")
    if api_version != API_VERSION:
        raise ManifestError(f"{source}: apiVersion must be {API_VERSION}, not {api_version!r}")
    if doc.get("kind") != kind:
        raise ManifestError(f"{source}: kind must be {kind}, not {doc.get('kind')!r}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping) or not metadata.get("name"):
        raise ManifestError(f"{source}: metadata.name is required")
    try:
        check_object_name(str(metadata["name"]), model.info.max_name_length)
    except ValueError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    try:
        meta = ObjectMeta.model_validate(dict(metadata))
    except ValidationError as exc:
        raise ManifestError(f"{source}: {validation_message(exc, prefix='metadata')}") from None
    if not isinstance(doc.get("spec"), Mapping):
        raise ManifestError(f"{source}: spec is required (a mapping)")
    try:
        spec = model.info.spec_model.model_validate(doc["spec"])
    except ValidationError as exc:
        raise ManifestError(f"{source}: {validation_message(exc)}") from None
    return model.model_validate(
        {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}
    )


def load(path: Path, model: type[Resource]) -> Resource:
    """The first object of ``model``'s kind in the file, relative URIs resolved."""
    resource = load_any(path, (model,))
    assert isinstance(resource, model)
    return resource


def load_any(path: Path, models: tuple[type[ResourceBase], ...]) -> ResourceBase:
    """The first object in the file whose kind is one of ``models``'."""
    documents = read_documents(path)
    wanted = {m.info.kind: m for m in models}
    for index, doc in enumerate(documents):
        model = wanted.get(str(doc.get("kind")))
        if model is None:
            continue
        source = f"{path}" if len(documents) == 1 else f"{path} (document {index + 1})"
        try:
            spec = doc.get("spec")
            if isinstance(spec, Mapping):
                doc = {**doc, "spec": resolve_relative_uris(spec, path.resolve().parent)}
            return parse_resource(doc, model, source)
        except RecursionError:
            raise ManifestError(f"{source}: nested too deeply") from None
    found = sorted({str(doc.get("kind")) for doc in documents})
    raise ManifestError(
        f"{path}: no {' or '.join(wanted)} in it"
        + (f" (found kind {', '.join(found)})" if found else " (it holds no object)")
    )


def load_training_job(path: Path) -> TrainingJob:
    return load(path, TrainingJob)


def load_endpoint_or_training_job(path: Path) -> Endpoint | TrainingJob:
    resource = load_any(path, (Endpoint, TrainingJob))
    assert isinstance(resource, Endpoint | TrainingJob)
    return resource
