"""Lettering: captions, speech bubbles and titles stay in their boxes, in reading order, with real glyphs.

Everything here draws with the bundled fonts on small in-memory pages, so the tests are fast and
need no model.
"""

from __future__ import annotations

import itertools

import pytest
from PIL import Image, ImageDraw, ImageFont

from storydiffusion.layout.lettering import (
    Lettering,
    LetteringReport,
    LetteringStyle,
    box_contains,
    boxes_overlap,
)

HANGUL = "안녕하세요, 세상!"
SPANISH = "¡Qué sorpresa, señor Muñoz!"
RUSSIAN = "Привет, мир"
SHORT = "Hi!"
LONG = "Meanwhile, far across the sleeping city, the old clock tower struck midnight once more."
VERY_LONG = " ".join([LONG] * 6)
STYLE = LetteringStyle()
WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def lettering() -> Lettering:
    return Lettering(scale=1.0)


def _page(cell: tuple[int, int, int, int], color: tuple[int, int, int] = WHITE) -> Image.Image:
    return Image.new("RGB", (cell[0] + cell[2] + 20, cell[1] + cell[3] + 20), color)


def _check_report(report: LetteringReport, cell: tuple[int, int, int, int], direction: str, n_lines: int) -> None:
    """The invariants every lettered cell keeps."""
    drawn = []
    if report.caption is not None:
        assert box_contains(cell, report.caption.box)
        if report.caption.text_box is not None:
            assert box_contains(report.caption.box, report.caption.text_box)
        drawn.append(report.caption.box)
    for bubble in report.bubbles:
        assert box_contains(cell, bubble.box), (bubble.box, cell)
        assert box_contains(cell, bubble.tail_box), (bubble.tail_box, cell)
        if bubble.text_box is not None:
            assert box_contains(bubble.box, bubble.text_box)
        assert bubble.tail[2][1] > bubble.box[1] + bubble.box[3] - 1, "the tail points down, out of the body"
        for other in drawn:
            assert not boxes_overlap(bubble.box, other)
            assert not boxes_overlap(bubble.tail_box, other)
        for later in report.bubbles:
            if later is not bubble:
                assert not boxes_overlap(bubble.tail_box, later.box)
        drawn.append(bubble.box)
    # Reading order: each bubble is below the one before, or beside it (on the reading side) and not higher.
    for a, b in zip(report.bubbles, report.bubbles[1:]):
        ax, ay, aw, ah = a.box
        bx, by, bw, bh = b.box
        beside = bx >= ax + aw if direction == "ltr" else bx + bw <= ax
        assert by >= ay + ah or (beside and by >= ay), (a.box, b.box, direction)
    assert [b.order for b in report.bubbles] == list(range(len(report.bubbles)))
    assert len(report.bubbles) + len(report.dropped) == n_lines
    if report.dropped:
        assert report.truncated


# ------------------------------------------------------------------------------------------- glyphs


@pytest.mark.parametrize("text", [HANGUL, SPANISH, RUSSIAN])
def test_caption_pixels_are_real_glyphs_not_boxes(lettering: Lettering, text: str) -> None:
    """The lettered caption differs from the same line drawn as missing glyphs (tofu) or with
    Pillow's default font; where Comic Neue has every glyph (Spanish) it is exactly Comic Neue's."""
    cell = (0, 0, 480, 200)
    page = _page(cell)
    report = lettering.draw_panel_text(page, cell, text, [], [])
    assert report.caption is not None and not report.caption.truncated and not report.missing_characters
    assert report.caption.lines == (text,)
    x, y, w, h = report.caption.box
    inset = STYLE.padding + STYLE.caption_border
    size = report.caption.font_size
    chain = lettering.caption_fonts
    baseline = (x + inset, y + inset + chain.metrics(size).ascent)
    region = (x + inset, y + inset, x + w - inset, y + h - inset)
    ours = page.crop(region).tobytes()

    def one_font(font: ImageFont.FreeTypeFont, string: str) -> bytes:
        other = _page(cell)
        draw = ImageDraw.Draw(other)
        draw.rectangle(
            (x, y, x + w - 1, y + h - 1),
            fill=STYLE.caption_fill,
            outline=STYLE.caption_border_color,
            width=STYLE.caption_border,
        )
        draw.text(baseline, string, font=font, fill=STYLE.text_color, anchor="ls")
        return other.crop(region).tobytes()

    comic = chain.faces[0]
    tofu = "".join(c if c.isspace() else "\uffff" for c in text)
    assert one_font(comic.font(size), tofu) != ours
    assert one_font(ImageFont.load_default(size), text) != ours
    if all(comic.has_glyph(c) for c in text):
        assert one_font(comic.font(size), text) == ours
    else:
        assert one_font(comic.font(size), text) != ours
    ink = report.caption.text_box
    assert ink is not None and ink[2] >= 0.8 * chain.text_width(text, size)


def test_characters_no_font_has_are_left_out_not_boxed(lettering: Lettering) -> None:
    cell = (0, 0, 400, 200)
    report = lettering.draw_panel_text(_page(cell), cell, "Look \U0001f600 there", [("A", "Wow \U0001f680!")], ["A"])
    assert report.missing_characters == {"\U0001f600", "\U0001f680"}
    assert report.caption is not None and report.caption.lines == ("Look there",)
    assert report.bubbles[0].lines == ("Wow!",)


# ------------------------------------------------------------------------------------------- layout

CELLS = [(0, 0, 120, 90), (10, 20, 260, 200), (30, 40, 640, 480), (0, 0, 150, 600)]
CAPTIONS = [None, SHORT, LONG, VERY_LONG]
DIALOGUES = [
    [],
    [("A", SHORT)],
    [("A", "Did you hear that?"), ("B", LONG), ("C", HANGUL)],
    [("B", "First!"), ("A", "Second, from the left."), ("B", VERY_LONG), ("A", "Last.")],
]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("direction", ["ltr", "rtl"])
def test_text_always_inside_its_box_and_never_overlapping(lettering: Lettering, cell, direction) -> None:
    for caption, dialogue, position in itertools.product(CAPTIONS, DIALOGUES, ("top", "bottom")):
        page = _page(cell)
        report = lettering.draw_panel_text(page, cell, caption, dialogue, ["A", "B", "C"], position, direction)
        _check_report(report, cell, direction, len(dialogue))
        if caption is not None and report.caption is not None:
            if len(report.caption.lines) > 1:  # one line may take more in a tiny cell, never more lines
                assert report.caption.box[3] <= 0.35 * cell[3]
            if position == "top":
                assert report.caption.box[1] - cell[1] < cell[3] / 2
            else:
                assert report.caption.box[1] + report.caption.box[3] - cell[1] > cell[3] / 2


def test_tiny_cells_draw_nothing_outside(lettering: Lettering) -> None:
    for cell in [(5, 5, 1, 1), (5, 5, 18, 18), (5, 5, 40, 25)]:
        page = _page(cell)
        report = lettering.draw_panel_text(page, cell, LONG, [("A", LONG), ("B", SHORT)], ["A", "B"])
        _check_report(report, cell, "ltr", 2)
        _assert_only_inside(page, report.boxes())


def test_font_shrinks_for_long_text(lettering: Lettering) -> None:
    cell = (0, 0, 400, 300)
    short = lettering.draw_panel_text(_page(cell), cell, SHORT, [("A", SHORT)], ["A"])
    long = lettering.draw_panel_text(_page(cell), cell, VERY_LONG, [("A", VERY_LONG)], ["A"])
    assert short.caption.font_size == STYLE.caption_size and short.bubbles[0].font_size == STYLE.bubble_size
    assert long.caption.font_size < short.caption.font_size
    assert long.bubbles[0].font_size < short.bubbles[0].font_size
    assert not short.truncated


def test_scale_multiplies_sizes() -> None:
    cell = (0, 0, 800, 600)
    report = Lettering(scale=2.0).draw_panel_text(_page(cell), cell, SHORT, [("A", SHORT)], ["A"])
    assert report.caption.font_size == 2 * STYLE.caption_size
    assert report.bubbles[0].font_size == 2 * STYLE.bubble_size


def test_too_much_text_is_cut_with_an_ellipsis_and_reported(lettering: Lettering) -> None:
    cell = (0, 0, 200, 150)
    page = _page(cell)
    dialogue = [("A", LONG), ("B", "Fine, thanks."), ("A", "Great!"), ("B", "Bye now.")]
    report = lettering.draw_panel_text(page, cell, VERY_LONG, dialogue, ["A", "B"])
    _check_report(report, cell, "ltr", len(dialogue))
    assert report.truncated
    assert report.caption.truncated and report.caption.lines[-1].endswith("\u2026")
    assert report.caption.font_size == STYLE.min_size
    assert report.dropped == dialogue[len(report.bubbles) :] and report.dropped
    assert report.bubbles[-1].truncated and report.bubbles[-1].lines[-1].endswith("\u2026")


def test_reading_order_and_rtl_mirrors_ltr(lettering: Lettering) -> None:
    cell = (0, 0, 700, 400)
    dialogue = [("A", "I speak first."), ("B", "Then me."), ("C", "And me last!")]
    ltr = lettering.draw_panel_text(_page(cell), cell, "Later...", dialogue, ["A", "B", "C"])
    rtl = lettering.draw_panel_text(_page(cell), cell, "Later...", dialogue, ["A", "B", "C"], direction="rtl")
    _check_report(ltr, cell, "ltr", 3)
    _check_report(rtl, cell, "rtl", 3)
    assert [b.box[0] for b in ltr.bubbles] == sorted(b.box[0] for b in ltr.bubbles)
    assert [b.box[0] for b in rtl.bubbles] == sorted((b.box[0] for b in rtl.bubbles), reverse=True)
    for a, b in zip(ltr.bubbles, rtl.bubbles):
        assert b.box[0] - cell[0] == cell[2] - (a.box[0] - cell[0]) - a.box[2]
        assert b.box[1:] == a.box[1:]
    assert ltr.caption.box[0] < cell[2] / 2 < rtl.caption.box[0] + rtl.caption.box[2]


def test_tails_lean_toward_their_speakers(lettering: Lettering) -> None:
    cell = (0, 0, 700, 400)
    report = lettering.draw_panel_text(
        _page(cell), cell, None, [("Left", "Hello, over there!"), ("Right", "Hello back!")], ["Left", "Right"]
    )
    left, right = report.bubbles
    assert left.tail[2][0] <= left.box[0] + left.box[2] / 2
    assert right.tail[2][0] >= right.box[0] + right.box[2] / 2
    assert left.box[0] < right.box[0]


def test_a_speaker_standing_left_of_the_last_one_starts_a_lower_row(lettering: Lettering) -> None:
    """Tails never cross: B (right) speaks first, so A's (left) bubble goes below it."""
    cell = (0, 0, 700, 400)
    report = lettering.draw_panel_text(_page(cell), cell, None, [("B", "Me first."), ("A", "Then me.")], ["A", "B"])
    first, second = report.bubbles
    assert second.box[1] >= first.box[1] + first.box[3]
    assert first.box[0] > second.box[0]


def test_same_input_same_pixels(lettering: Lettering) -> None:
    cell = (0, 0, 400, 300)
    pages = [_page(cell), _page(cell)]
    for page in pages:
        lettering.draw_panel_text(page, cell, HANGUL, [("A", SPANISH), ("B", RUSSIAN)], ["A", "B"])
    assert pages[0].tobytes() == pages[1].tobytes()


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_other_page_modes(lettering: Lettering, mode: str) -> None:
    cell = (0, 0, 300, 200)
    page = Image.new(mode, (300, 200), "white")
    report = lettering.draw_panel_text(page, cell, SHORT, [("A", SHORT)], ["A"])
    assert report.caption is not None and report.bubbles
    assert page.mode == mode


def test_bad_arguments_are_refused(lettering: Lettering) -> None:
    cell = (0, 0, 300, 200)
    with pytest.raises(ValueError):
        lettering.draw_panel_text(_page(cell), cell, SHORT, [], [], caption_position="middle")
    with pytest.raises(ValueError):
        lettering.draw_panel_text(_page(cell), cell, SHORT, [], [], direction="ttb")
    with pytest.raises(ValueError):
        Lettering(scale=0)


# ------------------------------------------------------------------------------------------- pixels


def _dark(pixel: tuple[int, ...]) -> bool:
    return max(pixel[:3]) < 90


def _count_dark(image: Image.Image) -> int:
    data = image.convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if max(data[i : i + 3]) < 90)


def _assert_only_inside(page: Image.Image, boxes: list[tuple[int, int, int, int]], background=WHITE) -> None:
    """Every pixel that is not background lies inside one of ``boxes``."""
    rgb = page.convert("RGB")
    width, height = rgb.size
    data = rgb.load()
    for y in range(height):
        for x in range(width):
            if data[x, y] != background:
                assert any(bx <= x < bx + bw and by <= y < by + bh for bx, by, bw, bh in boxes), (x, y, data[x, y])


def test_caption_box_pixels(lettering: Lettering) -> None:
    cell = (20, 30, 400, 240)
    page = _page(cell)
    report = lettering.draw_panel_text(page, cell, SPANISH, [], [])
    x, y, w, h = report.caption.box
    border = STYLE.caption_border
    # Fill just inside the border at all four corners; border colour on every edge.
    for cx, cy in (
        (x + border, y + border),
        (x + w - 1 - border, y + border),
        (x + border, y + h - 1 - border),
        (x + w - 1 - border, y + h - 1 - border),
    ):
        assert page.getpixel((cx, cy)) == STYLE.caption_fill
    for ex, ey in ((x, y + h // 2), (x + w - 1, y + h // 2), (x + w // 2, y), (x + w // 2, y + h - 1)):
        assert page.getpixel((ex, ey)) == STYLE.caption_border_color
    # Dark text pixels inside the box, none outside it.
    inner = page.crop((x + border, y + border, x + w - border, y + h - border))
    assert _count_dark(inner) > 50
    _assert_only_inside(page, [report.caption.box])


def test_page_with_caption_and_bubbles_pixels(lettering: Lettering) -> None:
    cell = (10, 10, 560, 380)
    page = _page(cell)
    report = lettering.draw_panel_text(
        page,
        cell,
        "Meanwhile, in the harbour town...",
        [("Bob", "Did you hear that?"), ("Alice", "Just the wind. Go back to sleep!"), ("Minji", "무슨 일이에요?")],
        ["Bob", "Alice", "Minji"],
    )
    assert len(report.bubbles) == 3 and not report.truncated
    _check_report(report, cell, "ltr", 3)
    _assert_only_inside(page, report.boxes())
    for bubble in report.bubbles:
        bx, by, bw, bh = bubble.box
        # Outline at the left and right ends of the body's middle row, white fill just inside.
        row = [page.getpixel((px, by + bh // 2)) for px in range(bx, bx + bw)]
        assert any(_dark(p) for p in row[:3]) and any(_dark(p) for p in row[-3:])
        assert row[2 * STYLE.outline + 2] == STYLE.bubble_fill
        # Dark text inside the text box, and the text box inside the body.
        tx, ty, tw, th = bubble.text_box
        text = page.crop((tx, ty, tx + tw, ty + th))
        assert _count_dark(text) > 30
        # The tail tip is drawn (outline colour) right where the report says.
        tip_x, tip_y = bubble.tail[2]
        near = [page.getpixel((tip_x + dx, tip_y + dy)) for dx in (-1, 0, 1) for dy in (-2, -1, 0)]
        assert any(max(p) < 200 for p in near)


# ------------------------------------------------------------------------------------------- title


def test_title_band(lettering: Lettering) -> None:
    band = (20, 10, 600, 70)
    page = _page(band)
    report = lettering.draw_title(page, band, "The Storm Over Haeundae — 해운대의 폭풍")
    assert report.title is not None and not report.truncated
    assert box_contains(band, report.title.text_box)
    assert report.title.font_size <= STYLE.title_size
    _assert_only_inside(page, [band])
    inside = page.crop((band[0], band[1], band[0] + band[2], band[1] + band[3]))
    assert _count_dark(inside) > 200


def test_a_title_with_no_room_at_any_size_is_reported_left_out(lettering: Lettering) -> None:
    """A band too small for the title's smallest size (compose --dpi 10) left it out without a word."""
    band = (0, 0, 300, 4)
    report = lettering.draw_title(_page(band), band, "Kite Day")
    assert report.title is None and report.title_dropped and report.truncated
    blank = lettering.draw_title(_page(band), band, "   ")
    assert not blank.truncated  # nothing to write is nothing left out


def test_long_title_shrinks_and_wraps(lettering: Lettering) -> None:
    band = (0, 0, 300, 90)
    page = _page(band)
    report = lettering.draw_title(page, band, "A very long title that will never fit on one line of this band")
    assert report.title is not None
    assert report.title.font_size < STYLE.title_size
    assert box_contains(band, report.title.text_box)
    _assert_only_inside(page, [band])
