"""Every failure of a studio action reaches the page as one readable message."""

import inspect

import gradio as gr
import pytest

from storydiffusion.errors import SettingsError, StoryDiffusionError
from storydiffusion.studio_errors import OUT_OF_MEMORY_MESSAGE, page_message, shown_on_page, without_server_paths


def test_page_messages():
    assert page_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")) == OUT_OF_MEMORY_MESSAGE
    assert page_message(SettingsError("steps must be 1..1000, got 0")) == "steps must be 1..1000, got 0"
    assert page_message(KeyError("x")) == "Something went wrong: KeyError: 'x'"


def test_a_plain_handler_raises_gr_error_with_the_message():
    @shown_on_page
    def handler(value):
        raise SettingsError(f"bad {value}")

    with pytest.raises(gr.Error) as raised:
        handler(3)
    assert raised.value.message == "bad 3" and raised.value.__cause__ is None


def test_a_streaming_handler_stays_a_generator_and_keeps_its_progress_parameter():
    @shown_on_page
    def handler(state, *numbers, progress=gr.Progress()):
        yield "first"
        raise MemoryError()

    assert inspect.isgeneratorfunction(handler)
    assert "progress" in inspect.signature(handler).parameters
    stream = handler(1)
    assert next(stream) == "first"
    with pytest.raises(gr.Error) as raised:
        next(stream)
    assert raised.value.message == OUT_OF_MEMORY_MESSAGE


def test_gr_error_and_results_pass_through_unchanged():
    original = gr.Error("already readable")

    @shown_on_page
    def failing():
        raise original

    @shown_on_page
    def working(a, b=2):
        return a + b

    with pytest.raises(gr.Error) as raised:
        failing()
    assert raised.value is original
    assert working(1) == 3


def test_closing_a_stream_is_not_an_error():
    closed = []

    @shown_on_page
    def handler():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    stream = handler()
    next(stream)
    stream.close()
    assert closed == [True]


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("could not read identity bank /tmp/abc/run/bank.safetensors: bad", "bank.safetensors: bad"),
        ("'/srv/models/x.safetensors' is missing", "'x.safetensors' is missing"),
        ("file C:\\Users\\me\\a.png is truncated", "a.png is truncated"),
        ("~/models/sdxl is not a model", "sdxl is not a model"),
    ],
)
def test_messages_on_the_page_never_show_a_server_path(message, shown):
    for error in (StoryDiffusionError(message), RuntimeError(message)):
        assert shown in page_message(error)
        assert "/tmp" not in page_message(error) and "/srv" not in page_message(error)
        assert "Users" not in page_message(error) and "~" not in page_message(error)


def test_hub_ids_urls_and_relative_names_stay_as_they_are():
    text = "stabilityai/sdxl-base at https://huggingface.co/x/y, panels/panel_001.png, 1/2"
    assert without_server_paths(text) == text


def test_the_escapes_of_control_characters_are_not_taken_for_a_windows_path():
    """A value an API client sent holding control characters is quoted by its escapes: shown whole, never cut
    to "'t'" as if '\\x1b[31mX\\x07\\r\\n\\t' were a folder."""
    for value in ("\x00\x1b[31mX\x07\r\n\t", "\u202eevil\u2066"):
        message = f"Style: {value!r} is not one of none, comic"
        assert without_server_paths(message) == message
    assert without_server_paths("'C:\\\\Users\\\\me\\\\a.png' and \\\\share\\x\\b.png") == "'a.png' and b.png"


def test_a_users_own_text_with_a_slash_is_quoted_as_typed():
    text = "character name '/x' contains '/': use letters; style '/' or /x is not one of"
    assert without_server_paths(text) == text


def test_the_pages_door_shows_a_failure_on_the_status_line_and_keeps_every_other_output():
    from storydiffusion.studio_errors import in_status_line

    def plain(value):
        if value < 0:
            raise SettingsError(f"Steps: {value} is below 1; read /srv/app/models/x.json")
        return "kept", f"{value} steps"

    def streaming(value, progress=gr.Progress()):
        yield "panel 1", "1 of 2 panels done"
        raise StoryDiffusionError("Width must be a multiple of 8")

    door = in_status_line(plain, 1, 2)
    assert door(3) == ("kept", "3 steps")
    shown, status = door(-2)
    assert shown == gr.skip() and status == "⚠ Steps: -2 is below 1; read x.json"
    stream = in_status_line(streaming, 1, 2)
    assert inspect.isgeneratorfunction(stream) and "progress" in inspect.signature(stream).parameters
    assert list(stream(0)) == [("panel 1", "1 of 2 panels done"), (gr.skip(), "⚠ Width must be a multiple of 8")]


def test_an_unexpected_failure_is_logged_for_the_operator_and_told_plainly(caplog):
    from storydiffusion.studio_errors import in_status_line

    def broken():
        raise KeyError("x")

    assert in_status_line(broken, 0, 1)() == "⚠ Something went wrong: KeyError: 'x'"
    assert "unexpected failure in broken" in caplog.text


def test_an_unexpected_failure_through_the_api_is_logged_with_the_lines_where_it_happened(caplog):
    def deep_inside():
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    @shown_on_page
    def handler():
        deep_inside()

    with pytest.raises(gr.Error):
        handler()
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1 and logged[0].exc_info[0] is UnicodeEncodeError
    assert "deep_inside" in caplog.text  # the operator sees where it broke, not only the wrapper's lines
    caplog.clear()
    with pytest.raises(gr.Error):
        shown_on_page(lambda: (_ for _ in ()).throw(SettingsError("steps: 0 is too few")))()
    assert not [record for record in caplog.records if record.exc_info]  # a refusal is no failure to log
