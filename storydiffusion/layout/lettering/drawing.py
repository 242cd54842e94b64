"""Drawing lettering that has been placed: caption boxes, bubbles with their tails, and text lines.

Placement decides every box first (see ``captions``, ``bubble_layout``); this module only paints
them, so what the report says is exactly what is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageColor, ImageDraw

from .captions import caption_origins
from .fitting import centred_origins
from .fonts import FontChain
from .geometry import Point, inset_triangle
from .report import Bubble, TextBlock
from .style import LetteringStyle, Pixels

__all__ = ["draw_bubble", "draw_caption", "draw_lines", "page_color"]

_SUPERSAMPLE = 4  # bubble outlines are drawn 4x larger and reduced: smooth, anti-aliased curves


def page_color(page: Image.Image, rgb: tuple[int, int, int]) -> int | tuple[int, ...]:
    """An RGB colour in the page's mode (grey level for "L", opaque for "RGBA")."""
    return ImageColor.getcolor("#{:02x}{:02x}{:02x}".format(*rgb), page.mode)


def draw_lines(
    page: Image.Image,
    chain: FontChain,
    origins: Sequence[Point],
    lines: Sequence[str],
    size: int,
    style: LetteringStyle,
) -> None:
    """Text lines in the style's text colour, each with its top-left corner at its origin."""
    draw = ImageDraw.Draw(page)
    color = page_color(page, style.text_color)
    for origin, line in zip(origins, lines):
        chain.draw_text(draw, origin, line, size, fill=color)


def draw_caption(page: Image.Image, caption: TextBlock, chain: FontChain, px: Pixels, style: LetteringStyle) -> None:
    """The caption's box (fill and border) and its lines."""
    x, y, w, h = caption.box
    ImageDraw.Draw(page).rectangle(
        (x, y, x + w - 1, y + h - 1),
        fill=page_color(page, style.caption_fill),
        outline=page_color(page, style.caption_border_color),
        width=px.caption_border,
    )
    origins = caption_origins(chain, px, caption.box, caption.lines, caption.font_size)
    draw_lines(page, chain, origins, caption.lines, caption.font_size, style)


def draw_bubble(page: Image.Image, bubble: Bubble, chain: FontChain, px: Pixels, style: LetteringStyle) -> None:
    """The bubble's body and tail, then its lines centred in the body."""
    corner_radius = min(bubble.box[3] / 2, chain.line_height(bubble.font_size) * 0.9)
    _draw_shape(page, bubble, corner_radius, px, style)
    origins = centred_origins(chain, bubble.box, bubble.lines, bubble.font_size)
    draw_lines(page, chain, origins, bubble.lines, bubble.font_size, style)


def _draw_shape(page: Image.Image, bubble: Bubble, corner_radius: float, px: Pixels, style: LetteringStyle) -> None:
    """Body and tail, anti-aliased (supersampled masks): the outline colour fills the whole shape,
    then the fill colour its inset, so the tail joins the body without a seam."""
    bx, by, bw, bh = bubble.box
    tx, ty, tw, th = bubble.tail_box
    left, top = min(bx, tx), min(by, ty)
    size = ((max(bx + bw, tx + tw) - left) * _SUPERSAMPLE, (max(by + bh, ty + th) - top) * _SUPERSAMPLE)
    outer, inner = Image.new("L", size, 0), Image.new("L", size, 0)
    inset = px.outline * _SUPERSAMPLE

    def scaled(p: tuple[float, float]) -> tuple[float, float]:
        return ((p[0] - left) * _SUPERSAMPLE, (p[1] - top) * _SUPERSAMPLE)

    body = [*scaled((bx, by)), *scaled((bx + bw, by + bh))]
    body = [body[0], body[1], body[2] - 1, body[3] - 1]
    body_in = [body[0] + inset, body[1] + inset, body[2] - inset, body[3] - inset]
    _draw_body(ImageDraw.Draw(outer), ImageDraw.Draw(inner), bubble.shape, body, body_in, corner_radius, inset)
    tail = [scaled(p) for p in bubble.tail]
    ImageDraw.Draw(outer).polygon(tail, fill=255)
    tail_in = inset_triangle(tail, inset)
    if tail_in is not None:
        ImageDraw.Draw(inner).polygon(tail_in, fill=255)
    page.paste(page_color(page, style.bubble_outline), (left, top), outer.reduce(_SUPERSAMPLE))
    page.paste(page_color(page, style.bubble_fill), (left, top), inner.reduce(_SUPERSAMPLE))


def _draw_body(
    outer: ImageDraw.ImageDraw,
    inner: ImageDraw.ImageDraw,
    shape: str,
    body: list[float],
    body_in: list[float],
    corner_radius: float,
    inset: int,
) -> None:
    if shape == "ellipse":
        outer.ellipse(body, fill=255)
        inner.ellipse(body_in, fill=255)
        return
    radius = corner_radius * _SUPERSAMPLE
    outer.rounded_rectangle(body, radius=radius, fill=255)
    inner.rounded_rectangle(body_in, radius=max(0, radius - inset), fill=255)
