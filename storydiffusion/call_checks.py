"""The arguments of ``StoryPipeline.generate`` checked at the library's door: a caller's wrong type or
index is named there, in the library's words, not found later as a traceback from inside a step."""

from __future__ import annotations

from typing import Any

from .bank import IdentityBank
from .errors import StoryDiffusionError, shown
from .settings import GenerationSettings
from .story import Story

BANK_STORAGES = ("auto", "device", "cpu")  # auto: host memory (pinned on a GPU), moved a layer at a time


def check_generate_call(
    story: Any,
    settings: Any,
    panels: Any,
    bank: Any,
    bank_storage: Any,
    bank_memory: Any,
    callbacks: dict[str, Any],
) -> list[int] | None:
    """Raise StoryDiffusionError naming the first argument of the wrong kind; returns ``panels`` as a list
    of plain ints (numpy's too), each a 0-based index of the story's panels."""
    if not isinstance(story, Story):
        raise StoryDiffusionError(
            f"story must be a Story (load_story, story_from_text or Story.from_dict), not {type(story).__name__}"
        )
    if settings is not None and not isinstance(settings, GenerationSettings):
        raise StoryDiffusionError(
            f"settings must be GenerationSettings (GenerationSettings.from_dict for a mapping) or None, "
            f"not {type(settings).__name__}"
        )
    if bank is not None and not isinstance(bank, IdentityBank):
        raise StoryDiffusionError(
            f"bank must be an IdentityBank (a result's .bank, or IdentityBank.load), not {type(bank).__name__}"
        )
    if bank_storage not in BANK_STORAGES:
        raise StoryDiffusionError(f"bank_storage must be one of {', '.join(BANK_STORAGES)}, not {shown(bank_storage)}")
    if bank_memory is not None and (
        isinstance(bank_memory, bool) or not isinstance(bank_memory, int) or bank_memory < 0
    ):
        raise StoryDiffusionError(
            f"bank_memory is a number of bytes of host memory (0 or more) or None, not {shown(bank_memory)}"
        )
    for name, function in callbacks.items():
        if function is not None and not callable(function):
            raise StoryDiffusionError(f"{name} must be a function or None, not {type(function).__name__}")
    return _panel_indexes(panels, len(story.panels))


def _panel_indexes(panels: Any, count: int) -> list[int] | None:
    """``panels``: None (all of them) or 0-based indexes; a panel number past the end is not dropped in silence."""
    if panels is None:
        return None
    if isinstance(panels, (str, bytes)) or not hasattr(panels, "__iter__"):
        raise StoryDiffusionError(f"panels must be a list of 0-based panel indexes or None, not {shown(panels)}")
    indexes = []
    for index in panels:
        number = index.__index__() if hasattr(index, "__index__") and not isinstance(index, bool) else None
        if number is None or not 0 <= number < count:
            raise StoryDiffusionError(
                f"panels: {shown(index)} is not a 0-based index of the story's {count} panels (0..{count - 1})"
            )
        indexes.append(int(number))
    return indexes
