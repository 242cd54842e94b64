"""Packing bubbles into a region in reading order: rows of bubbles side by side, each row leaving room
below it for the tails. Positions are reading coordinates (x from where reading starts), so a
right-to-left page is the same packing mirrored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .bubble_shape import BubbleShape
from .fonts import FontChain
from .style import Pixels

__all__ = ["Region", "Slot", "pack_rows", "tail_length"]


@dataclass(frozen=True)
class Region:
    """The part of a cell left for bubbles, in page pixels."""

    x: int
    y: int
    w: int
    h: int


class Slot(NamedTuple):
    """Where a bubble's body was packed: top-left corner in reading coordinates, and its row."""

    x: int
    y: int
    row: int


def tail_length(chain: FontChain, px: Pixels, size: int) -> int:
    """Room below a row of bubbles at font ``size`` for their tails."""
    return max(px.min_tail, round(0.9 * chain.line_height(size)))


def pack_rows(
    chain: FontChain,
    px: Pixels,
    region: Region,
    shapes: Sequence[BubbleShape],
    targets: Sequence[float],
    size: int,
    by_speaker: bool,
) -> list[Slot] | None:
    """Places bubbles in rows, in reading order. A row takes bubbles while they fit side by side
    (and, ``by_speaker``, while the next speaker does not stand before the previous one, so tails
    never cross); each later bubble in a row sits a little lower unless that leaves no room. Each
    bubble aims at its speaker's ``targets`` x. None when they do not all fit."""
    gap, tail = px.gap, tail_length(chain, px, size)
    rows = _rows(shapes, targets, region.w, gap, by_speaker)
    if rows is None:
        return None
    for stagger in (round(0.6 * chain.line_height(size)), 0):
        heights = [max(shapes[j].height + stagger * k for k, j in enumerate(row)) for row in rows]
        if sum(heights) + len(rows) * tail + (len(rows) - 1) * gap <= region.h:
            break
    else:
        return None
    slots = [Slot(0, 0, 0)] * len(shapes)
    top = 0
    for r, row in enumerate(rows):
        for k, (j, x) in enumerate(zip(row, _row_xs(shapes, targets, row, region.w, gap))):
            slots[j] = Slot(math.floor(x), top + stagger * k, r)
        top += heights[r] + tail + gap
    return slots


def _rows(
    shapes: Sequence[BubbleShape], targets: Sequence[float], width: int, gap: int, by_speaker: bool
) -> list[list[int]] | None:
    """Bubble indices grouped into rows; None when one bubble alone is too wide."""
    rows: list[list[int]] = []
    for i, shape in enumerate(shapes):
        if shape.width > width:
            return None
        if rows:
            row = rows[-1]
            used = sum(shapes[j].width for j in row) + gap * len(row)
            turned = by_speaker and targets[i] < targets[row[-1]] - 1
            if used + shape.width <= width and not turned:
                row.append(i)
                continue
        rows.append([i])
    return rows


def _row_xs(
    shapes: Sequence[BubbleShape], targets: Sequence[float], row: list[int], width: int, gap: int
) -> list[float]:
    """Left edges of one row's bubbles: each centred on its speaker where it can be, pushed right
    past the bubble before it, then pulled back left inside the region."""
    xs = [min(max(targets[j] - shapes[j].width / 2, 0), width - shapes[j].width) for j in row]
    for k in range(1, len(row)):
        xs[k] = max(xs[k], xs[k - 1] + shapes[row[k - 1]].width + gap)
    for k in range(len(row) - 1, -1, -1):
        w = shapes[row[k]].width
        limit = width - w if k == len(row) - 1 else xs[k + 1] - gap - w
        xs[k] = min(xs[k], limit)
    return xs
