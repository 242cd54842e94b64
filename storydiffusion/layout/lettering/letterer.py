"""The letterer: captions and speech bubbles of one panel cell, or the page title, placed then drawn."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from .bubble_layout import bubble_region, layout_bubbles
from .bubble_shape import Speech
from .captions import place_caption, place_title
from .drawing import draw_bubble, draw_caption, draw_lines
from .fitting import centred_origins
from .fonts import FontChain, default_font_chain
from .geometry import Box
from .report import LetteringReport
from .style import LetteringStyle, Pixels

__all__ = ["Lettering"]


class Lettering:
    """Letters panels and titles with bundled comic fonts.

    ``fonts`` is the chain for speech and titles (default: bundled bold faces); captions use
    ``caption_fonts`` (default: the regular faces, or ``fonts`` when only that is given). Fonts are
    loaded once per instance. Sizes in ``style`` are multiplied by ``scale``.
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
        self.px = Pixels.of(self.style, self.scale)
        self.fonts = fonts if fonts is not None else default_font_chain("bold")
        if caption_fonts is None:
            caption_fonts = fonts if fonts is not None else default_font_chain("regular")
        self.caption_fonts = caption_fonts

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
        caption_fonts = self.caption_fonts
        if caption is not None:
            caption_fonts, lost = self._place_caption(report, caption, caption_position)
            missing |= lost
        speeches, lost = self._speeches(dialogue)
        missing |= lost
        bubble_fonts = self.fonts.for_text("".join(speech.text for speech in speeches))  # one line height a cell
        if speeches:
            region = bubble_region(self.px, cell, report.caption, caption_position)
            report.bubbles, dropped = layout_bubbles(bubble_fonts, self.px, region, speeches, speakers, direction)
            report.dropped = [(speech.speaker, speech.text) for speech in dropped]
        report.missing_characters = frozenset(missing)
        if report.caption is not None:
            draw_caption(page_image, report.caption, caption_fonts, self.px, self.style)
        for bubble in report.bubbles:
            draw_bubble(page_image, bubble, bubble_fonts, self.px, self.style)
        return report

    def draw_title(self, page_image: Image.Image, box: tuple[int, int, int, int], title: str) -> LetteringReport:
        """Draws ``title`` centred in the band ``box`` (x, y, w, h), as large as fits (up to the
        title size x scale), wrapped and, if it must be, cut with an ellipsis."""
        band: Box = tuple(int(v) for v in box)  # type: ignore[assignment]
        text, missing = self.fonts.prepare(title)
        fonts = self.fonts.for_text(text)
        report = LetteringReport(cell=band, missing_characters=missing)
        report.title = place_title(fonts, self.px, band, title, text.strip())
        report.title_dropped = report.title is None and bool(text.strip())  # no room at any size: said, not hidden
        if report.title is not None:
            lines, size = report.title.lines, report.title.font_size
            draw_lines(page_image, fonts, centred_origins(fonts, band, lines, size), lines, size, self.style)
        return report

    def _place_caption(self, report: LetteringReport, caption: str, position: str) -> tuple[FontChain, frozenset[str]]:
        """Places the caption into ``report``; returns the chain it is lettered with and the characters no
        caption face has."""
        prepared, missing = self.caption_fonts.prepare(caption)
        fonts = self.caption_fonts.for_text(prepared)
        if prepared.strip():
            report.caption = place_caption(
                fonts,
                self.px,
                report.cell,
                caption,
                prepared.strip(),
                position,
                report.direction,
                self.style.caption_max_fraction,
            )
            report.caption_dropped = report.caption is None
        return fonts, missing

    def _speeches(self, dialogue: Sequence[tuple[str, str]]) -> tuple[list[Speech], set[str]]:
        """The dialogue lines that have something to draw, and the characters no face has."""
        speeches, missing = [], set()
        for order, (speaker, said) in enumerate(dialogue):
            prepared, lost = self.fonts.prepare(said)
            missing |= lost
            if prepared.strip():
                speeches.append(Speech(order, speaker, said, prepared.strip()))
        return speeches, missing
