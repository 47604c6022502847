"""Manifests in local mode: parsed as the operator parses them, errors naming the field."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from localmode_support import EXAMPLE, kubemaker, output

from kubemaker.api import Endpoint, TrainingJob
from kubemaker.config import OperatorConfig
from kubemaker.local.errors import ManifestError
from kubemaker.local.manifest import (
    load_endpoint_or_training_job,
    load_training_job,
    resolve_file_uri,
    resolve_relative_uris,
)
from kubemaker.local.progress import Display
from kubemaker.local.training import LocalTrainingJob
from kubemaker.metric_definitions import MetricParser

EXAMPLE_JOB = EXAMPLE / "trainingjob.yaml"


def example() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE_JOB.read_text())
    return manifest


def write(tmp_path: Path, *documents: Any) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


def load_error(tmp_path: Path, *documents: Any) -> str:
    with pytest.raises(ManifestError) as caught:
        load_training_job(write(tmp_path, *documents))
    return caught.value.message


def test_the_examples_load() -> None:
    job = load_training_job(EXAMPLE_JOB)
    assert job.metadata.name == "xgboost-bank"
    assert job.spec.algorithm_specification.algorithm_name == "xgboost"
    assert isinstance(load_endpoint_or_training_job(EXAMPLE / "endpoint.yaml"), Endpoint)
    assert load_training_job(EXAMPLE / "trainingjob-s3.yaml").metadata.name == "xgboost-bank-s3"


def test_relative_file_uris_resolve_against_the_manifest(tmp_path: Path) -> None:
    manifest = example()
    spec = manifest["spec"]
    spec["inputDataConfig"][0]["uri"] = "file://data/train"
    spec["inputDataConfig"][1] = {
        "channelName": "validation",
        "dataSource": {"s3DataSource": {"s3Uri": "file://./data/validation/"}},
    }
    spec["outputDataConfig"]["s3OutputPath"] = "file://../output"
    spec["hyperParameters"]["note"] = "file://not-a-uri-field"
    (tmp_path / "jobs").mkdir()
    path = tmp_path / "jobs" / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))

    job = load_training_job(path)

    channels = job.spec.input_data_config or []
    assert channels[0].source_uri == (tmp_path / "jobs" / "data" / "train").as_uri()
    assert channels[1].source_uri == (tmp_path / "jobs" / "data" / "validation").as_uri() + "/"
    assert job.spec.output_data_config.s3_output_path == (tmp_path / "output").as_uri()
    assert (job.spec.hyper_parameters or {})["note"] == "file://not-a-uri-field"


def test_absolute_and_other_uris_are_left_alone() -> None:
    base = Path("/somewhere")
    for uri in ("file:///data/train", "s3://bucket/train", "pvc://claim/train"):
        assert resolve_file_uri(uri, base) == uri
    spec = {"inputDataConfig": [{"uri": "file://x"}], "environment": {"uri": "file://y"}}
    resolved = resolve_relative_uris(spec, base)
    assert resolved["inputDataConfig"][0]["uri"] == "file:///somewhere/x"
    assert spec["inputDataConfig"][0]["uri"] == "file://x"  # a copy, not in place


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda m: m["spec"]["hyperParameters"].update(max_depth=5),
            "spec.hyperParameters.max_depth: Input should be a valid string",
        ),
        (
            lambda m: m["spec"]["algorithmSpecification"].update(image="x"),
            "spec.algorithmSpecification.image: Extra inputs are not permitted",
        ),
        (
            lambda m: m["spec"]["algorithmSpecification"].update(trainingImage="x:1"),
            "algorithmName cannot be combined with trainingImage or framework",
        ),
        (
            lambda m: m["spec"]["resourceConfig"].update(instanceCount=0),
            "spec.resourceConfig.instanceCount: Input should be greater than or equal to 1",
        ),
        (
            lambda m: m["spec"]["inputDataConfig"][0].update(uri="http://example.com/train"),
            "spec.inputDataConfig.0.uri: String should match pattern",
        ),
        (lambda m: m["spec"].pop("outputDataConfig"), "spec.outputDataConfig: Field required"),
        (
            lambda m: m["spec"]["algorithmSpecification"]["metricDefinitions"][0].update(
                regex="validation-auc:(["
            ),
            "spec.algorithmSpecification.metricDefinitions.0.regex: "
            "not a valid Python regular expression: unterminated character set",
        ),
        (lambda m: m["metadata"].pop("name"), "metadata.name is required"),
        (
            lambda m: m["metadata"].update(labels={"version": 1}),
            "metadata.labels.version: Input should be a valid string",
        ),
        (
            lambda m: m["metadata"].update(annotations=["a list"]),
            "metadata.annotations: Input should be a valid dictionary",
        ),
        (lambda m: m["metadata"].update(name="Bank_Job"), "metadata.name must be lower-case"),
        (lambda m: m.update(apiVersion="v1"), "apiVersion must be kubemaker.io/v1alpha1"),
        (lambda m: m.pop("spec"), "spec is required"),
    ],
)
def test_invalid_manifests_name_the_field(tmp_path: Path, change: Any, expected: str) -> None:
    manifest = example()
    change(manifest)
    message = load_error(tmp_path, manifest)
    assert expected in message
    assert message.startswith(str(tmp_path / "manifest.yaml"))


def test_the_first_object_of_the_kind_is_taken(tmp_path: Path) -> None:
    endpoint = yaml.safe_load((EXAMPLE / "endpoint.yaml").read_text())
    other = example()
    other["metadata"]["name"] = "second"
    job = load_training_job(write(tmp_path, endpoint, example(), other))
    assert job.metadata.name == "xgboost-bank"
    # An Endpoint comes first for `local serve`, which takes either kind.
    assert isinstance(load_endpoint_or_training_job(tmp_path / "manifest.yaml"), Endpoint)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file"):
        load_training_job(tmp_path / "missing.yaml")
    with pytest.raises(ManifestError, match="cannot read it: Is a directory"):
        load_training_job(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_training_job(bad)
    bad.write_bytes(EXAMPLE_JOB.read_bytes().replace(b"xgboost-bank", b"caf\xe9", 1))
    with pytest.raises(ManifestError, match=r"bad\.yaml: not UTF-8 text \(byte \d+: b'\\xe9'\)"):
        load_training_job(bad)
    # Too deep for the YAML parser, then for what reads the parsed spec.
    bad.write_text("spec: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ManifestError, match=r"bad\.yaml: nested too deeply"):
        load_training_job(bad)
    spec_tail = "\n  podOverrides: " + "{a: " * 700 + "1" + "}" * 700 + "\n"
    bad.write_text(EXAMPLE_JOB.read_text() + spec_tail)
    with pytest.raises(ManifestError, match=r"bad\.yaml: nested too deeply"):
        load_training_job(bad)
    endpoint = yaml.safe_load((EXAMPLE / "endpoint.yaml").read_text())
    assert "no TrainingJob in it (found kind Endpoint)" in load_error(tmp_path, endpoint)


def _local_job(tmp_path: Path, manifest: dict[str, Any]) -> LocalTrainingJob:
    job = TrainingJob.model_validate(manifest)
    display = Display(out=io.StringIO(), err=io.StringIO(), live=False)
    return LocalTrainingJob(job, workdir=tmp_path, config=OperatorConfig(), display=display)


def test_an_unknown_algorithm_names_the_field(tmp_path: Path) -> None:
    manifest = example()
    manifest["spec"]["algorithmSpecification"]["algorithmName"] = "linear-learner"
    with pytest.raises(
        ManifestError, match=r"spec\.algorithmSpecification\.algorithmName: unknown"
    ):
        _local_job(tmp_path, manifest)


def test_an_invalid_metric_regex_names_the_definition(tmp_path: Path) -> None:
    manifest = example()
    manifest["spec"]["algorithmSpecification"]["metricDefinitions"][1]["regex"] = "auc:(["
    message = load_error(tmp_path, manifest)
    assert "metricDefinitions.1.regex: not a valid Python regular expression" in message


def test_metric_regexes_match_as_printed_and_as_cloudwatch_shows_them() -> None:
    job = load_training_job(EXAMPLE_JOB)
    definitions = job.spec.algorithm_specification.metric_definitions
    parser = MetricParser(definitions)
    assert parser.feed("[3]\ttrain-auc:0.91000\tvalidation-auc:0.89120") == {
        "train:auc": 0.91,
        "validation:auc": 0.8912,
    }
    assert parser.feed("[4]#011train-auc:0.92#011validation-auc:0.9") == {
        "train:auc": 0.92,
        "validation:auc": 0.9,
    }
    assert parser.feed("validation-auc:0.99 without a round") == {}
    assert parser.latest == {"train:auc": 0.92, "validation:auc": 0.9}


def test_a_bad_manifest_exits_2_with_the_field(tmp_path: Path) -> None:
    manifest = example()
    manifest["spec"]["hyperParameters"]["num_round"] = 100
    done = kubemaker("local", "train", "-f", str(write(tmp_path, manifest)), timeout=60)
    assert done.returncode == 2, output(done)
    assert "spec.hyperParameters.num_round: Input should be a valid string" in done.stderr


def _not_utf8(tmp_path: Path) -> list[str]:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(EXAMPLE_JOB.read_bytes().replace(b"xgboost-bank", b"caf\xe9", 1))
    return ["-f", str(path)]


def _config_not_utf8(tmp_path: Path) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_bytes(b"images: {agent: caf\xe9}\n")
    return ["-f", str(EXAMPLE_JOB), "--config", str(config)]


def _config_invalid(tmp_path: Path) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text("images: {pullPolicy: Sometimes}\n")
    return ["-f", str(EXAMPLE_JOB), "--config", str(config)]


def _labels(tmp_path: Path) -> list[str]:
    manifest = example()
    manifest["metadata"]["labels"] = {"version": 1}
    return ["-f", str(write(tmp_path, manifest))]


def _regex(tmp_path: Path) -> list[str]:
    manifest = example()
    manifest["spec"]["algorithmSpecification"]["metricDefinitions"][0]["regex"] = "auc:(["
    return ["-f", str(write(tmp_path, manifest))]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (_labels, "manifest.yaml: metadata.labels.version: Input should be a valid string"),
        (_not_utf8, "latin1.yaml: not UTF-8 text (byte "),
        (_config_not_utf8, "operator configuration {tmp}/config.yaml is not UTF-8 text"),
        (_config_invalid, "config.yaml: images.pullPolicy: Input should be 'Always'"),
        (_regex, "spec.algorithmSpecification.metricDefinitions.0.regex: not a valid Python"),
    ],
    ids=["labels", "manifest-not-utf8", "config-not-utf8", "config-invalid", "regex"],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, arguments: Any, expected: str
) -> None:
    workdir = tmp_path / "work"
    done = kubemaker(
        "local", "train", *arguments(tmp_path), "--workdir", str(workdir), "--no-progress",
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, output(done)
    assert expected.format(tmp=tmp_path) in done.stderr, output(done)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, output(done)
    # Nothing ran: no job directory was made.
    assert not workdir.exists() or not any(workdir.iterdir())
