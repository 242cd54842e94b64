"""Boxes and triangles in page pixels: the small geometry that placing and checking lettering needs."""

from __future__ import annotations

import math

__all__ = ["Box", "InkBox", "Point", "box_contains", "boxes_overlap", "grow_box", "inset_triangle"]

#: A rectangle as (x, y, width, height) in page pixels, like the panel cell given to the letterer.
Box = tuple[int, int, int, int]
#: Pixels touched by drawn text as (left, top, right, bottom), as Pillow reports them.
InkBox = tuple[int, int, int, int]
Point = tuple[int, int]


def boxes_overlap(a: Box, b: Box) -> bool:
    """Whether two boxes share any pixel (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def box_contains(outer: Box, inner: Box) -> bool:
    """Whether ``inner`` lies entirely inside ``outer``."""
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def grow_box(box: Box | None, ink: InkBox | None) -> Box | None:
    """``box`` grown to cover ``ink``: builds the bounding box of several drawn lines."""
    if ink is None:
        return box
    if box is None:
        return (ink[0], ink[1], ink[2] - ink[0], ink[3] - ink[1])
    left, top = min(box[0], ink[0]), min(box[1], ink[1])
    right, bottom = max(box[0] + box[2], ink[2]), max(box[1] + box[3], ink[3])
    return (left, top, right - left, bottom - top)


def inset_triangle(points: list[tuple[float, float]], d: float) -> list[tuple[float, float]] | None:
    """The triangle shrunk by ``d`` on every side (a homothety about its incentre), for the fill
    inside a tail's outline; None when it is too thin to have an inside."""
    (ax, ay), (bx, by), (cx, cy) = points
    a, b, c = math.dist((bx, by), (cx, cy)), math.dist((ax, ay), (cx, cy)), math.dist((ax, ay), (bx, by))
    perimeter = a + b + c
    area = abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / 2
    if perimeter <= 0 or area <= 0:
        return None
    r = 2 * area / perimeter
    if r <= d:
        return None
    ix, iy = (a * ax + b * bx + c * cx) / perimeter, (a * ay + b * by + c * cy) / perimeter
    k = (r - d) / r
    return [(ix + (px - ix) * k, iy + (py - iy) * k) for px, py in points]
