"""The order in which a line of mixed Hebrew, Arabic and Latin text is drawn, left to right.

Text is stored in reading (logical) order; a Hebrew or Arabic word is read right to left, a Latin word
or a number inside it left to right. This module gives each character its embedding level by a subset
of the Unicode Bidirectional Algorithm (UAX #9) that covers plain lettering: the paragraph's direction
from its first strong letter (rule P2), marks taking the class of what they follow (W1), separators and
signs joining the numbers around them (W4, W5), numbers after Latin letters read as Latin (W7), neutral
characters taking the direction of the letters around them or else the paragraph's (N1, N2), and levels
(I1, I2). Explicit embedding controls are not used by captions and count as neutral characters.

A line is then cut into runs of one level, put in drawing order (rule L2); each right-to-left run keeps
its characters in reading order, so the shaping engine (libraqm, through Pillow) joins Arabic letters
and mirrors brackets as it lays the run out right to left.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["RIGHT_TO_LEFT_MARK", "DirectionalRun", "drawing_order", "is_right_to_left", "paragraph_direction"]

#: Invisible, of the right-to-left class: put before a line, it makes the line's direction right to left.
RIGHT_TO_LEFT_MARK = "\u200f"

_RTL = ("R", "AL")
# The blocks where right-to-left letters are (Hebrew to Arabic Extended, their presentation forms, the
# right-to-left mark, the historic scripts of the SMP): a quick test before any character is classified.
_RIGHT_TO_LEFT_BLOCKS = re.compile(
    "[\u0590-\u08ff\u200f\ufb1d-\ufdff\ufe70-\ufefc\U00010800-\U00010fff\U0001e800-\U0001efff]"
)
_NUMBER = ("EN", "AN")


@dataclass(frozen=True)
class DirectionalRun:
    """Characters of one embedding level, in reading order; ``rtl``: drawn right to left."""

    text: str
    rtl: bool


def paragraph_direction(text: str) -> str:
    """``"rtl"`` when the first strong letter is Hebrew or Arabic, else ``"ltr"`` (rule P2)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind == "L":
            return "ltr"
        if kind in _RTL:
            return "rtl"
    return "ltr"


def is_right_to_left(text: str) -> bool:
    """Whether ``text`` holds any Hebrew or Arabic letter (so its order needs resolving at all)."""
    return _RIGHT_TO_LEFT_BLOCKS.search(text) is not None and any(unicodedata.bidirectional(c) in _RTL for c in text)


def drawing_order(line: str, direction: str | None = None) -> list[DirectionalRun]:
    """``line`` as runs in the order they are drawn from left to right. A line without Hebrew or Arabic
    letters is one left-to-right run, as it is written."""
    if not line:
        return []
    if not is_right_to_left(line):
        return [DirectionalRun(line, False)]
    base = direction or paragraph_direction(line)
    levels = _levels(line, 1 if base == "rtl" else 0)
    runs: list[tuple[int, str]] = []
    start = 0
    for i in range(1, len(line) + 1):
        if i == len(line) or levels[i] != levels[start]:
            runs.append((levels[start], line[start:i]))
            start = i
    for level in range(max(level for level, _ in runs), 0, -1):  # rule L2, run by run
        runs = _reverse_from(runs, level)
    return [DirectionalRun(text, level % 2 == 1) for level, text in runs]


def _reverse_from(runs: list[tuple[int, str]], level: int) -> list[tuple[int, str]]:
    """Every stretch of runs at ``level`` or above put in reverse order."""
    out: list[tuple[int, str]] = []
    stretch: list[tuple[int, str]] = []
    for run in runs:
        if run[0] >= level:
            stretch.append(run)
            continue
        out.extend(reversed(stretch))
        stretch = []
        out.append(run)
    out.extend(reversed(stretch))
    return out


def _levels(line: str, base: int) -> list[int]:
    """The embedding level of each character of ``line`` in a paragraph of level ``base``."""
    kinds = _weak_types_resolved(line, "R" if base else "L")
    strong = ["R" if kind in (*_RTL, *_NUMBER) else "L" if kind == "L" else None for kind in kinds]
    edge = "R" if base else "L"
    i = 0
    while i < len(strong):  # rules N1 and N2: a stretch of neutrals between two strong types
        if strong[i] is not None:
            i += 1
            continue
        end = i
        while end < len(strong) and strong[end] is None:
            end += 1
        before = strong[i - 1] if i > 0 else edge
        after = strong[end] if end < len(strong) else edge
        fill = before if before == after else edge
        strong[i:end] = [fill] * (end - i)
        i = end
    levels = []
    for kind, direction in zip(kinds, strong):
        number = kind in _NUMBER
        if base == 0:  # rule I1
            levels.append(2 if number else 1 if direction == "R" else 0)
        else:  # rule I2
            levels.append(2 if number or direction == "L" else 1)
    return levels


def _weak_types_resolved(line: str, start: str) -> list[str]:
    """Bidi classes with marks, separators, signs and European numbers resolved (rules W1 to W7)."""
    kinds = [unicodedata.bidirectional(char) or "ON" for char in line]
    previous = start
    for i, kind in enumerate(kinds):  # W1: a mark takes the class of what it follows
        if kind == "NSM":
            kinds[i] = previous
        previous = kinds[i]
    last_strong = start
    for i, kind in enumerate(kinds):  # W2 and W3: numbers after Arabic letters are Arabic numbers
        if kind in ("L", "R", "AL"):
            last_strong = kind
        elif kind == "EN" and last_strong == "AL":
            kinds[i] = "AN"
    kinds = ["R" if kind == "AL" else kind for kind in kinds]
    for i in range(1, len(kinds) - 1):  # W4: one separator between two numbers of a kind joins them
        before, after = kinds[i - 1], kinds[i + 1]
        if kinds[i] in ("ES", "CS") and before == after == "EN" or kinds[i] == "CS" and before == after == "AN":
            kinds[i] = before
    for i, kind in enumerate(kinds):  # W5: currency and percent signs next to a European number
        if kind == "ET" and _next_to(kinds, i, "EN", "ET"):
            kinds[i] = "EN"
    kinds = ["ON" if kind in ("ES", "ET", "CS") else kind for kind in kinds]  # W6
    last_strong = start
    for i, kind in enumerate(kinds):  # W7: a European number after Latin letters is read as Latin
        if kind in ("L", "R"):
            last_strong = kind
        elif kind == "EN" and last_strong == "L":
            kinds[i] = "L"
    return kinds


def _next_to(kinds: list[str], i: int, wanted: str, through: str) -> bool:
    """Whether ``kinds[i]`` reaches a ``wanted`` class across neighbours of class ``through``."""
    for step in (-1, 1):
        j = i + step
        while 0 <= j < len(kinds) and kinds[j] == through:
            j += step
        if 0 <= j < len(kinds) and kinds[j] == wanted:
            return True
    return False
