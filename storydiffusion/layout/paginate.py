"""Panels to pages: every panel gets one cell (a pixel box), pages in order, cells in reading order.

Pages are pure data (no images), so a layout can be checked, stored in ``pages/pages.json`` and
redrawn without touching a panel. All positions are integers computed so that gutters are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import LayoutError
from .template_values import MAX_PAGE_PIXELS, MAX_PAGE_PX
from .templates import PageTemplate, Row

__all__ = ["Cell", "PageLayout", "paginate", "page_count", "webtoon_page_height"]

# PDF viewers (after Acrobat) take pages up to 200 inches on a side: a webtoon page is cut to stay within it.
MAX_PDF_INCHES = 200

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Cell:
    """Where panel ``panel_index`` (0-based, in the story) goes on its page, in pixels."""

    x: int
    y: int
    w: int
    h: int
    panel_index: int

    @property
    def box(self) -> Box:
        return (self.x, self.y, self.w, self.h)

    def to_dict(self) -> dict[str, int]:
        """``panel`` is 1-based, as users number panels in files and on the command line."""
        return {"panel": self.panel_index + 1, "x": self.x, "y": self.y, "w": self.w, "h": self.h}


@dataclass(frozen=True)
class PageLayout:
    """One page: its size, its cells in reading order and, on the first page, the title band."""

    width: int
    height: int
    cells: tuple[Cell, ...]
    title_box: Box | None = None

    @property
    def reading_order(self) -> list[int]:
        """Panel indices in the order a reader reads them (the order of ``cells``)."""
        return [cell.panel_index for cell in self.cells]

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "title_box": list(self.title_box) if self.title_box else None,
            "cells": [cell.to_dict() for cell in self.cells],
            "reading_order": [i + 1 for i in self.reading_order],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PageLayout:
        cells = tuple(Cell(c["x"], c["y"], c["w"], c["h"], c["panel"] - 1) for c in data["cells"])
        title = data.get("title_box")
        return cls(data["width"], data["height"], cells, tuple(title) if title else None)


def page_count(template: PageTemplate, panels: int, size: tuple[int, int] = (1, 1)) -> int:
    """How many pages ``panels`` panels of ``size`` need: full pages in pattern order, one last page for the
    rest (a webtoon: one page per chapter, more where a chapter is taller than a page may be)."""
    if template.kind == "none":
        return panels
    if template.kind == "webtoon":
        return len(paginate(template, [size] * panels)) if panels else 0
    pages = 0
    while panels > 0:
        panels -= template.capacity(pages)
        pages += 1
    return pages


def paginate(
    template: PageTemplate,
    panel_sizes: Sequence[tuple[int, int]],
    *,
    panel_indices: Sequence[int] | None = None,
    title: bool = False,
) -> list[PageLayout]:
    """Lay out panels of the given (width, height) on as many pages as needed.

    ``panel_indices`` label the cells (default 0..n-1: a run with missing panels keeps the story's
    numbering). ``title`` reserves the title band at the top of the first page (not for ``none``).
    Full pages follow the template's patterns; the last page is re-laid for its own panel count.
    """
    sizes = [(int(w), int(h)) for w, h in panel_sizes]
    if not sizes:
        raise LayoutError("there are no panels to lay out")
    if any(w < 1 or h < 1 for w, h in sizes):
        raise LayoutError("every panel must be at least 1x1 pixels")
    indices = list(range(len(sizes))) if panel_indices is None else [int(i) for i in panel_indices]
    if len(indices) != len(sizes):
        raise LayoutError(f"{len(indices)} panel indices for {len(sizes)} panel sizes")
    if template.kind == "none":
        pages = [_single_page(template, size, index) for size, index in zip(sizes, indices)]
    elif template.kind == "webtoon":
        step = template.chapter_panels or len(sizes)
        pages = [
            page
            for start in range(0, len(sizes), step)
            for page in _webtoon_pages(
                template, sizes[start : start + step], indices[start : start + step], title and start == 0
            )
        ]
    else:
        pages = _pattern_pages(template, sizes, indices, title)
    _check_page_pixels(template, pages)
    return pages


def _check_page_pixels(template: PageTemplate, pages: list[PageLayout]) -> None:
    """Every page within MAX_PAGE_PIXELS before any is drawn: margins of 10 m around a panel, or a webtoon strip of
    a thousand panels, would otherwise ask for gigabytes of memory and get the process killed without a word."""
    for number, page in enumerate(pages, start=1):
        if max(page.width, page.height) > MAX_PAGE_PX:
            raise LayoutError(
                f"layout {template.source}: page {number} would be {page.width:,} x {page.height:,} pixels, more than "
                f"the {MAX_PAGE_PX:,} a page may have on a side: use a smaller page size, margins or panels"
            )
        if page.width * page.height > MAX_PAGE_PIXELS:
            advice = {
                "none": "smaller margins",
                "webtoon": "a smaller chapter_panels, or a narrower page",
            }.get(template.kind, "a smaller page size or page.dpi")
            raise LayoutError(
                f"layout {template.source}: page {number} would be {page.width:,} x {page.height:,} pixels, more than "
                f"the {MAX_PAGE_PIXELS:,} a page may have: use {advice}"
            )


def _pattern_pages(
    template: PageTemplate, sizes: list[tuple[int, int]], indices: list[int], title: bool
) -> list[PageLayout]:
    """Full pages follow the patterns in turn; the last page is re-laid for its own panel count."""
    pages: list[PageLayout] = []
    start = 0
    while start < len(sizes):
        pattern = template.patterns[len(pages) % len(template.patterns)]
        take = min(pattern.capacity, len(sizes) - start)
        chunk, labels = sizes[start : start + take], indices[start : start + take]
        with_title = title and not pages
        if take == pattern.capacity:
            page = _pattern_page(template, pattern.rows, labels, with_title)
        elif template.last_page == "shrink":
            page = _shrunk_page(template, pattern.rows, labels, with_title)
        else:
            page = _balanced_page(template, pattern.rows, chunk, labels, with_title)
        pages.append(page)
        start += take
    return pages


# ------------------------------------------------------------------------------------------- helpers


def _split(total: int, weights: Sequence[float]) -> list[int]:
    """Integer sizes proportional to ``weights`` that add up to ``total`` exactly."""
    whole = sum(weights)
    edges = [0]
    running = 0.0
    for weight in weights:
        running += weight
        edges.append(round(total * running / whole))
    return [b - a for a, b in zip(edges, edges[1:])]


def _content_box(template: PageTemplate, width: int, height: int, title: bool) -> tuple[Box, Box | None]:
    """The area inside the margins, below the title band when there is one."""
    m = template.margins
    x, y, w, h = m.left, m.top, width - m.left - m.right, height - m.top - m.bottom
    if not title:
        return (x, y, w, h), None
    band = (x, y, w, template.title_height)
    shift = template.title_height + template.gutter_y
    return (x, y + shift, w, h - shift), band


def _place_rows(
    box: Box, rows: Sequence[tuple[float, Sequence[float]]], gx: int, gy: int, min_size: int
) -> list[list[Box]]:
    """Boxes row by row, left to right, filling ``box`` with exact gutters between them."""
    x0, y0, w, h = box
    heights = _split(h - (len(rows) - 1) * gy, [height for height, _ in rows])
    placed = []
    y = y0
    for (_height, cells), row_h in zip(rows, heights):
        widths = _split(w - (len(cells) - 1) * gx, cells)
        if row_h < min_size or min(widths) < min_size:
            raise LayoutError(
                f"the page has no room for a row of {len(cells)} cells: use a bigger page, a smaller gutter or fewer cells"
            )
        x = x0
        line = []
        for cell_w in widths:
            line.append((x, y, cell_w, row_h))
            x += cell_w + gx
        placed.append(line)
        y += row_h + gy
    return placed


def _cells(boxes: list[list[Box]], labels: Sequence[int], box: Box, rtl: bool) -> tuple[Cell, ...]:
    """Cells in reading order; right to left a row's first cell is its rightmost (mirrored in ``box``)."""
    left, right = box[0], box[0] + box[2]
    flat = [b for line in boxes for b in line]
    out = []
    for (x, y, w, h), label in zip(flat, labels):
        if rtl:
            x = left + right - (x + w)
        out.append(Cell(x, y, w, h, label))
    return tuple(out)


def _min_size(template: PageTemplate) -> int:
    return 2 * template.border_width + 1


def _pattern_page(template: PageTemplate, rows: Sequence[Row], labels: Sequence[int], title: bool) -> PageLayout:
    box, band = _content_box(template, template.width, template.height, title)
    placed = _place_rows(
        box, [(r.height, r.cells) for r in rows], template.gutter_x, template.gutter_y, _min_size(template)
    )
    return PageLayout(template.width, template.height, _cells(placed, labels, box, template.direction == "rtl"), band)


def _shrunk_page(template: PageTemplate, rows: Sequence[Row], labels: Sequence[int], title: bool) -> PageLayout:
    """The pattern's first rows at their full-page sizes, the page cut below them (and, for a
    single-row pattern such as a strip, cut after the last cell); a partly used row of a
    multi-row pattern is stretched across the page."""
    t = template
    box, band = _content_box(t, t.width, t.height, title)
    full = _place_rows(box, [(r.height, r.cells) for r in rows], t.gutter_x, t.gutter_y, _min_size(t))
    kept: list[list[Box]] = []
    left = len(labels)
    for r, line in enumerate(full):
        if left <= 0:
            break
        if left >= len(line):
            kept.append(line)
        elif len(rows) == 1:
            kept.append(line[:left])
        else:
            x, y, w, h = box[0], line[0][1], box[2], line[0][3]
            kept.append(
                _place_rows((x, y, w, h), [(1.0, rows[r].cells[:left])], t.gutter_x, t.gutter_y, _min_size(t))[0]
            )
        left -= len(kept[-1])
    right = max(b[0] + b[2] for line in kept for b in line)
    bottom = max(b[1] + b[3] for line in kept for b in line)
    width, height = right + t.margins.right, bottom + t.margins.bottom
    new_box = (box[0], box[1], right - box[0], bottom - box[1])
    if band is not None:
        band = (band[0], band[1], right - box[0], band[3])
    return PageLayout(width, height, _cells(kept, labels, new_box, t.direction == "rtl"), band)


def _compositions(total: int, max_part: int, max_parts: int) -> Iterator[tuple[int, ...]]:
    """Ways to write ``total`` as an ordered sum of at most ``max_parts`` parts, each at most ``max_part``."""
    if total == 0:
        yield ()
        return
    if max_parts == 0:
        return
    for first in range(min(total, max_part), 0, -1):
        for rest in _compositions(total - first, max_part, max_parts - 1):
            yield (first, *rest)


def _balanced_page(
    template: PageTemplate, pattern: Sequence[Row], sizes: Sequence[tuple[int, int]], labels: Sequence[int], title: bool
) -> PageLayout:
    """The last page, re-laid for its panel count so no cell is empty and the page stays full.

    Candidates: the pattern cut after its last panel (rows dropped, the partly used row's cells
    widened), and every split into rows of equal cells (no more rows or columns than the template
    uses) with row heights that give all its cells the same crop. The winner changes the panels'
    aspect least: the smallest sum over cells of |log(cell aspect / panel aspect)|.
    """
    t = template
    box, band = _content_box(t, t.width, t.height, title)
    best: tuple[float, list[list[Box]]] | None = None
    for rows in _candidate_rows(t, pattern, sizes, box[2]):
        try:
            placed = _place_rows(box, rows, t.gutter_x, t.gutter_y, _min_size(t))
        except LayoutError:
            continue
        cells = [b for line in placed for b in line]
        cost = sum(abs(math.log((cw / ch) / (pw / ph))) for (_, _, cw, ch), (pw, ph) in zip(cells, sizes))
        if best is None or cost < best[0] - 1e-9:
            best = (cost, placed)
    if best is None:
        raise LayoutError(
            f"the page has no room for {len(sizes)} cells: use a bigger page, a smaller gutter or a smaller title band"
        )
    return PageLayout(t.width, t.height, _cells(best[1], labels, box, t.direction == "rtl"), band)


def _candidate_rows(
    t: PageTemplate, pattern: Sequence[Row], sizes: Sequence[tuple[int, int]], width: int
) -> list[list[tuple[float, list[float]]]]:
    """Row plans for the last page: the pattern cut after its last panel, then every split into
    rows of equal cells, each row as tall as its panels' average height at the cell width."""
    pattern_rows = []
    left = len(sizes)
    for row in pattern:
        if left <= 0:
            break
        pattern_rows.append((row.height, list(row.cells[:left])))
        left -= len(row.cells)
    candidates = [pattern_rows]
    for parts in _compositions(len(sizes), t.max_columns, max(t.max_rows, 1)):
        rows = []
        start = 0
        for k in parts:
            cell_w = max(1.0, (width - (k - 1) * t.gutter_x) / k)
            rows.append((sum(cell_w * ph / pw for pw, ph in sizes[start : start + k]) / k, [1.0] * k))
            start += k
        candidates.append(rows)
    return candidates


def webtoon_page_height(template: PageTemplate) -> int:
    """The tallest page a webtoon chapter is cut into: one a PDF viewer opens, an image format can hold, and
    within the pixels a page may have at its width."""
    return min(MAX_PAGE_PX, MAX_PDF_INCHES * template.dpi, MAX_PAGE_PIXELS // template.width)


def _webtoon_pages(
    template: PageTemplate, sizes: Sequence[tuple[int, int]], labels: Sequence[int], title: bool
) -> list[PageLayout]:
    """One chapter as one tall page: panels at the page width, each as tall as its aspect asks. A chapter
    taller than ``webtoon_page_height`` goes on over as many pages as it needs, cut between panels (a panel
    taller than a page by itself is refused by ``_check_page_pixels``)."""
    t = template
    m = t.margins
    cell_w = t.width - m.left - m.right
    tallest = webtoon_page_height(t)
    pages: list[PageLayout] = []
    y, band, cells = m.top, None, []
    if title:
        band = (m.left, y, cell_w, t.title_height)
        y += t.title_height + t.gutter_y
    for (pw, ph), label in zip(sizes, labels):
        cell_h = max(_min_size(t), round(cell_w * ph / pw))
        if cells and y + cell_h + m.bottom > tallest:  # this panel starts the next page
            pages.append(PageLayout(t.width, y - t.gutter_y + m.bottom, tuple(cells), band))
            y, band, cells = m.top, None, []
        cells.append(Cell(m.left, y, cell_w, cell_h, label))
        y += cell_h + t.gutter_y
    pages.append(PageLayout(t.width, y - t.gutter_y + m.bottom, tuple(cells), band))
    return pages


def _single_page(template: PageTemplate, size: tuple[int, int], label: int) -> PageLayout:
    """``none``: the panel as it is, inside the template's margins (usually none)."""
    m = template.margins
    w, h = size
    return PageLayout(m.left + w + m.right, m.top + h + m.bottom, (Cell(m.left, m.top, w, h, label),))
