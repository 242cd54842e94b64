"""Drawing pages: background, each panel fitted into its cell inside the border, then the lettering.

Panels are given as images or as files; a file is read only when its cell is drawn, so composing
a long story holds one panel in memory at a time, never all of them. Files go through
``images.read_image``: a broken or oversized one raises ImageInputError naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from PIL import Image, ImageDraw

from ..errors import ImageInputError
from ..images import read_image
from .fit import fit_image
from .paginate import Cell, PageLayout
from .templates import PageTemplate

if TYPE_CHECKING:
    from ..story import Story

__all__ = ["render_page", "render_pages", "make_lettering", "lettering_scale"]

PanelSource = Union[Image.Image, str, "os.PathLike[str]"]  # noqa: UP007 (a string member needs Union)
PanelImages = Mapping[int, PanelSource] | Sequence[PanelSource]
# Lettering sizes are designed for 150 dpi pages and scale with the page resolution.
LETTERING_DPI = 150


def lettering_scale(template: PageTemplate) -> float:
    return template.dpi / LETTERING_DPI


def make_lettering(template: PageTemplate) -> Any:
    """The lettering engine for this template's resolution (it loads its fonts once)."""
    from .lettering import Lettering

    return Lettering(scale=lettering_scale(template))


def render_pages(
    layouts: Sequence[PageLayout],
    panel_images: PanelImages,
    story: Story | None,
    template: PageTemplate,
    *,
    title: str | None = None,
    lettering: bool | Any = True,
    warnings: list[str] | None = None,
) -> list[Image.Image]:
    """Every page as an RGB image. ``panel_images[i]`` is panel ``i`` (as the cells number them).

    ``lettering`` is True (captions and speech from ``story``, title on the first page), False
    (pictures only) or a ready lettering object. ``title`` is drawn in the first page's title band.
    Text cut short for lack of room, or without a font, is reported into ``warnings``.
    """
    letterer = make_lettering(template) if lettering is True else (lettering or None)
    if letterer is not None and story is None:
        raise ValueError("lettering needs the story (its captions and dialogue)")
    return [
        render_page(
            layout,
            panel_images,
            template,
            story=story,
            letterer=letterer,
            title=title if n == 0 else None,
            warnings=warnings,
        )
        for n, layout in enumerate(layouts)
    ]


def render_page(
    layout: PageLayout,
    panel_images: PanelImages,
    template: PageTemplate,
    *,
    story: Story | None = None,
    letterer: Any = None,
    title: str | None = None,
    warnings: list[str] | None = None,
) -> Image.Image:
    """One page: background, panels, borders; lettering last so bubbles may overlap borders."""
    page = Image.new("RGB", (layout.width, layout.height), template.background)
    draw = ImageDraw.Draw(page)
    bw = template.border_width
    for cell in layout.cells:
        inner_w, inner_h = cell.w - 2 * bw, cell.h - 2 * bw
        image = _panel_image(panel_images[cell.panel_index], template.background)
        fitted = fit_image(image, inner_w, inner_h, template.fit, template.background)
        page.paste(fitted, (cell.x + bw, cell.y + bw))
        if bw > 0:
            draw.rectangle(
                (cell.x, cell.y, cell.x + cell.w - 1, cell.y + cell.h - 1), outline=template.border_color, width=bw
            )
    if letterer is not None and story is not None:
        for cell in layout.cells:
            report = _letter_cell(letterer, page, cell, story, template)
            _note(report, f"panel {cell.panel_index + 1}", warnings)
        if title and layout.title_box is not None:
            advice = "shorten it, or give the page more room (a larger --dpi, or the layout's title_height)"
            _note(letterer.draw_title(page, layout.title_box, title), "the title", warnings, advice)
    return page


def _note(
    report: Any, label: str, warnings: list[str] | None, advice: str = "shorten it, or use a layout with bigger cells"
) -> None:
    """Turn a lettering report into warnings a user can act on."""
    if warnings is None or report is None:
        return
    if getattr(report, "truncated", False):
        warnings.append(f"{label}: text cut short or left out for lack of room: {advice}")
    missing = getattr(report, "missing_characters", None)
    if missing:
        from .lettering.coverage import describe_missing

        warnings.append(f"{label}: no bundled font has {describe_missing(missing)}: they are left out")


def _letter_cell(letterer: Any, page: Image.Image, cell: Cell, story: Story, template: PageTemplate) -> Any:
    i = cell.panel_index
    if not 0 <= i < len(story.panels):
        return None
    dialogue = [(line.speaker, line.text) for line in story.panel_dialogue(i)]
    caption = story.panel_caption(i)
    if caption is None and not dialogue:
        return None
    return letterer.draw_panel_text(
        page,
        cell.box,
        caption,
        dialogue,
        list(story.panels[i].characters),
        caption_position=template.caption_position,
        direction=template.direction,
    )


# How a panel file damaged since it was drawn comes back: said wherever one is refused.
REDRAW_THE_PANEL = (
    "delete it and draw the panel again (generate with the same story and --out draws a missing panel, "
    "keeping the others)"
)


def _panel_image(source: PanelSource, background: tuple[int, int, int]) -> Image.Image:
    """An image as given, or a user's file read now through the one checked gate (``images.read_image``)."""
    if isinstance(source, Image.Image):
        return source
    try:
        return read_image(source, background=background)
    except ImageInputError as error:  # a panel file damaged since it was drawn: say how to get it back
        raise ImageInputError(f"{error}; {REDRAW_THE_PANEL}") from None
