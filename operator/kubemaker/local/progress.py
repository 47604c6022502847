"""The progress display of a local run: phase, elapsed time and metrics, live.

On a terminal a status line stays at the bottom of the screen (redrawn below every log
line and once a second); elsewhere (CI, a file) each phase change is a line of its own,
with a heartbeat every 30 s. The algorithm's log goes to stdout, the display and
kubemaker's own messages to stderr. Every write goes through one lock: several hosts
log from their own threads.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TextIO

HEARTBEAT_SECONDS = 30.0
_CLEAR_LINE = "\r\x1b[2K"


def format_duration(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_metrics(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{name}={value:.6g}" for name, value in sorted(metrics.items()))


class Display:
    def __init__(
        self,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = self.err.isatty() if live is None else live
        self.clock = clock
        self.started = clock()
        self.phase: str | None = None
        self.phase_started = self.started
        # (phase, seconds) of every phase left so far, in order.
        self.phase_times: list[tuple[str, float]] = []
        self.metrics: dict[str, float] = {}
        self._lock = threading.Lock()
        self._status_shown = False
        self._last_heartbeat = self.started

    # --- state ----------------------------------------------------------------------------

    def set_phase(self, phase: str) -> None:
        with self._lock:
            now = self.clock()
            if self.phase is not None:
                self.phase_times.append((self.phase, now - self.phase_started))
            self.phase = phase
            self.phase_started = now
            self._last_heartbeat = now
            if not self.live:
                self._write(self.err, f"kubemaker: {phase} ({format_duration(now - self.started)})")
            self._redraw()

    def end_phase(self) -> None:
        """Close the current phase (its time goes to ``phase_times``) and the status line."""
        with self._lock:
            if self.phase is not None:
                self.phase_times.append((self.phase, self.clock() - self.phase_started))
                self.phase = None
            self._clear()

    def update_metrics(self, found: Mapping[str, float]) -> None:
        if not found:
            return
        with self._lock:
            self.metrics.update(found)
            self._redraw()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    # --- output ---------------------------------------------------------------------------

    def log_line(self, text: str, prefix: str = "") -> None:
        """A line of the algorithm's log."""
        with self._lock:
            self._write(self.out, f"{prefix}{text}")

    def note(self, text: str) -> None:
        """A message of kubemaker's own."""
        with self._lock:
            self._write(self.err, text)

    def tick(self) -> None:
        """Refresh the elapsed time (live) or print a heartbeat now and then (not live)."""
        with self._lock:
            now = self.clock()
            if self.live:
                self._redraw()
            elif self.phase and now - self._last_heartbeat >= HEARTBEAT_SECONDS:
                self._last_heartbeat = now
                self._write(self.err, f"kubemaker: {self._status_text(now)}")

    # --- internals (the lock is held) -----------------------------------------------------

    def _status_text(self, now: float) -> str:
        text = (
            f"{self.phase} {format_duration(now - self.phase_started)}"
            f" (total {format_duration(now - self.started)})"
        )
        if self.metrics:
            text += f"  {format_metrics(self.metrics)}"
        return text

    def _write(self, stream: TextIO, text: str) -> None:
        self._clear()
        stream.write(text + "\n")
        stream.flush()
        self._redraw()

    def _clear(self) -> None:
        if self._status_shown:
            self.err.write(_CLEAR_LINE)
            self.err.flush()
            self._status_shown = False

    def _redraw(self) -> None:
        if not self.live or self.phase is None:
            return
        width = shutil.get_terminal_size((100, 24)).columns
        text = f"[{self._status_text(self.clock())}]"
        if len(text) > width - 1:
            text = text[: max(0, width - 2)] + "]"
        self.err.write(_CLEAR_LINE + text)
        self.err.flush()
        self._status_shown = True


class DisplayHandler(logging.Handler):
    """Log records of kubemaker and the agent, written above the status line."""

    def __init__(self, display: Display) -> None:
        super().__init__()
        self.display = display

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.display.note(self.format(record))
        except Exception:  # a broken stream must not break the run
            self.handleError(record)
