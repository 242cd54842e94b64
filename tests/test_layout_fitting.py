"""Fitting text into a box: the largest size that fits, lines cut with an ellipsis, centred lines."""

from __future__ import annotations

import pytest

from storydiffusion.layout.lettering.fitting import centred_origins, cut_lines, ellipsize, fit_block, ink_of
from storydiffusion.layout.lettering.fonts import FontChain, default_font_chain

LONG = "Meanwhile, far across the sleeping city, the old clock tower struck midnight once more."
SIZES = list(range(20, 8, -1))
ELLIPSIS = "\u2026"


@pytest.fixture(scope="module")
def chain() -> FontChain:
    return default_font_chain("regular")


def _fits(chain: FontChain, lines: list[str], size: int, max_w: int, max_h: int) -> bool:
    return chain.block_height(len(lines), size) <= max_h and all(chain.text_width(ln, size) <= max_w for ln in lines)


def test_the_largest_size_that_fits_is_chosen(chain: FontChain) -> None:
    size, lines, truncated = fit_block(chain, "Hi there!", SIZES, 400, 100)
    assert (size, lines, truncated) == (20, ["Hi there!"], False)
    size, lines, truncated = fit_block(chain, LONG, SIZES, 200, 90)
    assert not truncated and _fits(chain, lines, size, 200, 90)
    assert size == SIZES[0] or not _fits(chain, chain.wrap(LONG, size + 1, 200), size + 1, 200, 90)
    assert " ".join(lines) == LONG


def test_text_that_never_fits_is_cut_at_the_smallest_size(chain: FontChain) -> None:
    size, lines, truncated = fit_block(chain, LONG * 4, SIZES, 150, 40)
    assert truncated and size == SIZES[-1]
    assert lines[-1].endswith(ELLIPSIS) and _fits(chain, lines, size, 150, 40)
    assert fit_block(chain, LONG, SIZES, 150, 3) is None  # not even one line


def test_cut_lines_keeps_what_fits_and_marks_the_cut(chain: FontChain) -> None:
    lines = ["first line", "second line", "third line"]
    two = chain.block_height(2, 12)
    cut = cut_lines(chain, lines, 12, 300, two)
    assert cut == ["first line", "second line" + ELLIPSIS]
    assert cut_lines(chain, lines, 12, 300, 10_000) == lines
    assert cut_lines(chain, lines, 12, 300, 10_000, mark_end=True)[-1] == "third line" + ELLIPSIS
    assert cut_lines(chain, lines, 12, 300, 2) == []


def test_ellipsize_shortens_to_the_width(chain: FontChain) -> None:
    assert ellipsize(chain, "short", 12, 300, force=False) == "short"
    cut = ellipsize(chain, LONG, 12, 120)
    assert cut.endswith(ELLIPSIS) and chain.text_width(cut, 12) <= 120 and LONG.startswith(cut[:-1])
    assert not cut[:-1].endswith((",", " "))
    assert ellipsize(chain, LONG, 12, 2) == ""


def test_centred_lines_and_their_ink(chain: FontChain) -> None:
    box = (10, 20, 300, 100)
    lines = ["a short one", "and a somewhat longer line"]
    origins = centred_origins(chain, box, lines, 16)
    for (x, _), line in zip(origins, lines):
        assert abs((x + chain.text_width(line, 16) / 2) - (box[0] + box[2] / 2)) <= 1
    top, bottom = origins[0][1], origins[-1][1] + chain.metrics(16).ascent + chain.metrics(16).descent
    assert abs((top - box[1]) - (box[1] + box[3] - bottom)) <= 1
    ink = ink_of(chain, origins, lines, 16)
    assert ink is not None and box[0] < ink[0] and ink[0] + ink[2] < box[0] + box[2]
    assert ink_of(chain, origins, ["", " "], 16) is None
