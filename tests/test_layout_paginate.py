"""Pagination: every template, every panel count from 1 to 30, three panel shapes.

Geometry only (no images): every cell inside the page's content area, no overlaps, gutters
respected, every panel once and in order, reading order right, no empty cells, minimal pages.
"""

import json
import math

import pytest

from storydiffusion.layout import LayoutError
from storydiffusion.layout.paginate import PageLayout, page_count, paginate, webtoon_page_height
from storydiffusion.layout.template_files import load_template
from storydiffusion.layout.templates import parse_template

REQUIRED = ["classic", "four-panel", "yonkoma", "manga", "strip", "grid", "webtoon", "none"]
SHAPES = {"square": (1024, 1024), "wide": (1344, 768), "tall": (768, 1344)}
COUNTS = range(1, 31)


def _check_pages(template, pages, count, size, title):
    """All the geometric promises of a pagination, with messages that say what broke."""
    where = f"{template.name}, {count} panels of {size[0]}x{size[1]}, title={title}"
    m = template.margins
    # every panel once, in story order across pages
    order = [i for page in pages for i in page.reading_order]
    assert order == list(range(count)), where
    assert all(page.cells for page in pages), f"{where}: a page without cells"
    assert len(pages) == page_count(template, count, size), where
    # minimal: every page but the last is full
    if template.kind == "pages":
        for n, page in enumerate(pages[:-1]):
            assert len(page.cells) == template.capacity(n), f"{where}: page {n + 1} is not full"
        expected, left = 0, count
        while left > 0:
            left -= template.capacity(expected)
            expected += 1
        assert len(pages) == expected, where
    elif template.kind == "none":
        assert len(pages) == count
    else:  # a webtoon: a page per chapter, more where a chapter is taller than a page may be
        assert len(pages) >= (math.ceil(count / template.chapter_panels) if template.chapter_panels else 1)
        assert all(page.height <= webtoon_page_height(template) for page in pages), where
    json.dumps([page.to_dict() for page in pages])  # serialisable
    for n, page in enumerate(pages):
        label = f"{where}, page {n + 1}"
        assert PageLayout.from_dict(json.loads(json.dumps(page.to_dict()))) == page, label
        left, top = m.left, m.top
        right, bottom = page.width - m.right, page.height - m.bottom
        if template.kind == "pages":
            assert page.width <= template.width and page.height <= template.height, label
            if template.last_page == "stretch":
                assert (page.width, page.height) == (template.width, template.height), label
        boxes = [c.box for c in page.cells]
        if page.title_box is not None:
            assert n == 0 and title, label
            boxes.append(page.title_box)
        else:
            assert not (title and n == 0 and template.kind != "none"), f"{label}: no title band"
        for x, y, w, h in boxes:
            assert w >= 2 * template.border_width + 1 and h >= 2 * template.border_width + 1, f"{label}: empty cell"
            assert left <= x and x + w <= right and top <= y and y + h <= bottom, (
                f"{label}: {(x, y, w, h)} outside the content area"
            )
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                ax, ay, aw, ah = boxes[a]
                bx, by, bw, bh = boxes[b]
                gap_x = max(bx - (ax + aw), ax - (bx + bw))
                gap_y = max(by - (ay + ah), ay - (by + bh))
                assert gap_x >= template.gutter_x or gap_y >= template.gutter_y, (
                    f"{label}: {boxes[a]} and {boxes[b]} closer than the gutter"
                )
                assert gap_x > 0 or gap_y > 0, f"{label}: {boxes[a]} and {boxes[b]} overlap"
        # reading order: rows top to bottom; within a row left to right (ltr) or right to left (rtl)
        for a, b in zip(page.cells, page.cells[1:]):
            same_row = a.y == b.y
            if same_row:
                if template.direction == "rtl":
                    assert b.x + b.w <= a.x, f"{label}: panel {b.panel_index + 1} is not left of {a.panel_index + 1}"
                else:
                    assert b.x >= a.x + a.w, f"{label}: panel {b.panel_index + 1} is not right of {a.panel_index + 1}"
            else:
                assert b.y >= a.y + a.h, f"{label}: panel {b.panel_index + 1} is not below {a.panel_index + 1}"


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", REQUIRED)
def test_every_count_from_1_to_30_paginates_correctly(name, shape):
    template = load_template(name)
    for title in (False, True):
        for count in COUNTS:
            pages = paginate(template, [SHAPES[shape]] * count, title=title)
            _check_pages(template, pages, count, SHAPES[shape], title)


def test_last_page_is_rebalanced_not_padded():
    four = load_template("four-panel")
    pages = paginate(four, [(512, 512)] * 5)
    assert [len(p.cells) for p in pages] == [4, 1]
    only = pages[1].cells[0]
    m = four.margins
    assert (only.x, only.y, only.w, only.h) == (
        m.left,
        m.top,
        four.width - m.left - m.right,
        four.height - m.top - m.bottom,
    )
    # three square panels on a square 2x2 page keep two square cells and one wide one
    three = paginate(four, [(512, 512)] * 3)[0].cells
    assert abs(three[0].w - three[0].h) <= 1 and three[2].w > 1.9 * three[2].h
    # a strip's last page is cut after its last panel; a yonkoma's below its last panel
    strip = load_template("strip")
    short = paginate(strip, [(512, 512)] * 6)
    assert short[1].width < strip.width and short[1].height == strip.height
    assert short[1].cells[0].w == short[0].cells[0].w
    yonkoma = load_template("yonkoma")
    cut = paginate(yonkoma, [(512, 512)] * 5)[1]
    assert cut.height < yonkoma.height and cut.width == yonkoma.width


def test_manga_reads_right_to_left_and_mirrors_classic_placement():
    manga = load_template("manga")
    page = paginate(manga, [(512, 512)] * 5)[0]
    second_row = [c for c in page.cells if c.y == page.cells[1].y]
    assert [c.panel_index for c in second_row] == [1, 2]
    assert second_row[0].x > second_row[1].x  # panel 2 (read first) is on the right
    assert page.reading_order == [0, 1, 2, 3, 4]


def test_webtoon_stacks_panels_at_page_width_with_their_aspect():
    webtoon = load_template("webtoon")
    page = paginate(webtoon, [(1024, 1024), (1344, 768), (768, 1344)], title=True)[0]
    width = webtoon.width - webtoon.margins.left - webtoon.margins.right
    assert [c.w for c in page.cells] == [width] * 3
    assert [c.h for c in page.cells] == [width, round(width * 768 / 1344), round(width * 1344 / 768)]
    assert page.title_box is not None and page.title_box[1] == webtoon.margins.top
    chapters = parse_template(
        {"kind": "webtoon", "page": {"width": "800px"}, "chapter_panels": 4}, name="w", source="test"
    )
    assert [len(p.cells) for p in paginate(chapters, [(64, 64)] * 10)] == [4, 4, 2]


def test_a_webtoon_chapter_taller_than_a_page_may_be_goes_on_over_more_pages():
    """40 panels four times as tall as wide would make one 120,000 px page: no image format or PDF viewer
    takes it, so the chapter is cut between panels into pages within 200 inches (and 60,000 px)."""
    webtoon = load_template("webtoon")
    tallest = webtoon_page_height(webtoon)
    assert tallest == 200 * webtoon.dpi
    pages = paginate(webtoon, [(1024, 4096)] * 40, panel_indices=range(3, 43), title=True)
    assert len(pages) > 1 and all(page.height <= tallest for page in pages)
    assert [cell.panel_index for page in pages for cell in page.cells] == list(range(3, 43))
    assert pages[0].title_box is not None and all(page.title_box is None for page in pages[1:])
    assert [len(page.cells) for page in pages] == [13, 13, 13, 1]  # 2,880 px panels, 140 px gutters
    assert page_count(webtoon, 40) == 1  # square ones fit on one page
    wide = parse_template({"kind": "webtoon", "page": {"width": "60000px"}}, name="wide", source="test")
    with pytest.raises(
        LayoutError, match=r"page 1 would be 60,000 x .* more than the 60,000 a page may have on a side"
    ):
        paginate(wide, [(512, 2048)])


def test_none_is_one_page_per_panel_at_its_own_size():
    pages = paginate(load_template("none"), [(640, 480), (512, 768)], title=True)
    assert [(p.width, p.height) for p in pages] == [(640, 480), (512, 768)]
    assert [p.cells[0].box for p in pages] == [(0, 0, 640, 480), (0, 0, 512, 768)]
    assert all(p.title_box is None for p in pages)


def test_panel_indices_label_cells_for_runs_with_missing_panels():
    pages = paginate(load_template("four-panel"), [(64, 64)] * 3, panel_indices=[0, 2, 5])
    assert pages[0].reading_order == [0, 2, 5]
    assert pages[0].to_dict()["reading_order"] == [1, 3, 6]


def test_bad_panel_lists_are_refused():
    template = load_template("four-panel")
    with pytest.raises(LayoutError, match="no panels"):
        paginate(template, [])
    with pytest.raises(LayoutError, match="at least 1x1"):
        paginate(template, [(64, 0)])
    with pytest.raises(LayoutError, match="2 panel indices for 3 panel sizes"):
        paginate(template, [(64, 64)] * 3, panel_indices=[0, 1])


def test_shrunk_last_page_is_cut_below_its_panels():
    data = {
        "page": {"width": "400px", "height": "400px"},
        "margins": "10px",
        "gutter": "10px",
        "last_page": "shrink",
        "pages": [{"rows": [{"cells": 2}, {"cells": 2}]}],
    }
    template = parse_template(data, name="t", source="t.yaml")
    first, last = paginate(template, [(64, 64)] * 5)
    assert (first.width, first.height) == (400, 400)
    assert last.width == 400 and last.height == 10 + first.cells[0].h + 10
    assert last.cells[0].w == 400 - 20  # the partly used row is stretched across the page
