"""The progress display: a status line on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from kubemaker.local.progress import Display, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_a_status_line_below_the_log() -> None:
    out, err, clock = io.StringIO(), io.StringIO(), Clock()
    display = Display(out=out, err=err, live=True, clock=clock)
    display.set_phase("Training")
    clock.now += 12.5
    display.update_metrics({"validation:auc": 0.9123})
    display.log_line("[3]\tvalidation-auc:0.9123")

    assert out.getvalue() == "[3]\tvalidation-auc:0.9123\n"
    status = err.getvalue().split("\r\x1b[2K")
    assert status[-1] == "[Training 12.5s (total 12.5s)  validation:auc=0.9123]"
    display.end_phase()
    assert err.getvalue().endswith("\r\x1b[2K")  # the status line is gone at the end
    assert display.phase_times == [("Training", 12.5)]


def test_elsewhere_phases_are_lines_with_a_heartbeat() -> None:
    out, err, clock = io.StringIO(), io.StringIO(), Clock()
    display = Display(out=out, err=err, live=False, clock=clock)
    display.set_phase("Downloading")
    clock.now += 2
    display.set_phase("Training")
    display.update_metrics({"train:auc": 0.8})
    clock.now += 10
    display.tick()  # too soon for a heartbeat
    clock.now += 25
    display.tick()
    lines = err.getvalue().splitlines()
    assert lines == [
        "kubemaker: Downloading (0.0s)",
        "kubemaker: Training (2.0s)",
        "kubemaker: Training 35.0s (total 37.0s)  train:auc=0.8",
    ]
    assert "\x1b" not in err.getvalue()


def test_durations_read_well() -> None:
    assert format_duration(4.21) == "4.2s"
    assert format_duration(185) == "3m05s"
    assert format_duration(3720) == "1h02m"
