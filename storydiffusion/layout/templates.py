"""Page templates as data: ``layouts/<name>.yaml`` (or ``.yml`` / ``.json``) read into a :class:`PageTemplate`.

Adding a layout is adding a file, so every mistake in one is reported here with the file, the key
and what to write instead; the rest of the engine only ever sees a validated template in pixels.
The schema is documented in ``layouts/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from PIL import ImageColor

from ..resources import data_path
from . import LayoutError

__all__ = [
    "LAYOUTS_DIR",
    "KINDS",
    "PAGE_SIZES",
    "Margins",
    "PagePattern",
    "PageTemplate",
    "Row",
    "list_templates",
    "load_template",
    "template_path",
]

LAYOUTS_DIR = data_path("layouts")
SUFFIXES = (".yaml", ".yml", ".json")
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
# Named paper sizes (portrait, width x height); "us-comic" is the American comic book trim size.
PAGE_SIZES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "a4": ("210mm", "297mm"),
        "a5": ("148mm", "210mm"),
        "b5": ("182mm", "257mm"),
        "b6": ("128mm", "182mm"),
        "letter": ("8.5in", "11in"),
        "us-comic": ("6.625in", "10.25in"),
    }
)
MAX_DPI = 1200
MAX_PAGE_PX = 60000
# Inches per unit; a bare number is millimetres, "px" is taken as device pixels (not scaled by dpi).
_INCHES = {"mm": 1 / 25.4, "cm": 1 / 2.54, "in": 1.0, "pt": 1 / 72}
_LENGTH = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(mm|cm|in|pt|px)?\s*\Z")
_LENGTH_HINT = "write millimetres (a number) or a value with a unit: 10mm, 1cm, 0.5in, 12pt or 40px"


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
class Margins:
    top: int
    right: int
    bottom: int
    left: int


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
            raise LayoutError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
        if direction is not None and direction not in DIRECTIONS:
            raise LayoutError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        return replace(self, fit=fit or self.fit, direction=direction or self.direction)


# ------------------------------------------------------------------------------------------ finding


def list_templates(directory: str | Path | None = None) -> list[str]:
    """Names of the templates in ``layouts/`` (file names without suffix), sorted."""
    folder = Path(directory) if directory is not None else LAYOUTS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        {p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")}
    )


def template_path(name_or_path: str | Path) -> Path:
    """The file of a template given by name (``classic``) or by path (``my/page.yaml``)."""
    text = str(name_or_path).strip()
    candidate = Path(text)
    if candidate.suffix in SUFFIXES or "/" in text or "\\" in text:
        if not candidate.is_file() and candidate.name == text and (LAYOUTS_DIR / text).is_file():
            return LAYOUTS_DIR / text  # "classic.yaml" names the bundled file too
        if not candidate.is_file():
            raise LayoutError(
                f"layout file {text} does not exist: give an existing .yaml/.json file or a name ({_names()})"
            )
        return candidate
    for suffix in SUFFIXES:
        path = LAYOUTS_DIR / f"{text}{suffix}"
        if path.is_file():
            return path
    raise LayoutError(f"unknown layout {text!r}: choose one of {_names()}, or give the path of a .yaml/.json template")


def _names() -> str:
    return ", ".join(list_templates()) or "none found in layouts/"


def load_template(name_or_path: str | Path, *, dpi: int | None = None) -> PageTemplate:
    """Read and validate a template; ``dpi`` overrides the file's (physical sizes scale, px stay)."""
    path = template_path(name_or_path)
    label = path.name if path.parent == LAYOUTS_DIR else str(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        detail = " ".join(str(error).split())
        raise LayoutError(f"could not read layout {label}: {detail}") from None
    return parse_template(data, name=path.stem, source=label, dpi=dpi)


# ------------------------------------------------------------------------------------------ parsing


def parse_template(data: Any, *, name: str, source: str, dpi: int | None = None) -> PageTemplate:
    """Validate a template mapping (what the file holds) and convert its lengths to pixels."""
    where = f"layout {source}"
    if not isinstance(data, dict):
        raise LayoutError(f"{where}: a template must be a mapping of keys ({', '.join(TOP_KEYS)})")
    unknown = [str(k) for k in data if k not in TOP_KEYS]
    if unknown:
        raise LayoutError(
            f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(TOP_KEYS)} (see layouts/README.md)"
        )
    if "name" in data and data["name"] != name:
        raise LayoutError(
            f"{where}: name {data['name']!r} differs from the file name {name!r}: rename the file or fix 'name'"
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise LayoutError(f"{where}: description must be text")
    kind = _choice(data, "kind", KINDS, "pages", where)

    page = data.get("page", {})
    if not isinstance(page, dict):
        raise LayoutError(
            f"{where}: page must be a mapping such as {{size: a4, dpi: 150}} or {{width: 800px, dpi: 96}}"
        )
    unknown = [str(k) for k in page if k not in ("size", "width", "height", "dpi")]
    if unknown:
        raise LayoutError(f"{where}: page: unknown key {unknown[0]!r}; use size, width, height and dpi")
    file_dpi = page.get("dpi", 150)
    if isinstance(file_dpi, bool) or not isinstance(file_dpi, int) or not 10 <= file_dpi <= MAX_DPI:
        raise LayoutError(f"{where}: page.dpi must be a whole number from 10 to {MAX_DPI}, not {file_dpi!r}")
    if dpi is not None and (isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= MAX_DPI):
        raise LayoutError(f"dpi must be a whole number from 10 to {MAX_DPI}, not {dpi!r}")
    dpi = dpi or file_dpi

    def length(value: Any, key: str) -> int:
        return _length(value, dpi, f"{where}: {key}")

    width, height = _page_size(page, kind, length, where)
    margins = _margins(data.get("margins", 0), length, where)
    gutter_x, gutter_y = _gutter(data.get("gutter", 0), length, where)
    border = data.get("border", {})
    if not isinstance(border, dict) or set(border) - {"width", "color"}:
        raise LayoutError(
            f"{where}: border must be a mapping with width and color, e.g. {{width: 0.6mm, color: black}}"
        )
    border_width = length(border.get("width", 0), "border.width")
    border_color = _colour(border.get("color", "black"), f"{where}: border.color")
    background = _colour(data.get("background", "white"), f"{where}: background")
    direction = _choice(data, "direction", DIRECTIONS, "ltr", where)
    caption_position = _choice(data, "caption_position", CAPTION_POSITIONS, "top", where)
    fit = _choice(data, "fit", FITS, "crop", where)
    last_page = _choice(data, "last_page", LAST_PAGE, "stretch", where)
    title_height = length(data.get("title_height", "18mm"), "title_height")

    patterns: tuple[PagePattern, ...] = ()
    if kind == "pages":
        patterns = _patterns(data.get("pages"), where)
    elif "pages" in data:
        raise LayoutError(
            f"{where}: 'pages' is only for kind 'pages'; a {kind} template takes its cells from the panels"
        )
    chapter_panels = data.get("chapter_panels")
    if chapter_panels is not None:
        if kind != "webtoon":
            raise LayoutError(f"{where}: chapter_panels is only for kind 'webtoon'")
        if isinstance(chapter_panels, bool) or not isinstance(chapter_panels, int) or chapter_panels < 1:
            raise LayoutError(
                f"{where}: chapter_panels must be a whole number of panels, at least 1 (or left out: one chapter)"
            )

    template = PageTemplate(
        name=name,
        description=" ".join(description.split()),
        kind=kind,
        width=width,
        height=height,
        dpi=dpi,
        margins=margins,
        gutter_x=gutter_x,
        gutter_y=gutter_y,
        border_width=border_width,
        border_color=border_color,
        background=background,
        direction=direction,
        caption_position=caption_position,
        fit=fit,
        title_height=title_height,
        last_page=last_page,
        patterns=patterns,
        chapter_panels=chapter_panels,
        source=source,
    )
    _check_room(template, where)
    return template


def _length(value: Any, dpi: int, where: str) -> int:
    """Pixels for a length: a bare number is millimetres; px is taken as is."""
    if isinstance(value, bool) or value is None:
        raise LayoutError(f"{where}: {value!r} is not a length: {_LENGTH_HINT}")
    if isinstance(value, (int, float)):
        number, unit = float(value), "mm"
    else:
        match = _LENGTH.match(str(value))
        if match is None:
            raise LayoutError(f"{where}: {value!r} is not a length: {_LENGTH_HINT}")
        number, unit = float(match.group(1)), match.group(2) or "mm"
    if number < 0:
        raise LayoutError(f"{where}: a length cannot be negative")
    pixels = number if unit == "px" else number * _INCHES[unit] * dpi
    return int(round(pixels))


def _page_size(page: dict, kind: str, length, where: str) -> tuple[int, int]:
    size = page.get("size")
    if kind == "none":
        if size is not None or "width" in page or "height" in page:
            raise LayoutError(
                f"{where}: a 'none' template has no page size (each page is one panel at its own size): keep only page.dpi"
            )
        return 0, 0
    if size is not None:
        if "width" in page or "height" in page:
            raise LayoutError(f"{where}: give either page.size or page.width and page.height, not both")
        key = str(size).strip().lower()
        landscape = key.endswith(" landscape")
        key = key.removesuffix(" landscape").strip()
        if key not in PAGE_SIZES:
            raise LayoutError(
                f"{where}: unknown page.size {size!r}: choose one of {', '.join(PAGE_SIZES)} (add ' landscape' to turn it), or give width and height"
            )
        w, h = PAGE_SIZES[key]
        width, height = length(w, "page.size"), length(h, "page.size")
        if landscape:
            width, height = height, width
    else:
        if "width" not in page:
            raise LayoutError(f"{where}: page needs a size (e.g. size: a4) or a width and height (e.g. width: 210mm)")
        width = length(page["width"], "page.width")
        if kind == "webtoon":
            if "height" in page:
                raise LayoutError(
                    f"{where}: a webtoon page has no fixed height (it grows with its panels): remove page.height"
                )
            height = 0
        else:
            if "height" not in page:
                raise LayoutError(f"{where}: page needs a height as well as a width")
            height = length(page["height"], "page.height")
    if kind == "webtoon" and size is not None:
        height = 0
    if not 1 <= width <= MAX_PAGE_PX or (kind == "pages" and not 1 <= height <= MAX_PAGE_PX):
        raise LayoutError(
            f"{where}: the page must be from 1 to {MAX_PAGE_PX} pixels wide and high at this dpi, got {width}x{height}"
        )
    return width, height


def _margins(value: Any, length, where: str) -> Margins:
    if isinstance(value, dict):
        unknown = [str(k) for k in value if k not in ("top", "right", "bottom", "left")]
        if unknown:
            raise LayoutError(f"{where}: margins: unknown side {unknown[0]!r}; use top, right, bottom and left")
        sides = {side: length(value.get(side, 0), f"margins.{side}") for side in ("top", "right", "bottom", "left")}
        return Margins(**sides)
    if isinstance(value, list):
        raise LayoutError(f"{where}: margins is one length for all sides, or a mapping {{top, right, bottom, left}}")
    one = length(value, "margins")
    return Margins(one, one, one, one)


def _gutter(value: Any, length, where: str) -> tuple[int, int]:
    if isinstance(value, dict):
        if set(value) - {"horizontal", "vertical"}:
            raise LayoutError(
                f"{where}: gutter is one length, or a mapping {{horizontal, vertical}} (space between columns, between rows)"
            )
        return length(value.get("horizontal", 0), "gutter.horizontal"), length(
            value.get("vertical", 0), "gutter.vertical"
        )
    one = length(value, "gutter")
    return one, one


def _colour(value: Any, where: str) -> tuple[int, int, int]:
    if not isinstance(value, str):
        raise LayoutError(f"{where}: a colour is text such as '#ffffff' or 'white', not {value!r}")
    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        raise LayoutError(f"{where}: unknown colour {value!r}: write '#rrggbb' or a CSS colour name") from None
    return (rgb[0], rgb[1], rgb[2])


def _choice(data: dict, key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise LayoutError(f"{where}: {key} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1000:
        raise LayoutError(f"{where} must be a positive number (a size relative to the others), not {value!r}")
    return float(value)


def _patterns(raw: Any, where: str) -> tuple[PagePattern, ...]:
    example = "pages: [{rows: [{height: 1, cells: [1, 1]}, {height: 1, cells: 3}]}]"
    if not isinstance(raw, list) or not raw:
        raise LayoutError(f"{where}: a 'pages' template needs a list of page patterns, e.g. {example}")
    patterns = []
    for p, page in enumerate(raw):
        label = f"{where}: pages[{p}]"
        if not isinstance(page, dict) or set(page) != {"rows"}:
            raise LayoutError(f"{label} must be a mapping with only 'rows', e.g. {example}")
        rows_raw = page["rows"]
        if not isinstance(rows_raw, list) or not rows_raw:
            raise LayoutError(f"{label}.rows must be a non-empty list of rows ({{height, cells}})")
        rows = []
        for r, row in enumerate(rows_raw):
            row_label = f"{label}.rows[{r}]"
            if not isinstance(row, dict) or "cells" not in row or set(row) - {"height", "cells"}:
                raise LayoutError(
                    f"{row_label} must be a mapping with 'cells' (and optionally 'height'), e.g. {{height: 1, cells: [2, 1]}}"
                )
            height = _weight(row.get("height", 1), f"{row_label}.height")
            cells_raw = row["cells"]
            if isinstance(cells_raw, int) and not isinstance(cells_raw, bool):
                if not 1 <= cells_raw <= 50:
                    raise LayoutError(f"{row_label}.cells as a count must be from 1 to 50, not {cells_raw}")
                cells = (1.0,) * cells_raw
            elif isinstance(cells_raw, list) and cells_raw:
                cells = tuple(_weight(c, f"{row_label}.cells[{i}]") for i, c in enumerate(cells_raw))
            else:
                raise LayoutError(
                    f"{row_label}.cells must be a count of equal cells (3) or a list of relative widths ([2, 1])"
                )
            rows.append(Row(height, cells))
        patterns.append(PagePattern(tuple(rows)))
    return tuple(patterns)


def _check_room(t: PageTemplate, where: str) -> None:
    """The margins, gutters, borders and title band must leave room for at least a pixel of every cell."""
    m = t.margins
    inner = 2 * t.border_width + 1
    if t.kind == "none":
        return
    content_w = t.width - m.left - m.right
    if content_w < inner:
        raise LayoutError(
            f"{where}: the left and right margins ({m.left}+{m.right} px) leave no room on a {t.width} px wide page"
        )
    if t.kind == "webtoon":
        return
    for p, pattern in enumerate(t.patterns):
        for title in (False, True):
            content_h = t.height - m.top - m.bottom - (t.title_height + t.gutter_y if title else 0)
            rows = len(pattern.rows)
            if content_h - (rows - 1) * t.gutter_y < rows * inner:
                band = " with the title band (title_height)" if title else ""
                raise LayoutError(
                    f"{where}: pages[{p}] has {rows} rows that do not fit between the top and bottom margins{band}: use fewer rows or smaller margins/gutter"
                )
            for row in pattern.rows:
                k = len(row.cells)
                if content_w - (k - 1) * t.gutter_x < k * inner:
                    raise LayoutError(
                        f"{where}: pages[{p}] has a row of {k} cells that do not fit between the margins: use fewer cells or a smaller gutter"
                    )
