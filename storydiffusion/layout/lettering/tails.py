"""Packed bubbles to page coordinates, each with a tail toward where its speaker stands.

A tail is a triangle: two base points just inside the body (on the ellipse, or above the rounded
rectangle's bottom edge) and a tip below it, leaning toward the speaker but never past the middle
60 % of the body, so tails of neighbours never cross.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .bubble_shape import BubbleShape
from .fitting import centred_origins, ink_of
from .fonts import FontChain
from .geometry import Box
from .packing import Region, Slot, tail_length
from .report import Bubble
from .style import Pixels

__all__ = ["place_bubbles"]

FloatPoint = tuple[float, float]


def place_bubbles(
    chain: FontChain,
    px: Pixels,
    region: Region,
    shapes: Sequence[BubbleShape],
    slots: Sequence[Slot],
    targets: Sequence[float],
    size: int,
    direction: str,
) -> list[Bubble]:
    """The bubbles as drawn: bodies and tails in page pixels (mirrored for ``rtl``). Below its body
    a bubble's column is clear down to its row's bottom plus the tail room (neighbours in a row
    never share x); tails of the last row may also use some of the room left below it."""
    if not shapes:
        return []
    tail = tail_length(chain, px, size)
    last_row = max(slot.row for slot in slots)
    last_bottom = max(slot.y + s.height for slot, s in zip(slots, shapes) if slot.row == last_row)
    spare = region.h - (last_bottom + tail)
    bubbles = []
    for slot, shape, target in zip(slots, shapes, targets):
        length = tail + (min(spare, tail // 2) if slot.row == last_row else 0)
        points = _tail_points(shape, slot, target, length, px.outline, chain.line_height(size))
        x = slot.x
        if direction == "rtl":
            x = region.w - x - shape.width
            points = [(region.w - tx, ty) for tx, ty in points]
        body: Box = (x + region.x, slot.y + region.y, shape.width, shape.height)
        tip = tuple((round(tx + region.x), round(ty + region.y)) for tx, ty in points)
        ink = ink_of(chain, centred_origins(chain, body, shape.lines, size), shape.lines, size)
        bubbles.append(
            Bubble(
                speaker=shape.speaker,
                text=shape.text,
                lines=shape.lines,
                box=body,
                shape=shape.shape,
                tail=tip,  # type: ignore[arg-type]
                tail_box=_bounds(tip),
                text_box=ink,
                font_size=size,
                truncated=shape.truncated,
                order=shape.order,
            )
        )
    return bubbles


def _tail_points(
    shape: BubbleShape, slot: Slot, target: float, length: int, outline: int, line_height: int
) -> list[FloatPoint]:
    """The tail triangle in reading coordinates: two base points inside the body, then the tip."""
    tip_x = min(max(target, slot.x + 0.2 * shape.width), slot.x + 0.8 * shape.width)
    tip_y = slot.y + shape.height + length
    cx = slot.x + shape.width / 2
    base_x = cx + 0.45 * (tip_x - cx)
    half = max(outline * 3, min(0.2 * shape.width, 0.55 * line_height))
    depth = 2 * outline + 1
    base = []
    for bx in (base_x - half, base_x + half):
        if shape.shape == "ellipse":
            a, b = shape.width / 2 - outline, shape.height / 2 - outline
            u = (bx - cx) / a
            by = slot.y + shape.height / 2 + b * math.sqrt(max(0.0, 1 - u * u)) - depth
        else:
            by = slot.y + shape.height - depth - outline
        base.append((bx, by))
    return [*base, (tip_x, tip_y)]


def _bounds(points: Sequence[tuple[int, int]]) -> Box:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)
