"""The operator <-> agent wire format across version skew (protocol.py's docstring)."""

from __future__ import annotations

import json
import logging

import pytest
from pydantic import ValidationError

from kubemaker_runtime.protocol import (
    FAILURE_REASON_LIMIT,
    REPORT_VERSION,
    TERMINATION_MESSAGE_LIMIT,
    AgentConfig,
    AgentReport,
    ReportError,
)

MODEL = "s3://bucket/jobs/j/output/model.tar.gz"
OUTPUT = "s3://bucket/jobs/j/output/output.tar.gz"

# Exactly what version-1 agents wrote: no version (it was the default, and defaults were
# left out), camelCase; kwok's fake agent added the test-only "simulated" flag.
V1_AGENT_REPORT = (
    '{"outcome":"Completed","modelArtifacts":"s3://bucket/jobs/j/output/model.tar.gz",'
    '"outputData":"s3://bucket/jobs/j/output/output.tar.gz","bytesDownloaded":1048576,'
    '"bytesUploaded":20480,"finalMetrics":{"validation:auc":0.91}}'
)
V1_KWOK_REPORT = (
    '{"modelArtifacts":"s3://bucket/jobs/j/output/model.tar.gz","outcome":"Completed",'
    '"simulated":true,"version":1}'
)


def test_a_report_written_now_carries_the_current_version() -> None:
    message = AgentReport(outcome="Completed", model_artifacts=MODEL).to_message()
    assert json.loads(message) == {
        "version": REPORT_VERSION,
        "outcome": "Completed",
        "modelArtifacts": MODEL,
    }
    assert REPORT_VERSION == 2
    assert AgentReport.from_message(message).version == REPORT_VERSION


def test_an_older_reader_keeps_what_it_knows_of_a_newer_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    newer = {
        "version": 3,
        "outcome": "Completed",
        "modelArtifacts": MODEL,
        "finalMetrics": {"validation:auc": 0.91, "train:loss": 0.2},
        "failureReason": "x" * (FAILURE_REASON_LIMIT + 500),
        "modelDigest": {"sha256": "ab" * 32},
        "attempts": [1, 2],
    }
    with caplog.at_level(logging.DEBUG, logger="kubemaker_runtime.protocol"):
        report = AgentReport.from_message(json.dumps(newer))
    assert report.version == 3
    assert (report.outcome, report.model_artifacts) == ("Completed", MODEL)
    assert report.final_metrics == {"validation:auc": 0.91, "train:loss": 0.2}
    # A newer agent's longer text is clipped, not a reason to drop the report.
    assert report.failure_reason is not None
    assert len(report.failure_reason) == FAILURE_REASON_LIMIT
    assert "attempts, modelDigest" in caplog.text
    # The operator reads reports at every reconcile: that is no warning.
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize("message", [V1_AGENT_REPORT, V1_KWOK_REPORT], ids=["agent", "kwok"])
def test_the_new_reader_reads_a_version_1_report(message: str) -> None:
    report = AgentReport.from_message(message)
    assert report.version == 1
    assert (report.outcome, report.model_artifacts) == ("Completed", MODEL)
    if "outputData" in message:
        assert report.output_data == OUTPUT
        assert (report.bytes_downloaded, report.bytes_uploaded) == (1048576, 20480)
        assert report.final_metrics == {"validation:auc": 0.91}


@pytest.mark.parametrize(
    ("message", "names"),
    [
        ("Traceback (most recent call last):\n  File ...", "not JSON"),
        ("", "not JSON"),
        ('{"outcome": "Completed"', "not JSON"),
        ('["Completed"]', "not a JSON object"),
        ('"Completed"', "not a JSON object"),
        ('{"version": 2}', "outcome: missing"),
        ('{"outcome": "Stopped"}', "outcome:"),
        ('{"outcome": "Completed", "finalMetrics": {"auc": "high"}}', "finalMetrics.auc:"),
        ('{"outcome": "Completed", "bytesUploaded": [1]}', "bytesUploaded:"),
        ('{"outcome": "Completed", "version": "two"}', "version:"),
        ('{"outcome": "Completed", "version": 0}', "version:"),
        ('{"outcome": "Completed", "modelArtifacts": {"uri": "' + "s" * 5000 + '"}}', "model"),
    ],
)
def test_an_unreadable_report_is_one_short_line(message: str, names: str) -> None:
    with pytest.raises(ReportError) as caught:
        AgentReport.from_message(message)
    text = str(caught.value)
    assert text.startswith("unreadable agent report: ")
    assert names in text
    assert "\n" not in text and len(text) <= 350
    assert "pydantic" not in text and "errors.pydantic.dev" not in text
    # Callers that catch ValueError (a spec's parse, say) keep working.
    assert isinstance(caught.value, ValueError)


def test_every_error_is_counted_but_only_the_first_described() -> None:
    with pytest.raises(ReportError, match=r"outcome: .*; and 2 more$"):
        AgentReport.from_message('{"outcome": 1, "bytesUploaded": "x", "bytesDownloaded": "y"}')


@pytest.mark.parametrize("char", ["x", "é", "😀", "\x1b", '"'])
def test_to_message_fits_the_termination_message_whatever_the_text(char: str) -> None:
    report = AgentReport(
        outcome="Failed",
        model_artifacts="s3://bucket/" + "k" * 1000,
        output_data="s3://bucket/" + "o" * 1000,
        failure_reason=char * 5000,
        agent_error_kind="platform",
        agent_error=char * 5000,
        bytes_uploaded=2**40,
        final_metrics={f"metric-{i:03d}": i / 7 for i in range(300)},
    )
    message = report.to_message()
    assert len(message.encode()) <= TERMINATION_MESSAGE_LIMIT
    back = AgentReport.from_message(message)
    assert (back.version, back.outcome, back.agent_error_kind) == (2, "Failed", "platform")
    assert back.model_artifacts == report.model_artifacts
    assert back.failure_reason is not None and back.failure_reason.startswith(char * 10)
    assert back.failure_reason.endswith("...")


def test_metrics_stay_when_only_the_text_is_too_long() -> None:
    report = AgentReport(
        outcome="Completed",
        failure_reason="é" * FAILURE_REASON_LIMIT,
        agent_error="é" * FAILURE_REASON_LIMIT,
        final_metrics={"validation:auc": 0.91},
    )
    back = AgentReport.from_message(report.to_message())
    assert back.final_metrics == {"validation:auc": 0.91}


def config_json(**extra: object) -> str:
    return json.dumps(
        {
            "jobName": "j",
            "hosts": ["algo-1"],
            "outputPath": "s3://bucket/out",
            "channels": [{"name": "train", "uri": "s3://bucket/train/"}],
            **extra,
        }
    )


def test_an_older_agent_ignores_what_a_newer_operator_adds_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = config_json(
        channels=[{"name": "train", "uri": "s3://bucket/train/", "shuffleConfig": {"seed": 1}}],
        storage={"region": "eu-west-1", "kmsKeyId": "k"},
        profiler={"enabled": True},
    )
    with caplog.at_level(logging.WARNING, logger="kubemaker_runtime.protocol"):
        config = AgentConfig.model_validate_json(text)
    assert (config.job_name, config.hosts, config.output_path) == (
        "j",
        ["algo-1"],
        "s3://bucket/out",
    )
    assert config.channels[0].uri == "s3://bucket/train/"
    assert config.storage.region == "eu-west-1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "AgentConfig: ignoring fields this version does not know: profiler",
        "ChannelConfig: ignoring fields this version does not know: shuffleConfig",
        "StorageConfig: ignoring fields this version does not know: kmsKeyId",
    ]


def test_a_newer_agent_reads_an_older_operators_config() -> None:
    config = AgentConfig.model_validate_json(
        '{"jobName":"j","hosts":["a"],"outputPath":"file:///o"}'
    )
    assert config.channels == [] and config.checkpoint is None
    assert config.storage.pvc_root == "/kubemaker/pvc"


def test_building_in_python_still_refuses_a_misspelt_field() -> None:
    with pytest.raises(ValidationError, match="simulated"):
        AgentReport.model_validate({"outcome": "Completed", "simulated": True})
    with pytest.raises(ValidationError, match="outputPth"):
        AgentConfig.model_validate({"jobName": "j", "hosts": ["a"], "outputPth": "x"})
