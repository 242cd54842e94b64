"""Where narration captions and the page title go, and how large they are.

A caption is a narration box in a corner of its cell (top-left or bottom-right in left-to-right
reading, mirrored for right-to-left), taking at most a fraction of the cell's height; a title is
centred in its band. Both get the largest font that fits, else are cut with an ellipsis.
"""

from __future__ import annotations

import math

from .bidi import paragraph_direction
from .fitting import centred_origins, fit_block, ink_of
from .fonts import FontChain
from .geometry import Box, Point
from .report import TextBlock
from .style import Pixels

__all__ = ["caption_inset", "caption_origins", "place_caption", "place_title"]


def caption_inset(px: Pixels) -> int:
    """Space between a caption box's edge and its text: the border plus the padding."""
    return px.padding + px.caption_border


def caption_origins(chain: FontChain, px: Pixels, box: Box, lines: tuple[str, ...], size: int) -> list[Point]:
    """Top-left corner of each line of a caption: aligned inside the border and padding on the side its
    reading starts from (the right for Hebrew and Arabic)."""
    inset = caption_inset(px)
    return [
        (
            box[0] + box[2] - inset - chain.text_width(line, size)
            if paragraph_direction(line) == "rtl"
            else box[0] + inset,
            box[1] + inset + i * chain.line_height(size),
        )
        for i, line in enumerate(lines)
    ]


def place_caption(
    chain: FontChain,
    px: Pixels,
    cell: Box,
    original: str,
    text: str,
    position: str,
    direction: str,
    max_fraction: float,
) -> TextBlock | None:
    """The caption's box and lines: as large a font as fits in ``max_fraction`` of the cell height
    (or one line of the smallest size); None when not even that fits in the cell."""
    m, inset = px.margin, caption_inset(px)
    inner_w, inner_h = cell[2] - 2 * m, cell[3] - 2 * m
    text_w = inner_w - 2 * inset
    if text_w <= 0 or inner_h <= 2 * inset:
        return None
    one_line = chain.block_height(1, px.caption_sizes[-1]) + 2 * inset
    limit = min(inner_h, max(math.floor(cell[3] * max_fraction), one_line))
    fitted = fit_block(chain, text, px.caption_sizes, text_w, limit - 2 * inset)
    if fitted is None:
        return None
    size, lines, truncated = fitted
    width = max(chain.text_width(line, size) for line in lines) + 2 * inset
    height = chain.block_height(len(lines), size) + 2 * inset
    left_side = (position == "top") == (direction == "ltr")
    x = cell[0] + m if left_side else cell[0] + cell[2] - m - width
    y = cell[1] + m if position == "top" else cell[1] + cell[3] - m - height
    box = (x, y, width, height)
    ink = ink_of(chain, caption_origins(chain, px, box, tuple(lines), size), lines, size)
    return TextBlock(original, tuple(lines), box, ink, size, truncated)


def place_title(chain: FontChain, px: Pixels, band: Box, title: str, text: str) -> TextBlock | None:
    """The title centred in ``band``, as large as fits (wrapped, and cut with an ellipsis if it
    must be); None for blank text or a band with no room inside its padding."""
    pad = px.title_padding
    inner_w, inner_h = band[2] - 2 * pad, band[3] - 2 * pad
    if not text or inner_w <= 0 or inner_h <= 0:
        return None
    sizes = [s for s in px.title_sizes if s <= inner_h] or [px.title_sizes[-1]]
    fitted = fit_block(chain, text, sizes, inner_w, inner_h)
    if fitted is None:
        return None
    size, lines, truncated = fitted
    ink = ink_of(chain, centred_origins(chain, band, lines, size), lines, size)
    return TextBlock(title, tuple(lines), band, ink, size, truncated)
