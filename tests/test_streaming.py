"""Streaming a run as events: order, cancellation, errors, abandoned consumers."""

import threading

import pytest

from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.streaming import (
    CallFinished,
    PanelDone,
    RunFailed,
    RunFinished,
    StepDone,
    stream_call,
    stream_generation,
)


def story():
    settings = GenerationSettings(style="none", id_images=1, window=2, steps=2)
    return story_from_text("[Bob] a man in a red coat", "[Bob] walks\n[Bob] sits\n[Bob] eats", settings=settings)


def test_events_arrive_in_order_and_end_with_the_result(tiny_sdxl):
    events = list(stream_generation(tiny_sdxl.generate, threading.Event(), story=story()))
    kinds = [type(e) for e in events]
    assert kinds[-1] is RunFinished and kinds.count(PanelDone) == 3 and StepDone in kinds
    assert [e.panel.index for e in events if isinstance(e, PanelDone)] == [0, 1, 2]
    assert len(events[-1].result.panels) == 3


def test_cancel_from_the_consumer_keeps_finished_panels(tiny_sdxl):
    cancel = threading.Event()
    events = []
    for event in stream_generation(tiny_sdxl.generate, cancel, story=story()):
        events.append(event)
        if isinstance(event, PanelDone):
            cancel.set()
    assert events[-1].result.cancelled
    assert 1 <= len(events[-1].result.panels) < 3


def test_errors_are_delivered_as_the_last_event():
    def broken(**kwargs):
        raise ValueError("boom")

    events = list(stream_generation(broken, threading.Event()))
    assert len(events) == 1 and isinstance(events[0], RunFailed) and str(events[0].error) == "boom"


def test_an_abandoned_stream_cancels_the_run(tiny_sdxl):
    cancel = threading.Event()
    stream = stream_generation(tiny_sdxl.generate, cancel, story=story())
    next(stream)
    stream.close()
    assert cancel.is_set()


def counting(steps: int, stopped: threading.Event, done: list):
    """A call that reports ``steps`` steps unless stopped between two of them; ``done`` records its end."""

    def call(callback):
        for step in range(steps):
            if stopped.is_set():
                done.append("stopped")
                return None
            callback(step)
            stopped.wait(0.01)
        done.append("finished")
        return "result"

    return call


def test_a_call_streams_each_step_then_its_value():
    stopped, done = threading.Event(), []
    events = list(stream_call(counting(3, stopped, done), stop=stopped.set))
    assert [e.progress for e in events[:-1]] == [0, 1, 2] and all(isinstance(e, StepDone) for e in events[:-1])
    assert isinstance(events[-1], CallFinished) and events[-1].value == "result"
    assert done == ["finished"] and not stopped.is_set()  # nothing to stop once it ended


def test_a_call_abandoned_between_steps_is_stopped_and_over_once_the_stream_closes():
    """A closed browser tab: the page's handler stops iterating; the device must be free when it returns."""
    stopped, done = threading.Event(), []
    stream = stream_call(counting(10_000, stopped, done), stop=stopped.set)
    assert isinstance(next(stream), StepDone)
    stream.close()
    assert stopped.is_set() and done == ["stopped"]  # stopped, and already over: the worker was waited for


def test_a_call_that_fails_raises_its_own_error_in_the_consumer():
    def broken(callback):
        callback(0)
        raise ValueError("boom")

    stream = stream_call(broken, stop=lambda: None)
    assert isinstance(next(stream), StepDone)
    with pytest.raises(ValueError, match="boom"):
        next(stream)
