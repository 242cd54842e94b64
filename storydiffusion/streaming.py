"""Run a generation in a worker thread and hand its progress out as a stream of events.

Web UIs consume generators; the pipeline works with callbacks. This bridges the two, once, in the
library: each finished panel and each step become events, a cancel event stops the run between
steps, and the run's result or error always arrives last.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .results import PanelImage, Progress, StoryResult


@dataclass
class PanelDone:
    panel: PanelImage


@dataclass
class StepDone:
    progress: Progress


@dataclass
class RunFinished:
    result: StoryResult


@dataclass
class RunFailed:
    error: BaseException


@dataclass
class CallFinished:
    value: Any


Event = PanelDone | StepDone | RunFinished | RunFailed


def stream_generation(run: Callable[..., StoryResult], cancel: threading.Event, **kwargs: Any) -> Iterator[Event]:
    """Call ``run(callback=..., on_panel=..., cancel=cancel, **kwargs)`` in a thread; yield its events.

    If the consumer stops iterating (a closed browser tab), the run is cancelled so the GPU is freed.
    """

    def work(put: Callable[[Event], None]) -> None:
        try:
            put(
                RunFinished(
                    run(
                        callback=lambda progress: put(StepDone(progress)),
                        on_panel=lambda panel: put(PanelDone(panel)),
                        cancel=cancel,
                        **kwargs,
                    )
                )
            )
        except BaseException as error:  # handed to the consumer, who decides how to show it
            put(RunFailed(error))

    yield from _events_of(work, "storydiffusion-run", stop=cancel.set)


def stream_call(
    call: Callable[[Callable[[Any], None]], Any], stop: Callable[[], Any]
) -> Iterator[StepDone | CallFinished]:
    """Call ``call(callback)`` in a thread: a ``StepDone`` for each value it hands its callback, then its
    return value in a ``CallFinished`` (its exception is raised here instead).

    For work that takes a callback but no stream (one panel redrawn, a clip): a web UI that yields at
    each step learns between two steps that its client is gone and stops iterating; ``stop()`` then asks
    the call to end after its current step, and closing waits for that, so the device is free once the
    stream is closed.
    """

    def work(put: Callable[[Any], None]) -> None:
        try:
            put(CallFinished(call(lambda step: put(StepDone(step)))))
        except BaseException as error:  # raised again in the consumer's thread
            put(RunFailed(error))

    for event in _events_of(work, "storydiffusion-call", stop=stop):
        if isinstance(event, RunFailed):
            raise event.error
        yield event


def _events_of(work: Callable[[Callable[[Any], None]], None], name: str, stop: Callable[[], Any]) -> Iterator[Any]:
    """Run ``work(put)`` in a thread and yield what it puts, up to its last event (finished or failed); a
    consumer that stops early calls ``stop()`` and waits for the thread, so nothing runs on once it is closed."""
    events: queue.Queue = queue.Queue()
    worker = threading.Thread(target=work, args=(events.put,), name=name, daemon=True)
    worker.start()
    try:
        while True:
            event = events.get()
            yield event
            if isinstance(event, (RunFinished, RunFailed, CallFinished)):
                return
    finally:
        if worker.is_alive():
            stop()
            worker.join()
