"""Streaming a run as events: order, cancellation, errors, abandoned consumers."""

import threading

from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.streaming import PanelDone, RunFailed, RunFinished, StepDone, stream_generation


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
