"""Comic lettering: narration captions, speech bubbles and the page title, drawn onto a page image.

The original tool wrote every text in one Latin font and dropped captions; a comic needs narration
boxes, speech bubbles pointing at their speakers, and glyphs for every script of the story.  This
module decides where each text goes inside a panel cell, how large it can be, and draws it with a
:class:`~storydiffusion.layout.fonts.FontChain` (per-glyph font fallback), so:

* a caption is a light narration box at the top or bottom of the cell, at most ~35 % of its height;
  its font shrinks until the text fits and, at the minimum size, the text is cut with an ellipsis;
* speech bubbles (ellipses, or rounded rectangles when space is short) are laid out in reading order
  in the part of the cell the caption leaves free, never overlapping each other or the caption, each
  with a tail toward where its speaker probably stands (``speakers`` listed left to right);
* nothing is ever drawn outside the cell, and every decision is returned in a
  :class:`LetteringReport` so the layout engine and tests can check it.

All sizes are pixels at ``scale`` 1.0 (tuned for panel cells about 400-700 px wide) and multiplied by
``scale``.  Everything is deterministic: the same input draws the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from PIL import Image, ImageColor, ImageDraw

from .fonts import FontChain, default_font_chain

__all__ = [
    "Box",
    "Bubble",
    "Lettering",
    "LetteringReport",
    "LetteringStyle",
    "TextBlock",
    "box_contains",
    "boxes_overlap",
]

#: A rectangle as (x, y, width, height) in page pixels, like the panel cell given to the drawer.
Box = tuple[int, int, int, int]
Point = tuple[int, int]

_SUPERSAMPLE = 4  # bubble outlines are drawn 4x larger and reduced: smooth, anti-aliased curves


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


@dataclass(frozen=True)
class LetteringStyle:
    """Colours and sizes (pixels at scale 1.0).  Captions are pale yellow boxes with a thin dark
    border, as in printed comics; bubbles are white with a black outline."""

    caption_size: int = 18
    bubble_size: int = 20
    title_size: int = 44
    min_size: int = 9
    margin: int = 6
    padding: int = 7
    gap: int = 8
    outline: int = 2
    caption_border: int = 2
    caption_max_fraction: float = 0.35
    caption_fill: tuple[int, int, int] = (255, 246, 190)
    caption_border_color: tuple[int, int, int] = (40, 32, 24)
    text_color: tuple[int, int, int] = (17, 17, 17)
    bubble_fill: tuple[int, int, int] = (255, 255, 255)
    bubble_outline: tuple[int, int, int] = (17, 17, 17)


@dataclass(frozen=True)
class TextBlock:
    """A caption or title as drawn: its box, the lines actually written, the font size used, the
    bounding box of the ink of the text, and whether the text had to be cut short."""

    text: str
    lines: tuple[str, ...]
    box: Box
    text_box: Box | None
    font_size: int
    truncated: bool


@dataclass(frozen=True)
class Bubble:
    """One speech bubble as drawn: ``box`` is the body (ellipse or rounded rectangle), ``tail`` the
    triangle (two base points inside the body, then the tip), ``order`` its index in the dialogue."""

    speaker: str
    text: str
    lines: tuple[str, ...]
    box: Box
    shape: Literal["ellipse", "rounded"]
    tail: tuple[Point, Point, Point]
    tail_box: Box
    text_box: Box | None
    font_size: int
    truncated: bool
    order: int


@dataclass
class LetteringReport:
    """What was lettered in one cell (or title band), for layout checks and tests."""

    cell: Box
    caption: TextBlock | None = None
    bubbles: list[Bubble] = field(default_factory=list)
    title: TextBlock | None = None
    dropped: list[tuple[str, str]] = field(default_factory=list)
    caption_dropped: bool = False
    missing_characters: frozenset[str] = frozenset()
    direction: str = "ltr"

    @property
    def truncated(self) -> bool:
        """Whether any text was cut short or left out for lack of space."""
        parts = [self.caption, self.title, *self.bubbles]
        return bool(self.dropped or self.caption_dropped or any(p is not None and p.truncated for p in parts))

    @property
    def font_sizes(self) -> dict[str, int]:
        """Font size per element ("caption", "title", "bubble 0", ...)."""
        sizes = {f"bubble {b.order}": b.font_size for b in self.bubbles}
        if self.caption is not None:
            sizes["caption"] = self.caption.font_size
        if self.title is not None:
            sizes["title"] = self.title.font_size
        return sizes

    def boxes(self) -> list[Box]:
        """Every box drawn: caption, bubble bodies and their tails, title."""
        out: list[Box] = []
        if self.caption is not None:
            out.append(self.caption.box)
        for b in self.bubbles:
            out += [b.box, b.tail_box]
        if self.title is not None:
            out.append(self.title.box)
        return out


@dataclass(frozen=True)
class _BubbleShape:
    """A bubble's size before it is placed: text lines and the body size around them."""

    order: int
    speaker: str
    text: str
    lines: tuple[str, ...]
    width: int
    height: int
    shape: Literal["ellipse", "rounded"]
    size: int
    truncated: bool


@dataclass(frozen=True)
class _Region:
    x: int
    y: int
    w: int
    h: int


class Lettering:
    """Letters panels and titles with bundled comic fonts.

    ``fonts`` is the chain for speech and titles (default: bundled bold faces); captions use
    ``caption_fonts`` (default: the regular faces, or ``fonts`` when only that is given).  Fonts are
    loaded once per instance.
    """

    def __init__(
        self,
        scale: float = 1.0,
        fonts: FontChain | None = None,
        caption_fonts: FontChain | None = None,
        style: LetteringStyle | None = None,
    ) -> None:
        if not scale > 0:
            raise ValueError(f"scale must be positive, not {scale!r}")
        self.scale = float(scale)
        self.style = style or LetteringStyle()
        self.fonts = fonts if fonts is not None else default_font_chain("bold")
        if caption_fonts is None:
            caption_fonts = fonts if fonts is not None else default_font_chain("regular")
        self.caption_fonts = caption_fonts

    # ------------------------------------------------------------------------------ sizes

    def _px(self, value: float, floor: int = 1) -> int:
        return max(floor, round(value * self.scale))

    def _sizes(self, nominal: int) -> list[int]:
        """Font sizes to try, largest first: nominal x scale down to the minimum."""
        top = self._px(nominal, 6)
        low = min(top, self._px(self.style.min_size, 6))
        return list(range(top, low - 1, -1))

    # ------------------------------------------------------------------------------ public API

    def draw_panel_text(
        self,
        page_image: Image.Image,
        box: tuple[int, int, int, int],
        caption: str | None,
        dialogue: Sequence[tuple[str, str]],
        speakers: Sequence[str],
        caption_position: str = "top",
        direction: str = "ltr",
    ) -> LetteringReport:
        """Draws the caption and speech bubbles of one panel inside its cell ``box`` (x, y, w, h).

        ``dialogue`` is (speaker, text) in reading order; ``speakers`` are the panel's characters as
        they stand left to right (mirrored for ``direction="rtl"``), used to aim bubble tails.
        """
        if caption_position not in ("top", "bottom"):
            raise ValueError(f"caption_position must be 'top' or 'bottom', not {caption_position!r}")
        if direction not in ("ltr", "rtl"):
            raise ValueError(f"direction must be 'ltr' or 'rtl', not {direction!r}")
        cell: Box = tuple(int(v) for v in box)  # type: ignore[assignment]
        report = LetteringReport(cell=cell, direction=direction)
        missing: set[str] = set()

        if caption is not None:
            caption_text, lost = self.caption_fonts.prepare(caption)
            missing |= lost
            if caption_text.strip():
                report.caption = self._layout_caption(cell, caption, caption_text.strip(), caption_position, direction)
                report.caption_dropped = report.caption is None

        lines: list[tuple[int, str, str, str]] = []  # order, speaker, original, prepared
        for order, (speaker, said) in enumerate(dialogue):
            prepared, lost = self.fonts.prepare(said)
            missing |= lost
            if prepared.strip():
                lines.append((order, speaker, said, prepared.strip()))
        if lines:
            region = self._bubble_region(cell, report.caption, caption_position)
            report.bubbles, dropped = self._layout_bubbles(region, cell, lines, list(speakers), direction)
            report.dropped = [(speaker, said) for _, speaker, said, _ in dropped]
        report.missing_characters = frozenset(missing)

        if report.caption is not None:
            self._draw_caption(page_image, report.caption)
        for bubble in report.bubbles:
            self._draw_bubble(page_image, cell, bubble)
        return report

    def draw_title(self, page_image: Image.Image, box: tuple[int, int, int, int], title: str) -> LetteringReport:
        """Draws ``title`` centred in the band ``box`` (x, y, w, h), as large as fits (up to the
        title size x scale), wrapped and, if it must be, cut with an ellipsis."""
        band: Box = tuple(int(v) for v in box)  # type: ignore[assignment]
        report = LetteringReport(cell=band)
        text, missing = self.fonts.prepare(title)
        report.missing_characters = missing
        text = text.strip()
        pad = self._px(self.style.padding / 2)
        inner_w, inner_h = band[2] - 2 * pad, band[3] - 2 * pad
        if not text or inner_w <= 0 or inner_h <= 0:
            return report
        sizes = [s for s in self._sizes(self.style.title_size) if s <= inner_h] or [
            self._sizes(self.style.title_size)[-1]
        ]
        fitted = _fit_block(self.fonts, text, sizes, inner_w, inner_h)
        if fitted is None:
            return report
        size, lines, truncated = fitted
        chain = self.fonts
        block_h = chain.block_height(len(lines), size)
        top = band[1] + (band[3] - block_h) // 2
        draw = ImageDraw.Draw(page_image)
        color = _color(page_image, self.style.text_color)
        ink: Box | None = None
        for i, line in enumerate(lines):
            x = band[0] + (band[2] - chain.text_width(line, size)) // 2
            y = top + i * chain.line_height(size)
            chain.draw_text(draw, (x, y), line, size, fill=color)
            ink = _union(ink, chain.ink_box((x, y), line, size))
        report.title = TextBlock(title, tuple(lines), band, ink, size, truncated)
        return report

    # ------------------------------------------------------------------------------ caption

    def _layout_caption(self, cell: Box, original: str, text: str, position: str, direction: str) -> TextBlock | None:
        """The caption's box and lines: as large a font as fits in ~35 % of the cell height."""
        st, chain = self.style, self.caption_fonts
        m, inset = self._px(st.margin), self._px(st.padding) + self._px(st.caption_border)
        inner_w, inner_h = cell[2] - 2 * m, cell[3] - 2 * m
        text_w = inner_w - 2 * inset
        if text_w <= 0 or inner_h <= 2 * inset:
            return None
        sizes = self._sizes(st.caption_size)
        one_line = chain.block_height(1, sizes[-1]) + 2 * inset
        limit = min(inner_h, max(math.floor(cell[3] * st.caption_max_fraction), one_line))
        fitted = _fit_block(chain, text, sizes, text_w, limit - 2 * inset)
        if fitted is None:
            return None
        size, lines, truncated = fitted
        width = max(chain.text_width(line, size) for line in lines) + 2 * inset
        height = chain.block_height(len(lines), size) + 2 * inset
        left_side = (position == "top") == (direction == "ltr")  # top-left / bottom-right in ltr
        x = cell[0] + m if left_side else cell[0] + cell[2] - m - width
        y = cell[1] + m if position == "top" else cell[1] + cell[3] - m - height
        ink: Box | None = None
        for i, line in enumerate(lines):
            ink = _union(ink, chain.ink_box((x + inset, y + inset + i * chain.line_height(size)), line, size))
        return TextBlock(original, tuple(lines), (x, y, width, height), ink, size, truncated)

    def _draw_caption(self, page: Image.Image, caption: TextBlock) -> None:
        st, chain = self.style, self.caption_fonts
        x, y, w, h = caption.box
        border = self._px(st.caption_border)
        inset = self._px(st.padding) + border
        draw = ImageDraw.Draw(page)
        draw.rectangle(
            (x, y, x + w - 1, y + h - 1),
            fill=_color(page, st.caption_fill),
            outline=_color(page, st.caption_border_color),
            width=border,
        )
        color = _color(page, st.text_color)
        for i, line in enumerate(caption.lines):
            chain.draw_text(
                draw,
                (x + inset, y + inset + i * chain.line_height(caption.font_size)),
                line,
                caption.font_size,
                fill=color,
            )

    # ------------------------------------------------------------------------------ bubbles

    def _bubble_region(self, cell: Box, caption: TextBlock | None, position: str) -> _Region:
        """The part of the cell left for bubbles: inside the margin, clear of the caption."""
        m, gap = self._px(self.style.margin), self._px(self.style.gap)
        x, y, w, h = cell[0] + m, cell[1] + m, cell[2] - 2 * m, cell[3] - 2 * m
        if caption is not None:
            cy, ch = caption.box[1], caption.box[3]
            if position == "top":
                bottom = y + h
                y = cy + ch + gap
                h = bottom - y
            else:
                h = cy - gap - y
        return _Region(x, y, max(0, w), max(0, h))

    def _tail_length(self, size: int) -> int:
        return max(self._px(8), round(0.9 * self.fonts.line_height(size)))

    def _layout_bubbles(
        self,
        region: _Region,
        cell: Box,
        lines: list[tuple[int, str, str, str]],
        speakers: list[str],
        direction: str,
    ) -> tuple[list[Bubble], list[tuple[int, str, str, str]]]:
        """Finds the largest font, nicest shape and packing where every bubble fits; failing that,
        cuts the bubble that does not fit with an ellipsis and leaves out the ones after it."""
        if region.w <= 0 or region.h <= 0:
            return [], lines
        targets = [self._speaker_x(region, speaker, speakers) for _, speaker, _, _ in lines]
        wraps: dict[tuple[str, int, int], list[str]] = {}
        sizes = self._sizes(self.style.bubble_size)
        for size in sizes:
            for shape in ("ellipse", "rounded"):
                for wide in (False, True):
                    shapes = [self._bubble_shape(region, line, size, shape, wide, wraps) for line in lines]
                    if any(s is None for s in shapes):
                        continue
                    for by_speaker in (True, False):
                        placed = self._pack(region, shapes, targets, size, by_speaker)  # type: ignore[arg-type]
                        if placed is not None:
                            return self._finish(region, cell, shapes, placed, targets, size, direction), []  # type: ignore[arg-type]
        return self._layout_truncated(region, cell, lines, targets, sizes[-1], direction, wraps)

    def _layout_truncated(
        self,
        region: _Region,
        cell: Box,
        lines: list[tuple[int, str, str, str]],
        targets: list[float],
        size: int,
        direction: str,
        wraps: dict[tuple[str, int, int], list[str]],
    ) -> tuple[list[Bubble], list[tuple[int, str, str, str]]]:
        """Smallest font, compact rounded bubbles: keeps the bubbles that fit in reading order, cuts
        the first one that does not to the room left (or, when not one line of it fits, ends the
        last bubble shown with an ellipsis), and leaves out the rest."""
        shapes: list[_BubbleShape] = []
        placed: list[tuple[int, int, int]] = []
        for i, line in enumerate(lines):
            shape = self._bubble_shape(region, line, size, "rounded", True, wraps)
            trial = self._pack(region, [*shapes, shape], targets[: i + 1], size, False) if shape else None
            if trial is not None and shape is not None:
                shapes.append(shape)
                placed = trial
                continue
            room = region.h - self._used_height(placed, shapes, size) - self._tail_length(size)
            cut = self._bubble_shape(region, line, size, "rounded", True, wraps, max_height=room, ellipsis=True)
            trial = self._pack(region, [*shapes, cut], targets[: i + 1], size, False) if cut else None
            if trial is not None and cut is not None:
                shapes.append(cut)
                placed = trial
                rest = lines[i + 1 :]
            else:
                rest = lines[i:]
                if shapes:
                    last = shapes[-1]
                    marked = self._bubble_shape(
                        region, lines[i - 1], size, "rounded", True, wraps, max_height=last.height, ellipsis=True
                    )
                    trial = self._pack(region, [*shapes[:-1], marked], targets[:i], size, False) if marked else None
                    if trial is not None and marked is not None:
                        shapes[-1] = marked
                        placed = trial
            return self._finish(region, cell, shapes, placed, targets, size, direction), rest
        return self._finish(region, cell, shapes, placed, targets, size, direction), []

    def _used_height(self, placed: list[tuple[int, int, int]], shapes: list[_BubbleShape], size: int) -> int:
        """Height taken by the rows already packed, with their tails and the gap after them."""
        if not placed:
            return 0
        bottom = max(y + s.height for (_, y, _), s in zip(placed, shapes))
        return bottom + self._tail_length(size) + self._px(self.style.gap)

    def _speaker_x(self, region: _Region, speaker: str, speakers: list[str]) -> float:
        """Where the speaker probably stands, in reading coordinates (0 = where reading starts):
        characters stand in the order of ``speakers``; an unknown speaker is taken as centred."""
        if speaker in speakers:
            return region.w * (speakers.index(speaker) + 0.5) / len(speakers)
        return region.w / 2

    def _bubble_shape(
        self,
        region: _Region,
        line: tuple[int, str, str, str],
        size: int,
        shape: Literal["ellipse", "rounded"],
        wide: bool,
        wraps: dict[tuple[str, int, int], list[str]],
        max_height: int | None = None,
        ellipsis: bool = False,
    ) -> _BubbleShape | None:
        """Wraps one speech text and sizes its bubble; None when it cannot fit the region.  With
        ``max_height``, lines that do not fit are cut and the last kept one ends with an ellipsis
        (always, with ``ellipsis``: the text goes on in bubbles that were left out)."""
        order, speaker, original, text = line
        chain = self.fonts
        inset = self._px(self.style.padding) + self._px(self.style.outline)
        factor = 1.42 if shape == "ellipse" else 1.0
        max_text_w = math.floor((region.w - 2 * inset) / factor)
        if max_text_w <= 0:
            return None
        lh = chain.line_height(size)
        if wide:
            wrap_w = max_text_w
        else:  # aim at a text block about 3:1 wide, as lettered bubbles are
            natural = chain.text_width(text, size)
            wrap_w = int(min(max_text_w, max(math.sqrt(3.0 * natural * lh), min(natural, 5 * lh))))
        key = (text, size, wrap_w)
        if key not in wraps:
            wraps[key] = chain.wrap(text, size, wrap_w)
        lines = list(wraps[key])
        truncated = False
        if max_height is not None:
            fit_h = max_height - 2 * inset
            keep = 0
            while keep < len(lines) and chain.block_height(keep + 1, size) <= fit_h:
                keep += 1
            if keep == 0:
                return None
            if keep < len(lines) or ellipsis or any(chain.text_width(ln, size) > max_text_w for ln in lines):
                lines = lines[:keep]
                lines[-1] = _ellipsize(chain, lines[-1], size, max_text_w, force=ellipsis or keep < len(wraps[key]))
                lines = [
                    ln if chain.text_width(ln, size) <= max_text_w else _ellipsize(chain, ln, size, max_text_w)
                    for ln in lines
                ]
                truncated = True
        if not lines or any(not ln or chain.text_width(ln, size) > max_text_w for ln in lines):
            return None
        width, height = self._body_size(lines, size, shape)
        if width > region.w or height > region.h:
            return None
        return _BubbleShape(order, speaker, original, tuple(lines), width, height, shape, size, truncated)

    def _body_size(self, lines: list[str], size: int, shape: str) -> tuple[int, int]:
        """Body size around centred text lines.  For an ellipse, the smallest (and not too flat)
        ellipse from a few candidates that holds every line's box, so short first/last lines make
        it rounder."""
        chain = self.fonts
        pad, lw = self._px(self.style.padding), self._px(self.style.outline)
        widths = [chain.text_width(ln, size) for ln in lines]
        block_h = chain.block_height(len(lines), size)
        if shape == "rounded":
            return max(widths) + 2 * (pad + lw), block_h + 2 * (pad + lw)
        lh, m = chain.line_height(size), chain.metrics(size)
        half_h = block_h / 2 + pad * 0.5
        best: tuple[float, float, float] | None = None
        for k in (1.15, 1.25, 1.35, 1.45, 1.6, 1.8, 2.0, 2.2, 2.4):
            b = half_h * k
            a = 0.0
            for i, w in enumerate(widths):
                top = -block_h / 2 + i * lh  # this line's box, relative to the text block's centre
                reach = max(abs(top), abs(top + m.ascent + m.descent)) + pad * 0.25
                a = max(a, (w / 2 + pad * 0.6) / math.sqrt(max(1e-6, 1 - (reach / b) ** 2)))
            # Smallest area, but flat ellipses (wider than ~2.3:1) read as lozenges: penalise them.
            score = a * b * max(1.0, a / (2.3 * b)) ** 2
            if best is None or score < best[0]:
                best = (score, a, b)
        assert best is not None
        _, a, b = best
        return math.ceil(2 * (a + lw)), math.ceil(2 * (b + lw))

    def _pack(
        self,
        region: _Region,
        shapes: list[_BubbleShape],
        targets: list[float],
        size: int,
        by_speaker: bool,
    ) -> list[tuple[int, int, int]] | None:
        """Places bubbles in rows, in reading order (reading coordinates: x from where reading
        starts).  A row takes bubbles while they fit side by side (and, ``by_speaker``, while the
        next speaker does not stand before the previous one, so tails never cross); each later
        bubble in a row sits a little lower; rows leave room for the tails below them.  Returns
        (x, y, row) per bubble, or None when they do not all fit."""
        gap, tail = self._px(self.style.gap), self._tail_length(size)
        rows: list[list[int]] = []
        for i, s in enumerate(shapes):
            if s.width > region.w:
                return None
            if rows:
                row = rows[-1]
                used = sum(shapes[j].width for j in row) + gap * len(row)
                turned = by_speaker and targets[i] < targets[row[-1]] - 1
                if used + s.width <= region.w and not turned:
                    row.append(i)
                    continue
            rows.append([i])
        stagger_step = round(0.6 * self.fonts.line_height(size))
        for stagger in (stagger_step, 0):
            total = 0
            heights = []
            for r, row in enumerate(rows):
                rh = max(shapes[j].height + stagger * k for k, j in enumerate(row))
                heights.append(rh)
                total += rh + tail + (gap if r < len(rows) - 1 else 0)
            if total <= region.h:
                break
        else:
            return None
        placed: list[tuple[int, int, int]] = [(0, 0, 0)] * len(shapes)
        top = 0
        for r, row in enumerate(rows):
            xs = [min(max(targets[j] - shapes[j].width / 2, 0), region.w - shapes[j].width) for j in row]
            for k in range(1, len(row)):  # push right past the bubble before
                xs[k] = max(xs[k], xs[k - 1] + shapes[row[k - 1]].width + gap)
            for k in range(len(row) - 1, -1, -1):  # pull back left inside the region
                limit = region.w - shapes[row[k]].width if k == len(row) - 1 else xs[k + 1] - gap - shapes[row[k]].width
                xs[k] = min(xs[k], limit)
            for k, j in enumerate(row):
                placed[j] = (math.floor(xs[k]), top + stagger * k, r)
            top += heights[r] + tail + gap
        return placed

    def _finish(
        self,
        region: _Region,
        cell: Box,
        shapes: list[_BubbleShape],
        placed: list[tuple[int, int, int]],
        targets: list[float],
        size: int,
        direction: str,
    ) -> list[Bubble]:
        """Turns packed bubbles into page coordinates (mirrored for rtl) and aims their tails."""
        if not shapes:
            return []
        chain = self.fonts
        tail = self._tail_length(size)
        row_bottom: dict[int, int] = {}
        for (_x, y, r), s in zip(placed, shapes):
            row_bottom[r] = max(row_bottom.get(r, 0), y + s.height)
        last_row = max(row_bottom)
        spare = region.h - (row_bottom[last_row] + tail)
        bubbles: list[Bubble] = []
        lw = self._px(self.style.outline)
        for (x, y, r), s, target in zip(placed, shapes, targets):
            # Below its own body the bubble's column is clear down to its row's bottom plus the tail
            # room (neighbours in a row never share x); the last row may use some spare room.
            length = tail + (min(spare, tail // 2) if r == last_row else 0)
            tip_y = y + s.height + length
            tip_x = min(max(target, x + 0.2 * s.width), x + 0.8 * s.width)
            cx = x + s.width / 2
            base_x = cx + 0.45 * (tip_x - cx)
            half = max(lw * 3, min(0.2 * s.width, 0.55 * chain.line_height(size)))
            depth = 2 * lw + 1
            base = []
            for bx in (base_x - half, base_x + half):
                if s.shape == "ellipse":
                    a, b = s.width / 2 - lw, s.height / 2 - lw
                    u = (bx - cx) / a
                    by = y + s.height / 2 + b * math.sqrt(max(0.0, 1 - u * u)) - depth
                else:
                    by = y + s.height - depth - lw
                base.append((bx, by))
            points = [*base, (tip_x, tip_y)]
            if direction == "rtl":  # mirror reading coordinates into the page
                x = region.w - x - s.width
                points = [(region.w - px, py) for px, py in points]
            page_pts = [(round(px + region.x), round(py + region.y)) for px, py in points]
            body: Box = (x + region.x, y + region.y, s.width, s.height)
            xs = [p[0] for p in page_pts]
            ys = [p[1] for p in page_pts]
            tail_box: Box = (min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)
            ink: Box | None = None
            for i, (lx, ly) in enumerate(self._text_origins(body, s)):
                ink = _union(ink, chain.ink_box((lx, ly), s.lines[i], size))
            bubbles.append(
                Bubble(
                    s.speaker,
                    s.text,
                    s.lines,
                    body,
                    s.shape,
                    tuple(page_pts),
                    tail_box,
                    ink,  # type: ignore[arg-type]
                    size,
                    s.truncated,
                    s.order,
                )
            )
        return bubbles

    def _text_origins(self, body: Box, s: _BubbleShape | Bubble) -> list[tuple[int, int]]:
        """Top-left corner of each centred text line in a bubble body."""
        chain = self.fonts
        size = s.size if isinstance(s, _BubbleShape) else s.font_size
        block_h = chain.block_height(len(s.lines), size)
        top = body[1] + (body[3] - block_h) // 2
        return [
            (body[0] + (body[2] - chain.text_width(ln, size)) // 2, top + i * chain.line_height(size))
            for i, ln in enumerate(s.lines)
        ]

    def _draw_bubble(self, page: Image.Image, cell: Box, bubble: Bubble) -> None:
        """Draws body and tail anti-aliased (4x supersampled masks): the outline colour fills the
        whole shape, then the fill colour its inset, so the tail joins the body without a seam."""
        st = self.style
        lw = self._px(st.outline)
        ss = _SUPERSAMPLE
        bx, by, bw, bh = bubble.box
        tx, ty, tw, th = bubble.tail_box
        left, top = min(bx, tx), min(by, ty)
        right, bottom = max(bx + bw, tx + tw), max(by + bh, ty + th)
        size = ((right - left) * ss, (bottom - top) * ss)
        outer, inner = Image.new("L", size, 0), Image.new("L", size, 0)
        do, di = ImageDraw.Draw(outer), ImageDraw.Draw(inner)

        def sc(p: tuple[float, float]) -> tuple[float, float]:
            return ((p[0] - left) * ss, (p[1] - top) * ss)

        body = [*sc((bx, by)), *sc((bx + bw, by + bh))]
        body = [body[0], body[1], body[2] - 1, body[3] - 1]
        ins = lw * ss
        body_in = [body[0] + ins, body[1] + ins, body[2] - ins, body[3] - ins]
        tail = [sc(p) for p in bubble.tail]
        tail_in = _inset_triangle(tail, ins)
        if bubble.shape == "ellipse":
            do.ellipse(body, fill=255)
            di.ellipse(body_in, fill=255)
        else:
            radius = min(bh / 2, self.fonts.line_height(bubble.font_size) * 0.9) * ss
            do.rounded_rectangle(body, radius=radius, fill=255)
            di.rounded_rectangle(body_in, radius=max(0, radius - ins), fill=255)
        do.polygon(tail, fill=255)
        if tail_in is not None:
            di.polygon(tail_in, fill=255)
        outer_mask, inner_mask = outer.reduce(ss), inner.reduce(ss)
        page.paste(_color(page, st.bubble_outline), (left, top), outer_mask)
        page.paste(_color(page, st.bubble_fill), (left, top), inner_mask)
        draw = ImageDraw.Draw(page)
        color = _color(page, st.text_color)
        for (lx, ly), line in zip(self._text_origins(bubble.box, bubble), bubble.lines):
            self.fonts.draw_text(draw, (lx, ly), line, bubble.font_size, fill=color)


# ---------------------------------------------------------------------------------------- helpers


def _fit_block(
    chain: FontChain, text: str, sizes: list[int], max_w: int, max_h: int
) -> tuple[int, list[str], bool] | None:
    """Largest size in ``sizes`` at which ``text`` wraps within ``max_w`` x ``max_h``; at the last
    size, the lines that fit with the last one cut by an ellipsis.  None when not even one line fits."""
    lines: list[str] = []
    for size in sizes:
        lines = chain.wrap(text, size, max_w)
        if (
            lines
            and chain.block_height(len(lines), size) <= max_h
            and all(chain.text_width(ln, size) <= max_w for ln in lines)
        ):
            return size, lines, False
    size = sizes[-1]
    keep = 0
    while keep < len(lines) and chain.block_height(keep + 1, size) <= max_h:
        keep += 1
    if keep == 0:
        return None
    cut = lines[:keep]
    cut[-1] = _ellipsize(chain, cut[-1], size, max_w, force=keep < len(lines))
    cut = [ln if chain.text_width(ln, size) <= max_w else _ellipsize(chain, ln, size, max_w) for ln in cut]
    if not cut[0]:
        return None
    return size, cut, True


def _ellipsize(chain: FontChain, line: str, size: int, max_w: int, force: bool = True) -> str:
    """``line`` shortened to end with an ellipsis within ``max_w`` ("" when not even that fits)."""
    if not force and chain.text_width(line, size) <= max_w:
        return line
    mark = "\u2026" if chain.covers("\u2026") else "..."
    kept = line.rstrip()
    while kept and chain.text_width(kept + mark, size) > max_w:
        kept = kept[:-1].rstrip()
    kept = kept.rstrip(",;:.-… ")
    if chain.text_width(kept + mark, size) > max_w:
        return ""
    return kept + mark


def _union(a: Box | None, ink: tuple[int, int, int, int] | None) -> Box | None:
    """Grows box ``a`` (x, y, w, h) by an ink box (left, top, right, bottom)."""
    if ink is None:
        return a
    if a is None:
        return (ink[0], ink[1], ink[2] - ink[0], ink[3] - ink[1])
    left, top = min(a[0], ink[0]), min(a[1], ink[1])
    right, bottom = max(a[0] + a[2], ink[2]), max(a[1] + a[3], ink[3])
    return (left, top, right - left, bottom - top)


def _inset_triangle(points: list[tuple[float, float]], d: float) -> list[tuple[float, float]] | None:
    """The triangle shrunk by ``d`` on every side (a homothety about its incentre); None when it
    is too thin to have an inside."""
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


def _color(page: Image.Image, rgb: tuple[int, int, int]) -> int | tuple[int, ...]:
    """An RGB colour in the page's mode (grey level for "L", opaque for "RGBA")."""
    return ImageColor.getcolor("#{:02x}{:02x}{:02x}".format(*rgb), page.mode)
