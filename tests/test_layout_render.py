"""Drawing pages: panels in their cells inside the border, gutters, reading order and lettering, checked at pixel level."""

import pytest
from PIL import Image

from storydiffusion.layout.paginate import paginate
from storydiffusion.layout.render import render_page, render_pages
from storydiffusion.layout.template_files import load_template
from storydiffusion.layout.templates import parse_template
from storydiffusion.story import story_from_text

RED, BLUE, YELLOW, MAGENTA, CYAN = (220, 20, 30), (20, 40, 200), (250, 220, 0), (200, 0, 200), (0, 200, 200)
WHITE = (255, 255, 255)


def solid(colour, size=(96, 96)):
    return Image.new("RGB", size, colour)


def _page_template(direction="ltr"):
    return parse_template(
        {
            "description": "test",
            "page": {"width": "400px", "height": "300px", "dpi": 72},
            "margins": "20px",
            "gutter": "10px",
            "border": {"width": "3px", "color": "#102030"},
            "background": "#f0e8d0",
            "direction": direction,
            "pages": [{"rows": [{"cells": [1, 1]}, {"cells": [1, 1, 1]}]}],
        },
        name="test",
        source="test.yaml",
    )


@pytest.mark.parametrize("direction", ["ltr", "rtl"])
def test_rendered_page_pixels(direction):
    template = _page_template(direction)
    colours = [RED, BLUE, YELLOW, MAGENTA, CYAN]
    layout = paginate(template, [(96, 96)] * 5)[0]
    page = render_page(layout, [solid(c) for c in colours], template)
    assert page.size == (400, 300) and page.mode == "RGB"
    background, border = template.background, template.border_color
    for cell in layout.cells:
        colour = colours[cell.panel_index]
        cx, cy = cell.x + cell.w // 2, cell.y + cell.h // 2
        assert page.getpixel((cx, cy)) == colour
        bw = template.border_width
        for inside in (
            (cell.x + bw, cy),
            (cell.x + cell.w - 1 - bw, cy),
            (cx, cell.y + bw),
            (cx, cell.y + cell.h - 1 - bw),
        ):
            assert page.getpixel(inside) == colour  # the panel fills the frame up to the border
        for edge in (
            (cell.x, cy),
            (cell.x + cell.w - 1, cy),
            (cx, cell.y),
            (cx, cell.y + cell.h - 1),
            (cell.x + bw - 1, cy),
        ):
            assert page.getpixel(edge) == border
        for outside in ((cell.x - 1, cy), (cx, cell.y - 1), (cell.x + cell.w, cy), (cx, cell.y + cell.h)):
            assert page.getpixel(outside) == background  # gutter or margin
    # the gutters between the top two cells and between the rows are page background
    first, second = sorted(layout.cells[:2], key=lambda c: c.x)
    assert page.getpixel((first.x + first.w + template.gutter_x // 2, first.y + 5)) == background
    assert page.getpixel((200, first.y + first.h + template.gutter_y // 2)) == background
    assert page.getpixel((5, 5)) == background and page.getpixel((399, 299)) == background
    # reading order: panel 1 is on the left for ltr, on the right for rtl
    top_left_colour = page.getpixel((first.x + first.w // 2, first.y + first.h // 2))
    assert top_left_colour == (RED if direction == "ltr" else BLUE)


def test_render_pages_opens_panel_files_and_draws_every_page(tmp_path):
    template = load_template("four-panel", dpi=40)
    paths = []
    for i, colour in enumerate([RED, BLUE, YELLOW, MAGENTA, CYAN]):
        path = tmp_path / f"p{i}.png"
        solid(colour, (64, 48)).save(path)
        paths.append(path)
    layouts = paginate(template, [(64, 48)] * 5)
    pages = render_pages(layouts, paths, None, template, lettering=False)
    assert len(pages) == 2 and pages[0].size == (template.width, template.height)
    only = layouts[1].cells[0]
    assert pages[1].getpixel((only.x + only.w // 2, only.y + only.h // 2)) == CYAN


def test_letterbox_option_leaves_bars_inside_the_frame():
    template = _page_template().with_options(fit="letterbox")
    layout = paginate(template, [(200, 50)])[0]  # a very wide panel in a full-page cell
    page = render_page(layout, [solid(RED, (200, 50))], template)
    cell = layout.cells[0]
    assert page.getpixel((cell.x + cell.w // 2, cell.y + cell.h // 2)) == RED
    assert page.getpixel((cell.x + cell.w // 2, cell.y + template.border_width + 2)) == template.background
    assert page.getpixel((cell.x, cell.y + cell.h // 2)) == template.border_color


def test_lettering_draws_captions_and_title_when_available():
    pytest.importorskip("storydiffusion.layout.lettering")
    story = story_from_text("[Bob] a man in a red coat", "[Bob] walks # A long day. @Bob: Hello there!\n[NC] a street")
    template = load_template("four-panel", dpi=60)
    layouts = paginate(template, [(96, 96)] * 2, title=True)
    images = [solid(WHITE), solid(WHITE)]
    plain = render_pages(layouts, images, story, template, lettering=False)[0]
    lettered = render_pages(layouts, images, story, template, title="The Title", lettering=True)[0]
    first = layouts[0].cells[0]
    box = (first.x, first.y, first.x + first.w, first.y + first.h)
    assert lettered.crop(box).tobytes() != plain.crop(box).tobytes()
    tx, ty, tw, th = layouts[0].title_box
    assert lettered.crop((tx, ty, tx + tw, ty + th)).tobytes() != plain.crop((tx, ty, tx + tw, ty + th)).tobytes()
