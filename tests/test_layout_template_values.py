"""Values in template files: lengths with units to pixels, paper sizes, margins, gutters, colours."""

import pytest

from storydiffusion.layout import LayoutError
from storydiffusion.layout.template_values import (
    MAX_PAGE_PX,
    PAGE_SIZES,
    Margins,
    colour,
    gutter,
    length_px,
    margins,
    page_size,
    weight,
)


def _length(dpi):
    return lambda value, key: length_px(value, dpi, f"test: {key}")


@pytest.mark.parametrize(
    "value,pixels",
    [(25.4, 300), ("25.4mm", 300), ("2.54cm", 300), ("1in", 300), ("72pt", 300), ("40px", 40), (" .5in ", 150), (0, 0)],
)
def test_lengths_in_every_unit_at_300_dpi(value, pixels):
    assert length_px(value, 300, "test") == pixels


@pytest.mark.parametrize("value", ["-3mm", "3 furlongs", "mm", True, None, "1e3mm"])
def test_bad_lengths_name_the_key_and_the_units(value):
    with pytest.raises(LayoutError) as caught:
        length_px(value, 150, "layout x.yaml: margins")
    assert "layout x.yaml: margins" in str(caught.value)
    assert "negative" in str(caught.value) or "10mm, 1cm, 0.5in, 12pt or 40px" in str(caught.value)


def test_named_paper_sizes_and_landscape():
    a4 = page_size({"size": "A4"}, "pages", _length(254), "test")
    assert a4 == (2100, 2970)
    assert page_size({"size": "a4 landscape"}, "pages", _length(254), "test") == (2970, 2100)
    assert page_size({"size": "a4"}, "webtoon", _length(254), "test") == (2100, 0)
    assert page_size({"dpi": 100}, "none", _length(254), "test") == (0, 0)
    assert set(PAGE_SIZES) >= {"a4", "b5", "letter", "us-comic"}
    with pytest.raises(LayoutError, match="either page.size or page.width"):
        page_size({"size": "a4", "width": 10}, "pages", _length(254), "test")


def test_margins_and_gutters_one_for_all_or_per_side():
    length = _length(254)
    assert margins(10, length, "test") == Margins(100, 100, 100, 100)
    assert margins({"top": 1, "left": "20px"}, length, "test") == Margins(10, 0, 0, 20)
    assert gutter(2, length, "test") == (20, 20)
    assert gutter({"vertical": 3}, length, "test") == (0, 30)
    with pytest.raises(LayoutError, match="unknown side 'middle'"):
        margins({"middle": 1}, length, "test")


def test_colours_and_weights():
    assert colour("white", "test") == (255, 255, 255) and colour("#102030", "test") == (16, 32, 48)
    with pytest.raises(LayoutError, match="unknown colour"):
        colour("notacolour", "test")
    assert weight(2, "test") == 2.0
    for bad in (0, -1, True, "2", 1001):  # 1001 is refused naming the range, not as "not positive"
        with pytest.raises(LayoutError, match="must be a number above 0 and at most 1000"):
            weight(bad, "test")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10**400, "9" * 400 + "mm"])
def test_non_finite_and_huge_lengths_are_layout_errors_naming_the_key(value):
    with pytest.raises(LayoutError) as caught:
        length_px(value, 150, "layout x.yaml: gutter")
    assert "layout x.yaml: gutter" in str(caught.value)


def test_a_length_larger_than_any_page_is_refused():
    with pytest.raises(LayoutError, match=f"more than the {MAX_PAGE_PX}"):
        length_px("1000in", 150, "layout x.yaml: margins")
