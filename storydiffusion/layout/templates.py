"""Page templates as data: a template's mapping (``layouts/<name>.yaml``, found and read by ``template_files``)
validated into a :class:`PageTemplate`.

Adding a layout is adding a file, so every mistake in one is reported here with the file, the key
and what to write instead; the rest of the engine only ever sees a validated template in pixels.
The schema is documented in ``layouts/README.md``; single values (lengths, colours, ...) are read by
``template_values``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import SettingsError, shown
from ..settings import SETTING_RANGES
from . import LayoutError
from .template_values import (
    PAGE_SIZES,
    Length,
    Margins,
    choice,
    colour,
    gutter,
    length_px,
    margins,
    page_size,
    weight,
)

__all__ = [
    "KINDS",
    "PAGE_SIZES",
    "Margins",
    "PagePattern",
    "PageTemplate",
    "Row",
    "check_title_room",
    "parse_template",
]

KINDS = ("pages", "webtoon", "none")
DIRECTIONS = ("ltr", "rtl")
CAPTION_POSITIONS = ("top", "bottom")
FITS = ("crop", "letterbox")
LAST_PAGE = ("stretch", "shrink")
TOP_KEYS = (
    "name",
    "description",
    "kind",
    "page",
    "margins",
    "gutter",
    "border",
    "background",
    "direction",
    "caption_position",
    "fit",
    "title_height",
    "last_page",
    "pages",
    "chapter_panels",
)
MAX_DPI = int(SETTING_RANGES["dpi"].high)
_PATTERN_EXAMPLE = "pages: [{rows: [{height: 1, cells: [1, 1]}, {height: 1, cells: 3}]}]"


@dataclass(frozen=True)
class Row:
    """One row of a page pattern: its height relative to the other rows, and its cells' relative widths.

    Cells are listed in reading order (right to left on a ``rtl`` page)."""

    height: float
    cells: tuple[float, ...]


@dataclass(frozen=True)
class PagePattern:
    """The rows of one page; a template cycles through its patterns so pages can vary."""

    rows: tuple[Row, ...]

    @property
    def capacity(self) -> int:
        return sum(len(row.cells) for row in self.rows)


@dataclass(frozen=True)
class PageTemplate:
    """A validated template with every length in pixels at ``dpi``.

    ``kind`` is ``pages`` (fixed pages cut into rows of cells), ``webtoon`` (one tall page per
    chapter, panels stacked at the page width, height from each panel's aspect) or ``none`` (one
    page per panel at the panel's own size). ``width``/``height`` are 0 where the page size comes
    from the panels.
    """

    name: str
    description: str
    kind: str
    width: int
    height: int
    dpi: int
    margins: Margins
    gutter_x: int
    gutter_y: int
    border_width: int
    border_color: tuple[int, int, int]
    background: tuple[int, int, int]
    direction: str
    caption_position: str
    fit: str
    title_height: int
    last_page: str
    patterns: tuple[PagePattern, ...]
    chapter_panels: int | None
    source: str
    # A template of the user's own: its file's name and text, recorded with the pages it lays out, so that
    # they are laid out again the same way (``pages.json``); None for a bundled template, found by its name.
    file: tuple[str, str] | None = None

    def capacity(self, page: int) -> int:
        """Panels on a full page ``page`` (0-based) of a ``pages`` template."""
        return self.patterns[page % len(self.patterns)].capacity

    @property
    def max_rows(self) -> int:
        return max(len(p.rows) for p in self.patterns) if self.patterns else 1

    @property
    def max_columns(self) -> int:
        return max((len(r.cells) for p in self.patterns for r in p.rows), default=1)

    def with_options(self, *, fit: str | None = None, direction: str | None = None) -> PageTemplate:
        """A copy with options a user may override per run (``--fit``), checked like the file's."""
        if fit is not None and fit not in FITS:
            raise LayoutError(f"fit must be one of {', '.join(FITS)}, not {shown(fit)}")
        if direction is not None and direction not in DIRECTIONS:
            raise LayoutError(f"direction must be one of {', '.join(DIRECTIONS)}, not {shown(direction)}")
        return replace(self, fit=fit or self.fit, direction=direction or self.direction)


# ------------------------------------------------------------------------------------------ parsing


def parse_template(data: Any, *, name: str, source: str, dpi: int | None = None) -> PageTemplate:
    """Validate a template mapping (what the file holds) and convert its lengths to pixels."""
    where = f"layout {source}"
    description = _check_top(data, name, where)
    kind = choice(data, "kind", KINDS, "pages", where)
    page = _page_mapping(data, where)
    dpi = _dpi(page, dpi, where)

    def length(value: Any, key: str) -> int:
        return length_px(value, dpi, f"{where}: {key}")

    width, height = page_size(page, kind, length, where)
    page_margins = margins(data.get("margins", 0), length, where)
    gutter_x, gutter_y = gutter(data.get("gutter", 0), length, where)
    border_width, border_color = _border(data, length, where)
    template = PageTemplate(  # arguments in the order they are checked: the first mistake is reported
        name=name,
        description=" ".join(description.split()),
        kind=kind,
        width=width,
        height=height,
        dpi=dpi,
        margins=page_margins,
        gutter_x=gutter_x,
        gutter_y=gutter_y,
        border_width=border_width,
        border_color=border_color,
        background=colour(data.get("background", "white"), f"{where}: background"),
        direction=choice(data, "direction", DIRECTIONS, "ltr", where),
        caption_position=choice(data, "caption_position", CAPTION_POSITIONS, "top", where),
        fit=choice(data, "fit", FITS, "crop", where),
        last_page=choice(data, "last_page", LAST_PAGE, "stretch", where),
        title_height=length(data.get("title_height", "18mm"), "title_height"),
        patterns=_patterns(data, kind, where),
        chapter_panels=_chapter_panels(data, kind, where),
        source=source,
    )
    _check_room(template, where, titles=(False,))  # with a title band: check_title_room, when a title is drawn
    return template


def check_title_room(template: PageTemplate) -> None:
    """LayoutError when the first page has no room for its cells below the title band: checked when a title
    is drawn, so that a template too small for one still serves a story without (``--no-title``)."""
    _check_room(template, f"layout {template.source}", titles=(True,))


def _check_top(data: Any, name: str, where: str) -> str:
    """The top level is a mapping of known keys whose name matches the file; returns the description."""
    if not isinstance(data, dict):
        raise LayoutError(f"{where}: a template must be a mapping of keys ({', '.join(TOP_KEYS)})")
    unknown = [str(k) for k in data if k not in TOP_KEYS]
    if unknown:
        raise LayoutError(
            f"{where}: unknown key {shown(unknown[0])}; the keys are {', '.join(TOP_KEYS)} (see layouts/README.md)"
        )
    if "name" in data and data["name"] != name:
        raise LayoutError(
            f"{where}: name {shown(data['name'])} differs from the file name {shown(name)}: rename the file or fix 'name'"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise LayoutError(f"{where}: description must be text")
    return description


def _page_mapping(data: dict, where: str) -> dict:
    page = data.get("page", {})
    if not isinstance(page, dict):
        raise LayoutError(
            f"{where}: page must be a mapping such as {{size: a4, dpi: 150}} or {{width: 800px, dpi: 96}}"
        )
    unknown = [str(k) for k in page if k not in ("size", "width", "height", "dpi")]
    if unknown:
        raise LayoutError(f"{where}: page: unknown key {shown(unknown[0])}; use size, width, height and dpi")
    return page


def _dpi(page: dict, override: int | None, where: str) -> int:
    """The file's page.dpi (150 when left out), or ``override`` when given; both checked against
    SETTING_RANGES["dpi"] (the CLI checks its --dpi there first, so its message names the flag)."""
    file_dpi = page.get("dpi", 150)
    try:
        SETTING_RANGES["dpi"].check(f"{where}: page.dpi", file_dpi)
        if override is not None:
            SETTING_RANGES["dpi"].check("dpi", override)
    except SettingsError as error:
        raise LayoutError(str(error)) from None
    return override or file_dpi


def _border(data: dict, length: Length, where: str) -> tuple[int, tuple[int, int, int]]:
    border = data.get("border", {})
    if not isinstance(border, dict):
        raise LayoutError(
            f"{where}: border must be a mapping with width and color, e.g. {{width: 0.6mm, color: black}}"
        )
    _refuse_unknown(border, ("width", "color"), f"{where}: border")
    return length(border.get("width", 0), "border.width"), colour(
        border.get("color", "black"), f"{where}: border.color"
    )


def _refuse_unknown(mapping: dict, keys: tuple[str, ...], label: str) -> None:
    """A key the mapping does not take, named with the ones it does (a typo such as ``colour`` is found)."""
    unknown = [str(key) for key in mapping if key not in keys]
    if unknown:
        raise LayoutError(f"{label}: unknown key {shown(unknown[0])}; use {' and '.join(keys)}")


def _chapter_panels(data: dict, kind: str, where: str) -> int | None:
    chapter_panels = data.get("chapter_panels")
    if chapter_panels is None:
        return None
    if kind != "webtoon":
        raise LayoutError(f"{where}: chapter_panels is only for kind 'webtoon'")
    if isinstance(chapter_panels, bool) or not isinstance(chapter_panels, int) or chapter_panels < 1:
        raise LayoutError(
            f"{where}: chapter_panels must be a whole number of panels, at least 1 (or left out: one chapter)"
        )
    return chapter_panels


def _patterns(data: dict, kind: str, where: str) -> tuple[PagePattern, ...]:
    """The page patterns of a ``pages`` template (none for the other kinds)."""
    if kind != "pages":
        if "pages" in data:
            raise LayoutError(
                f"{where}: 'pages' is only for kind 'pages'; a {kind} template takes its cells from the panels"
            )
        return ()
    raw = data.get("pages")
    if not isinstance(raw, list) or not raw:
        raise LayoutError(f"{where}: a 'pages' template needs a list of page patterns, e.g. {_PATTERN_EXAMPLE}")
    patterns = []
    for p, page in enumerate(raw):
        label = f"{where}: pages[{p}]"
        if not isinstance(page, dict) or "rows" not in page:
            raise LayoutError(f"{label} must be a mapping with only 'rows', e.g. {_PATTERN_EXAMPLE}")
        _refuse_unknown(page, ("rows",), label)
        rows = page["rows"]
        if not isinstance(rows, list) or not rows:
            raise LayoutError(f"{label}.rows must be a non-empty list of rows ({{height, cells}})")
        patterns.append(PagePattern(tuple(_row(row, f"{label}.rows[{r}]") for r, row in enumerate(rows))))
    return tuple(patterns)


def _row(row: Any, label: str) -> Row:
    if not isinstance(row, dict) or "cells" not in row:
        raise LayoutError(
            f"{label} must be a mapping with 'cells' (and optionally 'height'), e.g. {{height: 1, cells: [2, 1]}}"
        )
    _refuse_unknown(row, ("height", "cells"), label)
    height = weight(row.get("height", 1), f"{label}.height")
    cells = row["cells"]
    if isinstance(cells, int) and not isinstance(cells, bool):
        if not 1 <= cells <= 50:
            raise LayoutError(f"{label}.cells as a count must be from 1 to 50, not {cells}")
        return Row(height, (1.0,) * cells)
    if isinstance(cells, list) and cells:
        return Row(height, tuple(weight(c, f"{label}.cells[{i}]") for i, c in enumerate(cells)))
    raise LayoutError(f"{label}.cells must be a count of equal cells (3) or a list of relative widths ([2, 1])")


def _check_room(t: PageTemplate, where: str, titles: tuple[bool, ...]) -> None:
    """The margins, gutters, borders and (``titles`` holding True) the title band must leave room for at least
    a pixel of every cell."""
    if t.kind == "none":
        return
    m = t.margins
    inner = 2 * t.border_width + 1
    content_w = t.width - m.left - m.right
    if content_w < inner:
        border = f" and border.width (2 x {t.border_width} px)" if t.border_width else ""
        raise LayoutError(
            f"{where}: the left and right margins ({m.left}+{m.right} px){border} leave no room on a {t.width} px wide "
            "page: make them smaller"
        )
    if t.kind == "webtoon":
        return
    for p, pattern in enumerate(t.patterns):
        for title in titles:
            content_h = t.height - m.top - m.bottom - (t.title_height + t.gutter_y if title else 0)
            rows = len(pattern.rows)
            if content_h - (rows - 1) * t.gutter_y < rows * inner:
                band = " with the title band (title_height)" if title else ""
                fix = "use fewer rows or smaller margins/gutter/border.width" + (", or no title" if title else "")
                raise LayoutError(
                    f"{where}: pages[{p}] has {rows} rows that do not fit between the top and bottom margins{band}: {fix}"
                )
            free_h = content_h - (rows - 1) * t.gutter_y
            for r, row in enumerate(pattern.rows):
                k = len(row.cells)
                if content_w - (k - 1) * t.gutter_x < k * inner:
                    raise LayoutError(
                        f"{where}: pages[{p}].rows[{r}] has {k} cells that do not fit between the margins: use fewer cells or a smaller gutter/border.width"
                    )
                room = content_w - (k - 1) * t.gutter_x
                _check_shares(row.cells, room, inner, f"{where}: pages[{p}].rows[{r}].cells[{{}}]", "wide")
            heights = [row.height for row in pattern.rows]
            _check_shares(heights, free_h, inner, f"{where}: pages[{p}].rows[{{}}].height", "high")


def _check_shares(shares: Sequence[float], room: int, least: int, where: str, along: str) -> None:
    """Relative sizes (a row's ``cells: [1, 2]``, the rows' ``height``) whose part of ``room`` px is too small
    for a cell's border: named where it is written (``where`` holds ``{}`` for the index), with its pixels."""
    total = sum(shares)
    for index, share in enumerate(shares):
        pixels = int(room * share / total)
        if pixels < least:
            raise LayoutError(
                f"{where.format(index)}: {share:g} of {total:g} would be {pixels} px {along}, less than the {least} px "
                "a cell needs: make the relative sizes closer to one another"
            )
