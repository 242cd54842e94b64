"""Runs share a loaded pipeline; changing the pipeline itself (loading an adapter into its UNet) waits
until no run is under way, and runs wait while it changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RunGate:
    """Many runs at once, or one change of the shared pipeline alone."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._runs = 0
        self._changing = False

    @contextmanager
    def run(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._changing)
            self._runs += 1
        try:
            yield
        finally:
            with self._condition:
                self._runs -= 1
                self._condition.notify_all()

    @contextmanager
    def change(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._changing)
            self._changing = True
            self._condition.wait_for(lambda: self._runs == 0)
        try:
            yield
        finally:
            with self._condition:
                self._changing = False
                self._condition.notify_all()
