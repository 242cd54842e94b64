"""How much drawing one request may ask of a shared studio (a share link, a Space, a public host).

The library's own ranges (``settings.SETTING_RANGES``: 1,000 steps, 4,096 pixels a side, 500 panels) are
what a person may ask of their own GPU. On a shared server one request of that size would hold the only
device for hours while everyone else waits, so the operator's limits are tighter there (``python app.py
--max-panels --max-steps --max-side``; the defaults below when the server is shared) and each request is
checked against them before it queues for the GPU. The page's sliders stop at the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import StoryDiffusionError
from .settings import SETTING_RANGES, GenerationSettings
from .story import Story

__all__ = ["LIBRARY_LIMITS", "SHARED_SERVER_LIMITS", "WorkLimits", "WorkTooLarge"]


class WorkTooLarge(StoryDiffusionError, ValueError):
    """A request asks more drawing than this server's operator allows for one request."""


# The widgets these limits bound: (setting, the page's label, the limit's field).
_BOUNDED = (("steps", "Steps", "max_steps"), ("width", "Width", "max_side"), ("height", "Height", "max_side"))


@dataclass(frozen=True)
class WorkLimits:
    """The most one request may ask: panels in a story, denoising steps per image, pixels along a side."""

    max_panels: int = 100
    max_steps: int = 100
    max_side: int = 2048

    def __post_init__(self) -> None:
        for name, setting in (("max_panels", "max_panels"), ("max_steps", "steps"), ("max_side", "width")):
            SETTING_RANGES[setting].check(name, getattr(self, name))

    def highest(self, name: str) -> float:
        """The highest value a setting's widget offers under these limits (``steps``, ``width`` ...)."""
        high = SETTING_RANGES[name].high
        field = next((field for setting, _, field in _BOUNDED if setting == name), None)
        return high if field is None else min(high, getattr(self, field))

    def noted(self, message: str) -> str:
        """A range refusal of a widget these limits bound (``Steps must be 1..1000, got -1``) with this
        server's own limit added, so that it does not promise more than the server draws."""
        for _, label, field in _BOUNDED:
            if message.startswith(label):
                return f"{message} (this shared studio allows at most {getattr(self, field):,})"
        return message

    def check(self, settings: GenerationSettings, story: Story | None = None, *, redraw: bool = False) -> None:
        """Raise WorkTooLarge naming the first widget past its limit; ``story`` for its panel count (a redraw
        draws one panel, so only its steps and size count)."""
        fix = "press Generate to draw the story again with less" if redraw else "ask for less"
        for setting, label, field in _BOUNDED:
            value, limit = getattr(settings, setting), getattr(self, field)
            if value is not None and value > limit:
                drawn = " (this story was drawn with them)" if redraw else ""
                raise WorkTooLarge(
                    f"{label}: {value:,} is more than this shared studio allows for one request (at most "
                    f"{limit:,}){drawn}: {fix}, or run the studio on your own machine for more"
                )
        if story is not None and len(story.panels) > self.max_panels:
            raise WorkTooLarge(
                f"Story: {len(story.panels):,} panels is more than this shared studio draws in one request (at "
                f"most {self.max_panels:,}): split it into several stories, or run the studio on your own machine"
            )


#: The limits of a shared server whose operator set none: a 100-panel story at SDXL's sizes.
SHARED_SERVER_LIMITS = WorkLimits()
#: The library's own ranges as limits: what a flag leaves unbounded on the operator's own machine.
LIBRARY_LIMITS = WorkLimits(
    int(SETTING_RANGES["max_panels"].high), int(SETTING_RANGES["steps"].high), int(SETTING_RANGES["width"].high)
)
