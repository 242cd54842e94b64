"""Text in a box: the largest font size at which it wraps inside (else the lines that fit, cut with an
ellipsis), and where its lines go. Shared by captions, titles and speech bubbles."""

from __future__ import annotations

from collections.abc import Sequence

from .fonts import FontChain
from .geometry import Box, Point, grow_box

__all__ = ["centred_origins", "cut_lines", "ellipsize", "fit_block", "ink_of", "lines_that_fit"]


def fit_block(
    chain: FontChain, text: str, sizes: Sequence[int], max_w: int, max_h: int
) -> tuple[int, list[str], bool] | None:
    """(size, lines, truncated): the largest size in ``sizes`` at which ``text`` wraps within
    ``max_w`` x ``max_h``; failing that, at the last size, the lines that fit with the last one cut
    by an ellipsis. None when not even one line fits."""
    lines: list[str] = []
    for size in sizes:
        # One line more than the box holds tells that it overflows: the rest of a long text is never wrapped.
        lines = chain.wrap(text, size, max_w, max_lines=lines_that_fit(chain, len(text) + 1, size, max_h) + 1)
        if lines and chain.block_height(len(lines), size) <= max_h and _within(chain, lines, size, max_w):
            return size, lines, False
    size = sizes[-1]
    cut = cut_lines(chain, lines, size, max_w, max_h)
    if not cut or not cut[0]:
        return None
    return size, cut, True


def lines_that_fit(chain: FontChain, count: int, size: int, max_h: int) -> int:
    """How many of ``count`` lines at ``size`` fit in a height of ``max_h`` pixels."""
    keep = 0
    while keep < count and chain.block_height(keep + 1, size) <= max_h:
        keep += 1
    return keep


def cut_lines(
    chain: FontChain, lines: Sequence[str], size: int, max_w: int, max_h: int, mark_end: bool = False
) -> list[str]:
    """The first ``lines`` that fit in ``max_h``, each within ``max_w``; the last ends with an
    ellipsis when lines were left out (always, with ``mark_end``). Empty when not one line fits."""
    keep = lines_that_fit(chain, len(lines), size, max_h)
    if keep == 0:
        return []
    cut = list(lines[:keep])
    cut[-1] = ellipsize(chain, cut[-1], size, max_w, force=mark_end or keep < len(lines))
    return [line if chain.text_width(line, size) <= max_w else ellipsize(chain, line, size, max_w) for line in cut]


def ellipsize(chain: FontChain, line: str, size: int, max_w: int, force: bool = True) -> str:
    """``line`` shortened to end with an ellipsis within ``max_w`` ("" when not even that fits);
    unchanged when it fits and ``force`` is off."""
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


def centred_origins(chain: FontChain, box: Box, lines: Sequence[str], size: int) -> list[Point]:
    """Top-left corner of each line of a block centred in ``box``, each line centred on its own."""
    top = box[1] + (box[3] - chain.block_height(len(lines), size)) // 2
    return [
        (box[0] + (box[2] - chain.text_width(line, size)) // 2, top + i * chain.line_height(size))
        for i, line in enumerate(lines)
    ]


def ink_of(chain: FontChain, origins: Sequence[Point], lines: Sequence[str], size: int) -> Box | None:
    """The bounding box of the pixels that drawing ``lines`` at ``origins`` touches."""
    ink: Box | None = None
    for origin, line in zip(origins, lines):
        ink = grow_box(ink, chain.ink_box(origin, line, size))
    return ink


def _within(chain: FontChain, lines: Sequence[str], size: int, max_w: int) -> bool:
    return all(chain.text_width(line, size) <= max_w for line in lines)
