"""Where each character of a panel stands: named places or boxes, with optional text of their own.

A region is a box in 0..1 coordinates of the picture, ``(x0, y0, x1, y1)`` from the top left. Image
tokens inside a character's region read only that character's identity and are conditioned on its own
text; a token inside several regions belongs to the one whose centre is nearest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import StoryError, shown
from ..settings import MAX_TEXT_CHARS
from ..structured import plain_digits
from .names import TAG, is_no_character, name_index, name_key

Box = tuple[float, float, float, float]

NAMED_REGIONS: dict[str, Box] = {
    "left": (0.0, 0.0, 0.5, 1.0),
    "right": (0.5, 0.0, 1.0, 1.0),
    "center": (0.25, 0.0, 0.75, 1.0),
    "top": (0.0, 0.0, 1.0, 0.5),
    "bottom": (0.0, 0.5, 1.0, 1.0),
}
MAX_CHARACTERS_WITH_REGIONS = 4
REGION_KEYS = ("region", "prompt")
# In the text syntax a tag may carry its character's place and text: [Pip@right], [Pip@0.5,0.5,1,1: wagging].
PLACE_MARK = "@"


@dataclass(frozen=True)
class Region:
    """A character's place in a panel (``name`` when it was given by name) and its own text, if any."""

    box: Box
    prompt: str | None = None
    name: str | None = None

    def to_value(self) -> Any:
        """As a story file writes it: ``left``, ``[x0, y0, x1, y1]``, or a mapping with the prompt."""
        place: Any = self.name if self.name is not None else list(self.box)
        return place if self.prompt is None else {"region": place, "prompt": self.prompt}

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


def region_from_value(value: Any, where: str) -> Region:
    """A region as a file gives it: a name, a box of four numbers, or ``{region: ..., prompt: ...}``."""
    if isinstance(value, dict):
        unknown = sorted(str(key) for key in value if key not in REGION_KEYS)
        if unknown or "region" not in value:
            raise StoryError(
                f"{where} must be a place, or a mapping with 'region' and an optional 'prompt'"
                + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "")
            )
        prompt = value.get("prompt")
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_TEXT_CHARS):
            raise StoryError(f"{where}.prompt must be text, got {shown(prompt)}")
        place = region_from_value(value["region"], f"{where}.region")
        return Region(place.box, prompt.strip() or None if prompt is not None else None, place.name)
    if isinstance(value, str):
        name = value.strip().lower()
        if name not in NAMED_REGIONS:
            raise StoryError(
                f"{where} is {shown(value)}: name one of {', '.join(NAMED_REGIONS)}, or give a box [x0, y0, x1, y1] in 0..1"
            )
        return Region(NAMED_REGIONS[name], name=name)
    return Region(box_from_value(value, where))


def box_from_value(value: Any, where: str) -> Box:
    """Four numbers in 0..1, left < right and top < bottom."""
    numbers = value if isinstance(value, (list, tuple)) else None
    if numbers is None or len(numbers) != 4 or not all(_is_number(n) for n in numbers):
        raise StoryError(f"{where} must be a place name or a box [x0, y0, x1, y1] of four numbers, got {shown(value)}")
    x0, y0, x1, y1 = (float(n) for n in numbers)
    if not all(0.0 <= n <= 1.0 for n in (x0, y0, x1, y1)) or not (x0 < x1 and y0 < y1):
        raise StoryError(
            f"{where} is {shown(value)}: a box is [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 "
            "(fractions of the width and height, from the top left)"
        )
    return (x0, y0, x1, y1)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def region_of_token(regions: list[Region], x: float, y: float) -> int | None:
    """Which of ``regions`` holds the point (x, y) in 0..1; the nearest centre among several; None: none."""
    best, best_distance = None, math.inf
    for number, region in enumerate(regions):
        x0, y0, x1, y1 = region.box
        if x0 <= x < x1 or (x1 == 1.0 and x == 1.0):
            if y0 <= y < y1 or (y1 == 1.0 and y == 1.0):
                cx, cy = region.centre
                distance = (x - cx) ** 2 + (y - cy) ** 2
                if distance < best_distance:
                    best, best_distance = number, distance
    return best


def place_text(region: Region) -> str:
    """A region as the text syntax writes it after ``@``: ``left``, ``0.5,0,1,1``, then ``: text`` if any."""
    place = region.name if region.name is not None else ",".join(f"{n:g}" for n in region.box)
    return f"{place}: {region.prompt}" if region.prompt else place


def region_from_text(text: str, where: str) -> Region:
    """What follows ``@`` in a tag: a place name or four comma-separated numbers, then ``: text``."""
    place, has_text, prompt = text.partition(":")
    place = place.strip()
    value: Any = place
    if place and (plain_digits(place[0]) or place[0] in ".-"):
        try:
            value = [float(part) for part in place.split(",")]
        except ValueError:
            value = place
    region = region_from_value(value, where)
    return Region(region.box, prompt.strip() or None if has_text else None, region.name)


def split_placed_tags(prompt: str, label: str, line: int | None) -> tuple[str, dict[str, Region]]:
    """A prompt with ``[Name@place]`` tags -> the prompt with plain ``[Name]`` tags, and each name's region
    (by the name as written; the caller resolves it)."""
    regions: dict[str, Region] = {}

    def plain(match: Any) -> str:
        name, marked, place = match.group(1).partition(PLACE_MARK)
        if not marked:
            return match.group(0)
        if not name.strip():
            raise StoryError(f"{label}: [{match.group(1)}] places no character: write [Name{PLACE_MARK}left]", line)
        if is_no_character(name):
            raise StoryError(
                f"{label}: [{match.group(1)}] gives [NC] a place, but [NC] marks a panel without characters: "
                "write [NC] alone",
                line,
            )
        key = name_key(name)
        if key in regions:
            raise StoryError(f"{label} places [{name.strip()}] twice: give one place per character", line)
        try:
            regions[key] = region_from_text(place, f"{label}: [{match.group(1)}]")
        except StoryError as error:
            raise StoryError(str(error), line) from None
        return f"[{name.strip()}]"

    return TAG.sub(plain, prompt), regions


def placed_tags(prompt: str, regions: dict[str, Region], characters: dict[str, Any]) -> str:
    """``prompt`` with the first tag of each placed character written ``[Name@place]`` (the text syntax)."""
    index, done = name_index(characters), set()

    def marked(match: Any) -> str:
        name = index.get(name_key(match.group(1)))
        if name is None or name not in regions or name in done:
            return match.group(0)
        done.add(name)
        return f"[{match.group(1)}{PLACE_MARK}{place_text(regions[name])}]"

    return TAG.sub(marked, prompt)
