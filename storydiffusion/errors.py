"""Typed errors whose messages a user can act on; the CLI and UI turn them into exit code 2 / gr.Error."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StoryDiffusionError(Exception):
    """Base class: every message names the problem and the fix."""


class StoryError(StoryDiffusionError, ValueError):
    """A story file or story text is invalid. ``line`` is 1-based when the problem sits on one line."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


class TooManyPanels(StoryError):
    """A story longer than its ``max_panels``: the studio, which has no such setting, words it its own way."""

    def __init__(self, count: int, limit: int):
        self.count, self.limit = count, limit
        super().__init__(
            f"the story has {count} panels but max_panels is {limit}: split it into several stories or raise max_panels"
        )


class ModelError(StoryDiffusionError):
    """A model could not be found, loaded or recognised."""


class SettingsError(StoryDiffusionError, ValueError):
    """Generation settings are out of range or do not fit together."""


class BankError(StoryDiffusionError):
    """An identity bank does not match the run that wants to read it."""


class ModelOutOfMemory(StoryDiffusionError):
    """The model ran out of memory while loading or drawing: the advice is smaller settings, not other input."""


class GenerationCancelled(StoryDiffusionError):
    """Raised inside a run when the caller asked it to stop; the pipeline catches it and keeps finished panels."""


class ImageInputError(StoryDiffusionError, ValueError):
    """An image a user gave (a panel file, an upload) is broken, of an unknown kind or too large to decode."""


class ProjectError(StoryDiffusionError, ValueError):
    """An uploaded file is not a project file, is damaged, or is shaped to exhaust the disk or memory."""


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA and MPS report exhaustion as RuntimeError subclasses; the CPU as MemoryError."""
    return isinstance(error, (MemoryError, ModelOutOfMemory)) or "out of memory" in str(error).lower()


@contextmanager
def model_memory() -> Iterator[None]:
    """Around model work only: exhaustion there becomes ModelOutOfMemory, so that reading input that
    runs out of memory is never answered with advice about image sizes and batch lengths."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise ModelOutOfMemory(str(error).splitlines()[0] if str(error) else "no detail") from error


def kind_of(value: Any) -> str:
    """What a value is, in the words a user knows ("text", "a list"), for "must be X, not Y" messages."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def counted(number: int, word: str) -> str:
    """``1 panel``, ``3 panels``: a count in a message."""
    return f"{number} {word}{'' if number == 1 else 's'}"


class PromptsChanged(StoryDiffusionError, ValueError):
    """Text edits for re-typesetting that change what a panel shows; ``what`` says which, for callers that
    word the fix their own way (the MCP tools have no buttons)."""

    def __init__(self, message: str, what: str):
        super().__init__(message)
        self.what = what


def shown(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: its repr, cut short so that a huge value keeps the message one line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters written out"
    return f"{text[:limit]}... ({size})"


def wrong_kind(path: str, expected: str, value: Any) -> str:
    """``title must be text, not a mapping ({'a': 1})``: the key path, what it takes, and what it got."""
    return f"{path} must be {expected}, not {kind_of(value)} ({shown(value)})"
