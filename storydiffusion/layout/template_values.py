"""The values a template file writes, read into pixels and colours: lengths with units, paper sizes,
margins, gutters, colours, choices and relative sizes.

Each reader names the key it read in its error, so a mistake in a layout file points at the key to
fix and says what to write instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from PIL import ImageColor

from ..errors import shown
from . import LayoutError

__all__ = [
    "MAX_PAGE_PIXELS",
    "MAX_PAGE_PX",
    "PAGE_SIZES",
    "Length",
    "Margins",
    "choice",
    "colour",
    "gutter",
    "length_px",
    "margins",
    "page_size",
    "weight",
]

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
MAX_PAGE_PX = 60000
MAX_PAGE_PIXELS = 150_000_000  # an A4 page at 1200 dpi is 139 million; 450 MB as RGB at most
# Inches per unit; a bare number is millimetres, "px" is taken as device pixels (not scaled by dpi).
_INCHES = {"mm": 1 / 25.4, "cm": 1 / 2.54, "in": 1.0, "pt": 1 / 72}
_LENGTH = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(mm|cm|in|pt|px)?\s*\Z")
_LENGTH_HINT = "write millimetres (a number) or a value with a unit: 10mm, 1cm, 0.5in, 12pt or 40px"

#: Reads one length of a template at its dpi: (value, key for the error message) -> pixels.
Length = Callable[[Any, str], int]


@dataclass(frozen=True)
class Margins:
    top: int
    right: int
    bottom: int
    left: int


def length_px(value: Any, dpi: int, where: str) -> int:
    """Pixels for a length: a bare number is millimetres; px is taken as is."""
    if isinstance(value, bool) or value is None:
        raise LayoutError(f"{where}: {shown(value)} is not a length: {_LENGTH_HINT}")
    if isinstance(value, (int, float)):
        number, unit = (float(value) if abs(value) < 1e300 else math.inf), "mm"
    else:
        match = _LENGTH.match(str(value))
        if match is None:
            raise LayoutError(f"{where}: {shown(value)} is not a length: {_LENGTH_HINT}")
        number, unit = float(match.group(1)), match.group(2) or "mm"
    if not math.isfinite(number):
        raise LayoutError(f"{where}: {shown(value)} is not a length (not a finite number): {_LENGTH_HINT}")
    if number < 0:
        raise LayoutError(f"{where}: a length cannot be negative")
    pixels = number if unit == "px" else number * _INCHES[unit] * dpi
    if pixels > MAX_PAGE_PX:
        raise LayoutError(
            f"{where}: {shown(value)} is {pixels:,.0f} pixels at {dpi} dpi, more than the {MAX_PAGE_PX} a page may have"
        )
    return int(round(pixels))


def page_size(page: dict, kind: str, length: Length, where: str) -> tuple[int, int]:
    """(width, height) of the page in pixels; 0 where the panels decide (a webtoon's height, and
    both for kind ``none``)."""
    if kind == "none":
        if page.get("size") is not None or "width" in page or "height" in page:
            raise LayoutError(
                f"{where}: a 'none' template has no page size (each page is one panel at its own size): keep only page.dpi"
            )
        return 0, 0
    if page.get("size") is not None:
        width, height = _named_size(page, length, where)
        if kind == "webtoon":
            height = 0
    else:
        width, height = _written_size(page, kind, length, where)
    if not 1 <= width <= MAX_PAGE_PX or (kind == "pages" and not 1 <= height <= MAX_PAGE_PX):
        raise LayoutError(
            f"{where}: the page must be from 1 to {MAX_PAGE_PX} pixels wide and high at this dpi, got {width}x{height}"
        )
    if width * height > MAX_PAGE_PIXELS:
        raise LayoutError(
            f"{where}: page: {width:,} x {height:,} pixels at this dpi is more than the {MAX_PAGE_PIXELS:,} a page may "
            "have: use a smaller size or page.dpi"
        )
    return width, height


def _named_size(page: dict, length: Length, where: str) -> tuple[int, int]:
    """A paper size by name, such as ``a4`` or ``b5 landscape``."""
    size = page["size"]
    if "width" in page or "height" in page:
        raise LayoutError(f"{where}: give either page.size or page.width and page.height, not both")
    key = str(size).strip().lower()
    landscape = key.endswith(" landscape")
    key = key.removesuffix(" landscape").strip()
    if key not in PAGE_SIZES:
        raise LayoutError(
            f"{where}: unknown page.size {shown(size)}: choose one of {', '.join(PAGE_SIZES)} (add ' landscape' to turn it), or give width and height"
        )
    w, h = PAGE_SIZES[key]
    width, height = length(w, "page.size"), length(h, "page.size")
    return (height, width) if landscape else (width, height)


def _written_size(page: dict, kind: str, length: Length, where: str) -> tuple[int, int]:
    """A page size given as width and height (a webtoon only has a width)."""
    if "width" not in page:
        raise LayoutError(f"{where}: page needs a size (e.g. size: a4) or a width and height (e.g. width: 210mm)")
    width = length(page["width"], "page.width")
    if kind == "webtoon":
        if "height" in page:
            raise LayoutError(
                f"{where}: a webtoon page has no fixed height (it grows with its panels): remove page.height"
            )
        return width, 0
    if "height" not in page:
        raise LayoutError(f"{where}: page needs a height as well as a width")
    return width, length(page["height"], "page.height")


def margins(value: Any, length: Length, where: str) -> Margins:
    """One length for all sides, or a mapping of top, right, bottom and left."""
    if isinstance(value, dict):
        unknown = [str(k) for k in value if k not in ("top", "right", "bottom", "left")]
        if unknown:
            raise LayoutError(f"{where}: margins: unknown side {shown(unknown[0])}; use top, right, bottom and left")
        sides = {side: length(value.get(side, 0), f"margins.{side}") for side in ("top", "right", "bottom", "left")}
        return Margins(**sides)
    if isinstance(value, list):
        raise LayoutError(f"{where}: margins is one length for all sides, or a mapping {{top, right, bottom, left}}")
    one = length(value, "margins")
    return Margins(one, one, one, one)


def gutter(value: Any, length: Length, where: str) -> tuple[int, int]:
    """(between columns, between rows): one length for both, or a mapping {horizontal, vertical}."""
    if isinstance(value, dict):
        unknown = [str(k) for k in value if k not in ("horizontal", "vertical")]
        if unknown:
            raise LayoutError(
                f"{where}: gutter: unknown key {shown(unknown[0])}; gutter is one length, or a mapping "
                "{horizontal, vertical} (space between columns, between rows)"
            )
        return length(value.get("horizontal", 0), "gutter.horizontal"), length(
            value.get("vertical", 0), "gutter.vertical"
        )
    one = length(value, "gutter")
    return one, one


def colour(value: Any, where: str) -> tuple[int, int, int]:
    """RGB of a colour written as '#rrggbb' or a CSS colour name."""
    if not isinstance(value, str):
        raise LayoutError(f"{where}: a colour is text such as '#ffffff' or 'white', not {shown(value)}")
    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        raise LayoutError(f"{where}: unknown colour {shown(value)}: write '#rrggbb' or a CSS colour name") from None
    if len(rgb) == 4 and rgb[3] != 255:  # '#rrggbbaa', 'rgba(…)': a page is drawn opaque
        raise LayoutError(f"{where}: {shown(value)} is see-through, but pages are opaque: write '#rrggbb' or a name")
    return (rgb[0], rgb[1], rgb[2])


def choice(data: dict, key: str, choices: tuple[str, ...], default: str, where: str) -> str:
    """``data[key]``, one of ``choices`` (``default`` when the key is left out)."""
    value = data.get(key, default)
    if value not in choices:
        raise LayoutError(f"{where}: {key} must be one of {', '.join(choices)}, not {shown(value)}")
    return value


def weight(value: Any, where: str) -> float:
    """A size relative to its siblings (a row's height, a cell's width)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1000:
        raise LayoutError(
            f"{where} must be a number above 0 and at most 1000 (a size relative to the others), not {shown(value)}"
            + _number_as_text_hint(value)
        )
    return float(value)


def _number_as_text_hint(value: Any) -> str:
    """For a number the template file holds as text (quoted, or ``1e3``, which YAML reads as text): how to write it."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    plain = f"{number:f}".rstrip("0").rstrip(".") if math.isfinite(number) and abs(number) < 1e15 else ""
    return f": write the number itself, without quotes or an exponent (e.g. {plain})" if plain else ""
