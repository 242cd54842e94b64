"""Typed errors whose messages a user can act on; the CLI and UI turn them into exit code 2 / gr.Error."""

from collections.abc import Iterator
from contextlib import contextmanager


class StoryDiffusionError(Exception):
    """Base class: every message names the problem and the fix."""


class StoryError(StoryDiffusionError, ValueError):
    """A story file or story text is invalid. ``line`` is 1-based when the problem sits on one line."""

    def __init__(self, message: str, line: int | None = None):
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


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
