"""What was lettered: every box, line and font size drawn in a cell, so layout checks and tests can verify it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .geometry import Box, Point

__all__ = ["Bubble", "LetteringReport", "TextBlock"]


@dataclass(frozen=True)
class TextBlock:
    """A caption or title as drawn: its box, the lines actually written, the font size used, the
    bounding box of the ink of the text, and whether the text had to be cut short."""

    text: str
    lines: tuple[str, ...]
    box: Box
    text_box: Box | None
    font_size: int
    truncated: bool


@dataclass(frozen=True)
class Bubble:
    """One speech bubble as drawn: ``box`` is the body (ellipse or rounded rectangle), ``tail`` the
    triangle (two base points inside the body, then the tip), ``order`` its index in the dialogue."""

    speaker: str
    text: str
    lines: tuple[str, ...]
    box: Box
    shape: Literal["ellipse", "rounded"]
    tail: tuple[Point, Point, Point]
    tail_box: Box
    text_box: Box | None
    font_size: int
    truncated: bool
    order: int


@dataclass
class LetteringReport:
    """What was lettered in one cell (or title band), for layout checks and tests."""

    cell: Box
    caption: TextBlock | None = None
    bubbles: list[Bubble] = field(default_factory=list)
    title: TextBlock | None = None
    dropped: list[tuple[str, str]] = field(default_factory=list)
    caption_dropped: bool = False
    title_dropped: bool = False
    missing_characters: frozenset[str] = frozenset()
    direction: str = "ltr"

    @property
    def truncated(self) -> bool:
        """Whether any text was cut short or left out for lack of space."""
        parts = [self.caption, self.title, *self.bubbles]
        left_out = self.dropped or self.caption_dropped or self.title_dropped
        return bool(left_out or any(p is not None and p.truncated for p in parts))

    @property
    def font_sizes(self) -> dict[str, int]:
        """Font size per element ("caption", "title", "bubble 0", ...)."""
        sizes = {f"bubble {b.order}": b.font_size for b in self.bubbles}
        if self.caption is not None:
            sizes["caption"] = self.caption.font_size
        if self.title is not None:
            sizes["title"] = self.title.font_size
        return sizes

    def boxes(self) -> list[Box]:
        """Every box drawn: caption, bubble bodies and their tails, title."""
        out: list[Box] = []
        if self.caption is not None:
            out.append(self.caption.box)
        for b in self.bubbles:
            out += [b.box, b.tail_box]
        if self.title is not None:
            out.append(self.title.box)
        return out
