"""Every kubemaker manifest under examples/ parses with the API models.

The apiserver accepts them too (tests/cluster/test_crd_validation.py); together the two
keep `kubemaker local` and the cluster agreeing on what a valid manifest is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from kubemaker.api import BatchTransform, Endpoint, TrainingJob, TuningJob

REPO = Path(__file__).resolve().parents[2]
MODELS: dict[str, type[BaseModel]] = {
    "TrainingJob": TrainingJob,
    "TuningJob": TuningJob,
    "Endpoint": Endpoint,
    "BatchTransform": BatchTransform,
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((REPO / "examples").rglob("*.y*ml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith("kubemaker.io/"):
                found.append((f"{path.relative_to(REPO)}#{index}", doc))
    return found


DOCUMENTS = _documents()


@pytest.mark.parametrize("document", [d for _, d in DOCUMENTS], ids=[n for n, _ in DOCUMENTS])
def test_example_parses(document: dict[str, Any]) -> None:
    MODELS[document["kind"]].model_validate(document)


def test_there_are_examples() -> None:
    assert DOCUMENTS
