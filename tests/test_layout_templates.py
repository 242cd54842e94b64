"""Page templates: the bundled ones load, files anywhere load, and every mistake is a clear LayoutError."""

import json

import pytest

from storydiffusion.errors import StoryDiffusionError
from storydiffusion.layout import LayoutError
from storydiffusion.layout.paginate import paginate
from storydiffusion.layout.template_files import LAYOUTS_DIR, list_templates, load_template
from storydiffusion.layout.templates import parse_template

REQUIRED = ["classic", "four-panel", "yonkoma", "manga", "strip", "grid", "webtoon", "none"]
SHAPES = {"square": (1024, 1024), "wide": (1344, 768), "tall": (768, 1344)}
COUNTS = range(1, 31)


def test_the_required_templates_are_bundled_and_load():
    names = list_templates()
    assert set(REQUIRED) <= set(names)
    for name in names:
        template = load_template(name)
        assert template.name == name and template.description
        assert template.dpi >= 72


def test_template_kinds_and_directions():
    assert load_template("manga").direction == "rtl"
    assert all(load_template(n).direction == "ltr" for n in REQUIRED if n != "manga")
    assert load_template("webtoon").kind == "webtoon"
    assert load_template("none").kind == "none"
    assert load_template("four-panel").capacity(0) == 4
    assert load_template("yonkoma").patterns[0].capacity == 4 and load_template("yonkoma").max_columns == 1
    assert load_template("strip").max_rows == 1
    classic = load_template("classic")
    assert len(classic.patterns) > 1  # pages vary
    assert len({len(row.cells) for p in classic.patterns for row in p.rows}) > 1  # rows of varied widths


def test_dpi_override_scales_physical_sizes_only():
    base, double = load_template("classic"), load_template("classic", dpi=300)
    assert double.dpi == 300
    assert abs(double.width - 2 * base.width) <= 1 and abs(double.height - 2 * base.height) <= 1
    assert abs(double.gutter_x - 2 * base.gutter_x) <= 1
    # US comic book: 6.625 x 10.25 in
    assert (base.width, base.height) == (round(6.625 * 150), round(10.25 * 150))
    webtoon = load_template("webtoon", dpi=100)
    assert webtoon.width == 800  # px lengths stay px
    assert load_template("classic.yaml") == base  # the bundled file's name works too


def test_a_template_in_another_folder_and_in_json(tmp_path, monkeypatch):
    path = tmp_path / "tiny.json"
    path.write_text(
        json.dumps(
            {
                "description": "test",
                "page": {"width": "100px", "height": "100px", "dpi": 72},
                "gutter": "4px",
                "pages": [{"rows": [{"cells": [1, 2]}]}],
            }
        )
    )
    template = load_template(str(path))
    assert template.name == "tiny" and template.width == 100
    cells = paginate(template, [(10, 10)] * 2)[0].cells
    assert [c.w for c in cells] == [32, 64]
    monkeypatch.chdir(tmp_path)  # a file named in capitals, beside the command, is still a template file
    (tmp_path / "page.YAML").write_text("page: {width: 100px, height: 100px, dpi: 72}\npages: [{rows: [{cells: 2}]}]\n")
    assert load_template("page.YAML").name == "page"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"gutterr": 3}, "unknown key 'gutterr'"),
        ({"direction": "up"}, "direction must be one of ltr, rtl"),
        ({"fit": "stretch"}, "fit must be one of crop, letterbox"),
        ({"margins": "1 furlong"}, "not a length"),
        ({"page": {"size": "a3"}}, "unknown page.size"),
        ({"page": {"width": "100mm"}}, "needs a height"),
        ({"page": {"size": "a4", "dpi": 5}}, "page.dpi"),
        ({"background": "notacolour"}, "unknown colour"),
        ({"pages": []}, "list of page patterns"),
        ({"pages": [{"rows": [{"cells": [1, 0]}]}]}, "pages[0].rows[0].cells[1]"),
        ({"pages": [{"rows": [{"height": -1, "cells": 2}]}]}, "pages[0].rows[0].height"),
        ({"margins": "105mm"}, "margins"),
        ({"kind": "comic"}, "kind must be one of"),
        ({"name": "other"}, "differs from the file name"),
        ({"chapter_panels": 3}, "only for kind 'webtoon'"),
        ({"border": {"width": "1mm", "colour": "red"}}, "border: unknown key 'colour'; use width and color"),
        ({"gutter": {"horizontal": 1, "vert": 2}}, "gutter: unknown key 'vert'"),
        ({"pages": [{"rows": [{"cells": 2}], "height": 1}]}, "pages[0]: unknown key 'height'; use rows"),
        (
            {"pages": [{"rows": [{"cells": 2, "width": 1}]}]},
            "pages[0].rows[0]: unknown key 'width'; use height and cells",
        ),
        ({"background": "#ff000080"}, "'#ff000080' is see-through, but pages are opaque"),
        ({"pages": [{"rows": [{"height": "1e3", "cells": 2}]}]}, "without quotes or an exponent (e.g. 1000)"),
        ({"pages": [{"rows": [{"cells": 2}, {"cells": 50}]}], "gutter": "5mm"}, "pages[0].rows[1] has 50 cells"),
        ({"zap" * 1000: 1}, "unknown key 'zapzap"),
    ],
)
def test_bad_templates_are_clear_layout_errors(change, message):
    data = {
        "description": "x",
        "page": {"size": "a4", "dpi": 150},
        "margins": "10mm",
        "gutter": "4mm",
        "pages": [{"rows": [{"cells": 2}]}],
    }
    data.update(change)
    with pytest.raises(LayoutError) as caught:
        parse_template(data, name="mine", source="mine.yaml")
    assert message in str(caught.value) and "mine.yaml" in str(caught.value)
    assert len(str(caught.value)) < 400  # a huge value is shown cut short, the message stays one line
    assert isinstance(caught.value, StoryDiffusionError) and isinstance(caught.value, ValueError)


GOOD_TOP = "description: x\nkind: pages\npage:\n  size: a4\n  dpi: 150\n"  # lines 1-5


@pytest.mark.parametrize(
    "rest,line,words",
    [
        (
            "pages:\n  - rows:\n      - {cells: 2}\n      - {height: 1, cells: [1, -2]}\n",
            9,
            "pages[0].rows[1].cells[1]",
        ),
        ("pages:\n  - rows: []\n", 7, "pages[0].rows must be"),
        ("margins:\n  top: 3mm\n  side: 2\n", 8, "unknown side 'side'"),
        ("gutter: 4mm\nfit: wide\n", 7, "fit must be one of"),
        ("background: '#00'\n", 6, "unknown colour"),
        ("border: {width: 1 furlong}\n", 6, "border.width"),
        ("zap: 1\n", 6, "unknown key 'zap'"),
        ("border:\n  width: 1mm\n  colour: red\n", 8, "border: unknown key 'colour'"),
    ],
)
def test_a_template_file_error_names_its_line(tmp_path, rest, line, words):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD_TOP + rest)
    with pytest.raises(LayoutError) as caught:
        load_template(path)
    assert f"mine.yaml, line {line}: " in str(caught.value) and words in str(caught.value)


def test_a_key_under_page_and_a_json_template_name_their_lines(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("kind: pages\npage:\n  size: a4\n  dpy: 3\n")
    with pytest.raises(LayoutError, match=r"mine.yaml, line 4: page: unknown key 'dpy'"):
        load_template(path)
    path = tmp_path / "mine.json"
    path.write_text('{\n\t"kind": "pages",\n "page": {"size": "a4"},\n "pages": [\n  {"rows": [{"cells": 0}]}\n ]\n}\n')
    with pytest.raises(LayoutError, match=r"mine.json, line 5: pages\[0\].rows\[0\].cells as a count"):
        load_template(path)


def test_a_template_too_small_for_a_title_still_serves_a_story_without_one(tmp_path):
    """The title band's room is checked when a title is drawn: `compose --no-title` took such a template."""
    from storydiffusion.layout.templates import check_title_room

    path = tmp_path / "tiny.yaml"
    path.write_text("page: {width: 8px, height: 8px, dpi: 150}\npages:\n  - rows: [{cells: 2}, {cells: 2}]\n")
    template = load_template(path)
    assert len(paginate(template, [(4, 4)] * 4)[0].cells) == 4
    with pytest.raises(LayoutError, match=r"with the title band \(title_height\).*or no title"):
        check_title_room(template)
    check_title_room(load_template("classic"))  # the bundled ones have room for one


def test_unknown_layout_name_lists_the_templates():
    with pytest.raises(LayoutError) as caught:
        load_template("mangaa")
    text = str(caught.value)
    assert "unknown layout 'mangaa'" in text and all(name in text for name in REQUIRED)
    assert load_template("Manga").name == "manga" and load_template(" CLASSIC ").name == "classic"  # any case


def test_readme_documents_every_key_and_template():
    readme = (LAYOUTS_DIR / "README.md").read_text(encoding="utf-8")
    for key in (
        "page",
        "margins",
        "gutter",
        "border",
        "background",
        "direction",
        "caption_position",
        "fit",
        "title_height",
        "last_page",
        "pages",
        "rows",
        "cells",
        "height",
        "kind",
        "chapter_panels",
        "dpi",
    ):
        assert f"`{key}" in readme, key
    for name in REQUIRED:
        assert f"`{name}`" in readme, name


def test_a_border_too_wide_for_the_page_is_named_with_the_margins():
    data = {
        "page": {"width": "200mm", "height": "200mm"},
        "border": {"width": "500mm"},
        "pages": [{"rows": [{"cells": 1}]}],
    }
    with pytest.raises(LayoutError, match=r"margins \(0\+0 px\) and border.width \(2 x 2953 px\) leave no room"):
        parse_template(data, name="wide", source="wide.yaml")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            "      - {height: 1, cells: [0.001, 1000]}\n",
            r"line 4: pages\[0\]\.rows\[0\]\.cells\[0\]: 0\.001 of 1000 would be 0 px wide",
        ),
        (
            "      - {height: 0.0001, cells: [1]}\n      - {height: 1000, cells: [1]}\n",
            r"line 4: pages\[0\]\.rows\[0\]\.height: 0\.0001 of 1000 would be 0 px high",
        ),
    ],
)
def test_relative_sizes_too_far_apart_for_a_cell_are_named_where_written(rows, message, tmp_path):
    """Each within 'above 0, at most 1000', yet a cell of 0 px: refused when the template is read, by its key."""
    path = tmp_path / "extreme.yaml"
    path.write_text("page: {size: a4}\npages:\n  - rows:\n" + rows, encoding="utf-8")
    with pytest.raises(LayoutError, match=message):
        load_template(path)
