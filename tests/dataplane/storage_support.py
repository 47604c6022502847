"""S3 in the data-plane tests: what a boto3 client sends.

A plain module (not a test module): the tests import it by name, because pytest puts
this directory on ``sys.path``.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class Requests:
    """The S3 requests a store's client sends (every attempt), and the most in flight."""

    def __init__(self, client: Any) -> None:
        self.sent: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        client.meta.events.register("before-send.s3", self._before_send)
        client.meta.events.register("after-call.s3", self._after_call)
        client.meta.events.register("after-call-error.s3", self._after_call)

    def _before_send(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.sent[event_name.rsplit(".", 1)[-1]] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _after_call(self, **_: Any) -> None:
        with self._lock:
            self.in_flight -= 1
