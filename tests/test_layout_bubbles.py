"""Speech bubble geometry: bodies hold their text, rows pack in reading order, tails aim at speakers."""

from __future__ import annotations

import math

import pytest

from storydiffusion.layout.lettering.bubble_shape import BubbleShape, BubbleSizer, Speech
from storydiffusion.layout.lettering.fonts import FontChain, default_font_chain
from storydiffusion.layout.lettering.geometry import boxes_overlap, grow_box, inset_triangle
from storydiffusion.layout.lettering.packing import Region, pack_rows, tail_length
from storydiffusion.layout.lettering.style import LetteringStyle, Pixels
from storydiffusion.layout.lettering.tails import place_bubbles

PX = Pixels.of(LetteringStyle(), 1.0)
LONG = "Meanwhile, far across the sleeping city, the old clock tower struck midnight once more."


@pytest.fixture(scope="module")
def chain() -> FontChain:
    return default_font_chain("bold")


def _shape(order: int, width: int, height: int, shape: str = "rounded") -> BubbleShape:
    return BubbleShape(order, "A", "text", ("text",), width, height, shape, 16, False)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("text", ["Hi!", "Did you hear that?", LONG])
def test_an_ellipse_holds_every_line_of_its_text(chain: FontChain, text: str) -> None:
    sizer = BubbleSizer(chain, PX, 600, 600)
    bubble = sizer.shape(Speech(0, "A", text, text), 18, "ellipse", wide=False)
    assert bubble is not None and bubble.shape == "ellipse" and not bubble.truncated
    a, b = bubble.width / 2 - PX.outline, bubble.height / 2 - PX.outline
    m = chain.metrics(18)
    block = chain.block_height(len(bubble.lines), 18)
    for i, line in enumerate(bubble.lines):
        half_w = chain.text_width(line, 18) / 2
        top = -block / 2 + i * chain.line_height(18)
        for x, y in ((half_w, top), (half_w, top + m.ascent + m.descent)):
            assert (x / a) ** 2 + (y / b) ** 2 <= 1, (line, bubble.width, bubble.height)


def test_speech_wraps_to_a_block_wider_than_tall_unless_asked_for_full_width(chain: FontChain) -> None:
    sizer = BubbleSizer(chain, PX, 600, 600)
    speech = Speech(0, "A", LONG, LONG)
    pleasant = sizer.shape(speech, 16, "rounded", wide=False)
    wide = sizer.shape(speech, 16, "rounded", wide=True)
    assert pleasant is not None and wide is not None
    assert len(pleasant.lines) > len(wide.lines) and wide.width > pleasant.width
    assert pleasant.width > pleasant.height


def test_a_bubble_too_big_for_its_region_is_refused_or_cut(chain: FontChain) -> None:
    speech = Speech(3, "B", LONG, LONG)
    assert BubbleSizer(chain, PX, 150, 60).shape(speech, 16, "rounded", wide=True) is None
    cut = BubbleSizer(chain, PX, 150, 60).shape(speech, 16, "rounded", wide=True, max_height=60, ellipsis=True)
    assert cut is not None and cut.truncated and cut.lines[-1].endswith("\u2026")
    assert cut.height <= 60 and cut.width <= 150 and cut.order == 3 and cut.text == LONG


# ------------------------------------------------------------------------------------------- packing


def test_bubbles_share_a_row_in_reading_order_and_step_down(chain: FontChain) -> None:
    region = Region(0, 0, 600, 400)
    shapes = [_shape(i, 150, 60) for i in range(3)]
    slots = pack_rows(chain, PX, region, shapes, [100, 300, 500], 16, by_speaker=True)
    assert slots is not None and [s.row for s in slots] == [0, 0, 0]
    assert slots[0].x + 150 + PX.gap <= slots[1].x and slots[1].x + 150 + PX.gap <= slots[2].x
    assert slots[0].y < slots[1].y < slots[2].y  # each later bubble a little lower


def test_a_speaker_standing_before_the_last_one_starts_a_new_row(chain: FontChain) -> None:
    region = Region(0, 0, 600, 400)
    shapes = [_shape(0, 150, 60), _shape(1, 150, 60)]
    by_speaker = pack_rows(chain, PX, region, shapes, [500, 100], 16, by_speaker=True)
    in_order = pack_rows(chain, PX, region, shapes, [500, 100], 16, by_speaker=False)
    assert by_speaker is not None and [s.row for s in by_speaker] == [0, 1]
    assert by_speaker[1].y >= by_speaker[0].y + 60 + tail_length(chain, PX, 16)
    assert in_order is not None and [s.row for s in in_order] == [0, 0]


def test_packing_fails_when_the_rows_and_their_tails_do_not_fit(chain: FontChain) -> None:
    shapes = [_shape(0, 300, 60), _shape(1, 300, 60)]
    room = 2 * 60 + 2 * tail_length(chain, PX, 16) + PX.gap
    assert pack_rows(chain, PX, Region(0, 0, 400, room), shapes, [200, 200], 16, False) is not None
    assert pack_rows(chain, PX, Region(0, 0, 400, room - 1), shapes, [200, 200], 16, False) is None
    assert pack_rows(chain, PX, Region(0, 0, 299, 500), shapes, [200, 200], 16, False) is None


# ------------------------------------------------------------------------------------------- tails


@pytest.mark.parametrize("shape", ["ellipse", "rounded"])
def test_tails_start_inside_the_body_and_point_toward_the_speaker(chain: FontChain, shape: str) -> None:
    region = Region(20, 30, 600, 300)
    shapes = [_shape(0, 160, 80, shape), _shape(1, 160, 80, shape)]
    targets = [0.0, 600.0]
    slots = pack_rows(chain, PX, region, shapes, targets, 16, by_speaker=True)
    assert slots is not None
    left, right = place_bubbles(chain, PX, region, shapes, slots, targets, 16, "ltr")
    for bubble in (left, right):
        x, y, w, h = bubble.box
        (b1x, b1y), (b2x, b2y), (tip_x, tip_y) = bubble.tail
        assert tip_y > y + h and x + 0.2 * w - 1 <= tip_x <= x + 0.8 * w + 1
        for bx, by in ((b1x, b1y), (b2x, b2y)):
            assert x <= bx <= x + w and y <= by < y + h
            if shape == "ellipse":
                assert ((bx - x - w / 2) / (w / 2)) ** 2 + ((by - y - h / 2) / (h / 2)) ** 2 <= 1.05
    assert left.tail[2][0] < left.box[0] + left.box[2] / 2 < right.box[0] + right.box[2] / 2 < right.tail[2][0]


def test_right_to_left_mirrors_bodies_and_tails(chain: FontChain) -> None:
    region = Region(10, 0, 500, 300)
    shapes = [_shape(0, 140, 70), _shape(1, 120, 70)]
    targets = [100.0, 400.0]
    slots = pack_rows(chain, PX, region, shapes, targets, 16, by_speaker=True)
    assert slots is not None
    ltr = place_bubbles(chain, PX, region, shapes, slots, targets, 16, "ltr")
    rtl = place_bubbles(chain, PX, region, shapes, slots, targets, 16, "rtl")
    mirror = 2 * region.x + region.w
    for a, b in zip(ltr, rtl):
        assert b.box[0] == mirror - a.box[0] - a.box[2] and b.box[1:] == a.box[1:]
        assert all(abs(bp[0] - (mirror - ap[0])) <= 1 and bp[1] == ap[1] for ap, bp in zip(a.tail, b.tail))


# ------------------------------------------------------------------------------------------- geometry


def test_inset_triangle_shrinks_toward_its_incentre() -> None:
    triangle = [(0.0, 0.0), (40.0, 0.0), (20.0, 30.0)]
    inner = inset_triangle(triangle, 3)
    assert inner is not None
    for (ox, oy), (ix, iy) in zip(triangle, inner):
        assert math.dist((ox, oy), (ix, iy)) > 3
    # every side moved inward by exactly the inset: the distance from each inner vertex to the outer sides
    ax, ay = inner[0]
    assert abs(ay - 3) < 1e-6  # the base y = 0 is 3 px away
    assert inset_triangle([(0.0, 0.0), (40.0, 0.0), (20.0, 1.0)], 3) is None  # too thin
    assert inset_triangle([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)], 1) is None  # flat


def test_boxes() -> None:
    assert not boxes_overlap((0, 0, 10, 10), (10, 0, 10, 10))  # touching edges
    assert boxes_overlap((0, 0, 10, 10), (9, 9, 10, 10))
    assert grow_box(None, (5, 6, 15, 26)) == (5, 6, 10, 20)
    assert grow_box((0, 0, 10, 10), (5, -5, 20, 8)) == (0, -5, 20, 15)
    assert grow_box((0, 0, 10, 10), None) == (0, 0, 10, 10)
