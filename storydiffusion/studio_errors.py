"""Every failure of a studio action reaches people as one readable message, never a traceback.

Each action has two doors (:func:`action`): on the page a failure becomes the status line's text
(:func:`in_status_line`); through the API it is raised as a ``gr.Error`` (:func:`shown_on_page`). The
mapping from the library's typed errors to what a user reads lives here, once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import StoryDiffusionError, is_out_of_memory
from .studio_text import plain_markdown

OUT_OF_MEMORY_MESSAGE = (
    "Out of GPU memory. Lower the width and height, the window (panels per batch) or the identity "
    "images, or start the app with a smaller model. The panels already made are kept."
)

Handler = TypeVar("Handler", bound=Callable[..., Any])


# An absolute path (POSIX, home, or Windows with its drive letter or a share's \\server) of a folder and at
# least one name in it, which tells where things lie on the server; not the tail of a relative one, a hub
# id, a URL, a user's one-part text such as a character named "/x" or the character "/" (which a message
# quotes as typed), nor the escapes a message writes for control characters ('\x1b[31m\r\n').
_SERVER_PATH = re.compile(r"(?<![\w.:/\\~-])(?:~?/|[A-Za-z]:[\\/]+|\\\\)[^\s'\"`<>|/\\]+[\\/]+[^\s'\"`<>|]*")


def without_server_paths(message: str) -> str:
    """``message`` with every absolute path cut to its last part, so a page never shows the server's folders."""

    def last_part(match: re.Match[str]) -> str:
        path = match.group(0).rstrip(".,;:)]}")
        tail = match.group(0)[len(path) :]
        name = re.split(r"[\\/]", path.rstrip("/\\"))[-1]
        return (name or "…") + tail

    return _SERVER_PATH.sub(last_part, message)


def page_message(error: BaseException) -> str:
    """What the page says about ``error``: the library's own message, or a short note on the unexpected.

    Either way without server paths: a message may name a file, never where it lies on the server.
    """
    if is_out_of_memory(error):
        return OUT_OF_MEMORY_MESSAGE
    if isinstance(error, StoryDiffusionError):
        return without_server_paths(str(error))
    return without_server_paths(f"Something went wrong: {type(error).__name__}: {error}")


def page_error(error: Exception) -> Exception:
    """The ``gr.Error`` for ``error``; the server log keeps the traceback of unexpected errors only, where it
    was raised (the ``gr.Error`` raised in its place would show only this module's lines)."""
    import gradio as gr

    if isinstance(error, gr.Error):
        return error
    if not (isinstance(error, StoryDiffusionError) or is_out_of_memory(error)):
        logging.getLogger(__name__).error("unexpected failure", exc_info=error)
    return gr.Error(page_message(error), print_exception=False)


def shown_on_page(handler: Handler) -> Handler:
    """Wrap a Gradio event handler so any exception it raises becomes a ``gr.Error`` with a readable message.

    Generator handlers stay generator functions (Gradio streams only those), and the wrapper keeps the
    signature, so a ``progress=gr.Progress()`` parameter is still found.
    """

    def raised(error: Exception):
        raise page_error(error) from None

    return _on_failure(handler, raised)


UPLOAD_PROBLEMS = "uploads cannot be used"  # the heading of a refusal of several uploads, listed


def failure_line(error: BaseException) -> str:
    """The status line after a failed action: a warning sign and the message, in the studio's words."""
    problems = getattr(error, "problems", None)  # several files wrong at once: a list, one file a line
    if isinstance(problems, list) and len(problems) > 1:
        items = "\n".join(f"- {plain_markdown(without_server_paths(str(problem)))}" for problem in problems)
        return f"⚠ {len(problems)} {UPLOAD_PROBLEMS}:\n\n{items}"
    message = getattr(error, "message", None)
    shown_text = without_server_paths(str(message)) if isinstance(message, str) else page_message(error)
    return f"⚠ {plain_markdown(shown_text)}"


def in_status_line(handler: Handler, status_position: int, outputs: int) -> Handler:
    """The page's door to an action: a failure becomes the text of the status line next to the buttons,
    and every other output keeps what the page shows (no toast, no red badges over finished work).

    API clients use the action's other door, which raises the same message as an error (``shown_on_page``).
    """
    import gradio as gr

    def failed(error: Exception):
        if not (isinstance(error, (StoryDiffusionError, gr.Error)) or is_out_of_memory(error)):
            logging.getLogger(__name__).exception("unexpected failure in %s", handler.__name__)
        values = tuple(failure_line(error) if i == status_position else gr.skip() for i in range(outputs))
        return values if outputs > 1 else values[0]

    return _on_failure(handler, failed)


def _on_failure(handler: Handler, failed: Callable[[Exception], Any]) -> Handler:
    """``handler`` (a generator function stays one) with ``failed(error)`` deciding what a failure becomes:
    it raises, or it gives the last value the page receives."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming(*args: Any, **kwargs: Any):
            try:
                yield from handler(*args, **kwargs)
            except Exception as error:
                yield failed(error)

        return streaming  # type: ignore[return-value]

    @functools.wraps(handler)
    def plain(*args: Any, **kwargs: Any):
        try:
            return handler(*args, **kwargs)
        except Exception as error:
            return failed(error)

    return plain  # type: ignore[return-value]


def action(page_event, fn, inputs: list, outputs: list, *, status, api_name: str, api_door, **options):
    """Register one studio action through two doors, and return the page's event for its follow-ups.

    The page's door shows a failure as the text of the status line next to the buttons, leaving the
    rest of the page as it was (``in_status_line``); the API endpoint ``api_name``, on a hidden button
    nobody clicks, raises the same message to the client (``shown_on_page``). Both take raw values.
    """
    options = {"preprocess": False, **options}
    api_door.click(shown_on_page(fn), inputs, outputs, api_name=api_name, **options)
    page_outputs = outputs if status in outputs else [*outputs, status]
    page_fn = in_status_line(
        fn if status in outputs else _keeping_status(fn), page_outputs.index(status), len(page_outputs)
    )
    return page_event(page_fn, inputs, page_outputs, api_visibility="private", show_progress_on=[status], **options)


def _keeping_status(fn):
    """``fn`` with one more output, the status line, left as it is when ``fn`` succeeds."""

    from gradio import skip

    def kept(result):
        return (*result, skip()) if isinstance(result, tuple) else (result, skip())

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming_with_status(*args, **kwargs):
            for result in fn(*args, **kwargs):
                yield kept(result)

        return streaming_with_status

    @functools.wraps(fn)
    def with_status(*args, **kwargs):
        return kept(fn(*args, **kwargs))

    return with_status
