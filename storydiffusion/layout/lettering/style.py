"""How lettering looks: colours and sizes at scale 1.0, and the same sizes in whole pixels at a page's scale."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LetteringStyle", "Pixels"]

_MIN_FONT_PX = 6  # below this no face is legible, whatever the scale


@dataclass(frozen=True)
class LetteringStyle:
    """Colours and sizes (pixels at scale 1.0, tuned for panel cells about 400-700 px wide).
    Captions are pale yellow boxes with a thin dark border, as in printed comics; bubbles are
    white with a black outline."""

    caption_size: int = 18
    bubble_size: int = 20
    title_size: int = 44
    min_size: int = 9
    margin: int = 6
    padding: int = 7
    gap: int = 8
    outline: int = 2
    caption_border: int = 2
    min_tail: int = 8
    caption_max_fraction: float = 0.35
    caption_fill: tuple[int, int, int] = (255, 246, 190)
    caption_border_color: tuple[int, int, int] = (40, 32, 24)
    text_color: tuple[int, int, int] = (17, 17, 17)
    bubble_fill: tuple[int, int, int] = (255, 255, 255)
    bubble_outline: tuple[int, int, int] = (17, 17, 17)


@dataclass(frozen=True)
class Pixels:
    """A style's lengths in whole pixels at one scale (never below one pixel), and the font sizes
    to try for each kind of text, largest first, down to the style's minimum."""

    margin: int
    padding: int
    title_padding: int
    gap: int
    outline: int
    caption_border: int
    min_tail: int
    caption_sizes: tuple[int, ...]
    bubble_sizes: tuple[int, ...]
    title_sizes: tuple[int, ...]

    @classmethod
    def of(cls, style: LetteringStyle, scale: float) -> Pixels:
        def px(value: float) -> int:
            return max(1, round(value * scale))

        def sizes(nominal: int) -> tuple[int, ...]:
            top = max(_MIN_FONT_PX, round(nominal * scale))
            low = min(top, max(_MIN_FONT_PX, round(style.min_size * scale)))
            return tuple(range(top, low - 1, -1))

        return cls(
            margin=px(style.margin),
            padding=px(style.padding),
            title_padding=px(style.padding / 2),
            gap=px(style.gap),
            outline=px(style.outline),
            caption_border=px(style.caption_border),
            min_tail=px(style.min_tail),
            caption_sizes=sizes(style.caption_size),
            bubble_sizes=sizes(style.bubble_size),
            title_sizes=sizes(style.title_size),
        )
