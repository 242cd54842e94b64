"""The size of a speech bubble before it is placed: its text wrapped to a pleasant shape, and the
ellipse or rounded rectangle around it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .fitting import cut_lines, lines_that_fit
from .fonts import FontChain
from .style import Pixels

__all__ = ["BubbleShape", "BubbleSizer", "Shape", "Speech"]

Shape = Literal["ellipse", "rounded"]

# An ellipse holds a text block about sqrt(2) times narrower than its width.
_ELLIPSE_TEXT_FACTOR = 1.42
# Ellipse height / text block height ratios tried; the smallest ellipse that holds every line wins.
_ELLIPSE_STRETCHES = (1.15, 1.25, 1.35, 1.45, 1.6, 1.8, 2.0, 2.2, 2.4)
# Ellipses wider than this ratio read as lozenges, not bubbles.
_FLATTEST_ELLIPSE = 2.3


class Speech(NamedTuple):
    """One line of dialogue to letter: its place in the dialogue, who says it, the text as written
    and the text as the fonts will draw it."""

    order: int
    speaker: str
    text: str
    prepared: str


@dataclass(frozen=True)
class BubbleShape:
    """A bubble's size before it is placed: text lines and the body size around them."""

    order: int
    speaker: str
    text: str
    lines: tuple[str, ...]
    width: int
    height: int
    shape: Shape
    size: int
    truncated: bool


class BubbleSizer:
    """Sizes bubbles for one region of a cell. Layout tries many font sizes and shapes for the
    same speech, so wrapped lines are kept here for the duration of one cell."""

    def __init__(self, chain: FontChain, px: Pixels, width: int, height: int) -> None:
        self.chain = chain
        self.px = px
        self.width = width
        self.height = height
        self._wraps: dict[tuple[str, int, int, int | None], list[str]] = {}

    def shape(
        self,
        speech: Speech,
        size: int,
        shape: Shape,
        wide: bool,
        max_height: int | None = None,
        ellipsis: bool = False,
    ) -> BubbleShape | None:
        """Wraps one speech and sizes its bubble; None when it cannot fit the region. ``wide``
        wraps at the full width instead of a pleasant 3:1 block. With ``max_height``, lines that do
        not fit are cut and the last kept one ends with an ellipsis (always, with ``ellipsis``: the
        text goes on in bubbles that were left out)."""
        chain, inset = self.chain, self.px.padding + self.px.outline
        factor = _ELLIPSE_TEXT_FACTOR if shape == "ellipse" else 1.0
        max_text_w = math.floor((self.width - 2 * inset) / factor)
        if max_text_w <= 0:
            return None
        # A bubble is never taller than its region: one line more than that holds tells that the text overflows.
        most = lines_that_fit(chain, len(speech.prepared) + 1, size, self.height) + 1
        lines = self._wrap(speech.prepared, size, max_text_w, wide, most)
        truncated = False
        if max_height is not None:
            fit_h = max_height - 2 * inset
            keep = lines_that_fit(chain, len(lines), size, fit_h)
            if keep == 0:
                return None
            if keep < len(lines) or ellipsis or any(chain.text_width(ln, size) > max_text_w for ln in lines):
                lines = cut_lines(chain, lines, size, max_text_w, fit_h, mark_end=ellipsis)
                truncated = True
        if not lines or any(not ln or chain.text_width(ln, size) > max_text_w for ln in lines):
            return None
        width, height = self.body_size(lines, size, shape)
        if width > self.width or height > self.height:
            return None
        return BubbleShape(
            speech.order, speech.speaker, speech.text, tuple(lines), width, height, shape, size, truncated
        )

    def _wrap(self, text: str, size: int, max_text_w: int, wide: bool, max_lines: int | None = None) -> list[str]:
        """Lines at the full width, or (not ``wide``) aiming at a text block about 3:1 wide, as
        lettered bubbles are; at most ``max_lines``."""
        if wide:
            wrap_w = max_text_w
        else:
            natural, lh = self.chain.text_width(text, size), self.chain.line_height(size)
            wrap_w = int(min(max_text_w, max(math.sqrt(3.0 * natural * lh), min(natural, 5 * lh))))
        key = (text, size, wrap_w, max_lines)
        if key not in self._wraps:
            self._wraps[key] = self.chain.wrap(text, size, wrap_w, max_lines)
        return list(self._wraps[key])

    def body_size(self, lines: list[str], size: int, shape: Shape) -> tuple[int, int]:
        """Body size around centred text lines, outline included."""
        pad, lw = self.px.padding, self.px.outline
        if shape == "rounded":
            widths = [self.chain.text_width(ln, size) for ln in lines]
            return max(widths) + 2 * (pad + lw), self.chain.block_height(len(lines), size) + 2 * (pad + lw)
        a, b = self._ellipse_axes(lines, size)
        return math.ceil(2 * (a + lw)), math.ceil(2 * (b + lw))

    def _ellipse_axes(self, lines: list[str], size: int) -> tuple[float, float]:
        """Half-axes of the smallest (and not too flat) ellipse, from a few candidates, that holds
        every line's box: short first and last lines make it rounder."""
        chain, pad = self.chain, self.px.padding
        widths = [chain.text_width(ln, size) for ln in lines]
        block_h = chain.block_height(len(lines), size)
        lh, m = chain.line_height(size), chain.metrics(size)
        best: tuple[float, float, float] | None = None
        for stretch in _ELLIPSE_STRETCHES:
            b = (block_h / 2 + pad * 0.5) * stretch
            a = 0.0
            for i, w in enumerate(widths):
                top = -block_h / 2 + i * lh  # this line's box, relative to the text block's centre
                reach = max(abs(top), abs(top + m.ascent + m.descent)) + pad * 0.25
                a = max(a, (w / 2 + pad * 0.6) / math.sqrt(max(1e-6, 1 - (reach / b) ** 2)))
            score = a * b * max(1.0, a / (_FLATTEST_ELLIPSE * b)) ** 2
            if best is None or score < best[0]:
                best = (score, a, b)
        assert best is not None
        return best[1], best[2]
