"""Exports (PNG pages, PDF, CBZ with ComicInfo.xml, ZIP of panels), composing a run folder, and the CLI."""

import json
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
from PIL import Image

from storydiffusion.atomic import TEMPORARY_MARK, write_json
from storydiffusion.cli import main
from storydiffusion.layout import LayoutError
from storydiffusion.layout.compose import compose_run, parse_exports
from storydiffusion.layout.export import (
    comic_info_xml,
    page_filename,
    write_cbz,
    write_pages_png,
    write_panels_zip,
    write_pdf,
)
from storydiffusion.layout.template_files import list_templates
from storydiffusion.rundir import MANIFEST_FORMAT, panel_filename
from storydiffusion.story import story_from_text

ROOT = Path(__file__).resolve().parent.parent
COLOURS = [(200, 30, 30), (30, 30, 200), (230, 200, 0), (0, 160, 80), (150, 0, 150), (0, 150, 150), (90, 90, 90)]


def pages_of(count, size=(300, 200)):
    return [Image.new("RGB", size, COLOURS[i % len(COLOURS)]) for i in range(count)]


def pdf_pages(path):
    """(width, height) in points of every page of a PDF, read from its MediaBox entries."""
    data = Path(path).read_bytes()
    assert data.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    count = re.search(rb"/Type\s*/Pages\b.*?/Count\s+(\d+)", data, re.S)
    assert count and int(count.group(1)) == len(boxes)
    return [(float(w), float(h)) for w, h in boxes]


def no_temporaries(folder):
    """No file left behind by an atomic write (``.page_01.tmp.png`` while ``page_01.png`` is written)."""
    return not [p for p in Path(folder).rglob("*") if TEMPORARY_MARK in p.name]


def make_run(folder, panels=7, size=(96, 64), missing=(), title="A Test Story"):
    """A run folder as generate writes it: story.json (format storydiffusion-run/1) and panels/."""
    lines = "\n".join(f"[Bob] does thing {i + 1} # Caption {i + 1}. @Bob: Line {i + 1}!" for i in range(panels))
    story = story_from_text("[Bob] a man in a red coat", lines, title=title)
    folder = Path(folder)
    write_json(folder / "story.json", {"format": MANIFEST_FORMAT, "story": story.to_dict()})
    for i in range(panels):
        if i not in missing:
            path = folder / "panels" / panel_filename(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, COLOURS[i % len(COLOURS)]).save(path)
    return folder


# ------------------------------------------------------------------------------------------- exports


def test_png_pages_are_numbered_and_stale_pages_removed(tmp_path):
    paths = write_pages_png(pages_of(3), tmp_path / "pages")
    assert [p.name for p in paths] == ["page_01.png", "page_02.png", "page_03.png"]
    assert Image.open(paths[1]).getpixel((5, 5)) == COLOURS[1]
    (tmp_path / "pages" / "notes.txt").write_text("mine")
    (tmp_path / "pages" / "page_99.png").write_bytes(b"the user's own page, named like ours")
    (tmp_path / "pages" / ".page_03.tmp.png").write_bytes(b"left by an interrupted run")
    (tmp_path / "pages" / ".page_07.tmp.png").write_bytes(b"the user's, named like a temporary of no page")
    write_pages_png(pages_of(2), tmp_path / "pages", earlier=[p.name for p in paths])
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == [
        ".page_07.tmp.png",
        "notes.txt",
        "page_01.png",
        "page_02.png",
        "page_99.png",
    ]
    assert (
        page_filename(0, 5) == "page_01.png"
        and page_filename(99, 120) == "page_100.png"
        and page_filename(0, 120) == "page_001.png"
    )


def test_a_long_webtoon_is_composed_into_pages_a_pdf_viewer_opens(tmp_path):
    """At 10 dpi a webtoon page may be 2,000 px (200 inches) tall: seven panels go on over several pages,
    each within that in the PNGs and in the PDF, every panel once and in order."""
    run = make_run(tmp_path / "run", panels=7)
    result = compose_run(run, layout="webtoon", export="pdf", dpi=10, lettering=False)
    assert len(result.pages) > 1 and all(Image.open(path).height <= 2000 for path in result.pages)
    assert [cell.panel_index for layout in result.layouts for cell in layout.cells] == list(range(7))
    assert all(height <= 200 * 72 for _, height in pdf_pages(run / "comic.pdf"))
    assert len(pdf_pages(run / "comic.pdf")) == len(result.pages)


def test_a_page_the_pdf_encoder_refuses_is_named_and_no_file_is_written(tmp_path):
    """JPEG (a PDF's page pictures) stops at 65,500 px: the encoder's error is the page's, not the path's."""
    with pytest.raises(LayoutError, match=r"PDF could not be encoded .* largest page is 2 x 70,000 pixels"):
        write_pdf([Image.new("RGB", (2, 70000))], tmp_path / "comic.pdf", dpi=150)
    assert list(tmp_path.iterdir()) == []


def test_pdf_has_one_page_per_image_at_the_right_size(tmp_path):
    pages = pages_of(3, (300, 450)) + [Image.new("RGB", (600, 150), "white")]
    path = write_pdf(pages, tmp_path / "comic.pdf", dpi=150, title="Title")
    sizes = pdf_pages(path)
    assert len(sizes) == 4
    assert sizes[0] == pytest.approx((300 / 150 * 72, 450 / 150 * 72), abs=0.01)
    assert sizes[3] == pytest.approx((600 / 150 * 72, 150 / 150 * 72), abs=0.01)
    assert no_temporaries(tmp_path)


@pytest.mark.parametrize("manga", [False, True])
def test_cbz_opens_and_its_comic_info_parses(tmp_path, manga):
    path = write_cbz(pages_of(3), tmp_path / "comic.cbz", "Über & <Title>", manga, characters=["Bob", "지민"])
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == ["ComicInfo.xml", "page_01.png", "page_02.png", "page_03.png"]
        info = ElementTree.fromstring(archive.read("ComicInfo.xml"))
        with archive.open("page_02.png") as handle:
            assert Image.open(handle).getpixel((1, 1)) == COLOURS[1]
    assert info.tag == "ComicInfo"
    assert info.findtext("Title") == "Über & <Title>"
    assert info.findtext("PageCount") == "3"
    assert info.findtext("Manga") == ("YesAndRightToLeft" if manga else "No")
    assert info.findtext("Characters") == "Bob, 지민"
    pages = info.find("Pages").findall("Page")
    assert [p.get("Image") for p in pages] == ["0", "1", "2"]
    assert pages[0].get("ImageWidth") == "300" and pages[0].get("ImageHeight") == "200"
    # ComicRack's schema is a sequence: Title before PageCount before Manga before Pages
    order = [child.tag for child in info]
    assert order.index("Title") < order.index("PageCount") < order.index("Manga") < order.index("Pages")
    assert no_temporaries(tmp_path)


def test_the_comic_info_of_a_run_lists_the_characters_its_panels_show_only(tmp_path):
    run = tmp_path / "run"
    story = story_from_text("[Bob] a man\n[Eve] never drawn\n[Ann] a woman", "[Bob] waves\n[NC] a sea\n[Ann] waves")
    write_json(run / "story.json", {"format": MANIFEST_FORMAT, "story": story.to_dict()})
    for i in range(3):
        (run / "panels").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 64), COLOURS[i]).save(run / "panels" / panel_filename(i))
    compose_run(run, layout="strip", export="cbz", lettering=False)
    with zipfile.ZipFile(run / "comic.cbz") as archive:
        assert ElementTree.fromstring(archive.read("ComicInfo.xml")).findtext("Characters") == "Bob, Ann"


def test_comic_info_of_pages_given_as_png_bytes():
    xml = comic_info_xml("T", [(10, 20)], False, page_bytes=[1234])
    page = ElementTree.fromstring(xml).find("Pages/Page")
    assert page.get("ImageSize") == "1234" and page.get("Type") == "FrontCover"


def test_panels_zip_lists_the_panel_files(tmp_path):
    run = make_run(tmp_path / "run", panels=3)
    panels = sorted((run / "panels").glob("*.png"))
    path = write_panels_zip(panels, tmp_path / "panels.zip")
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [f"panels/panel_00{i}.png" for i in (1, 2, 3)]
        assert archive.read("panels/panel_002.png") == panels[1].read_bytes()


def test_export_lists_are_checked():
    assert parse_exports("pdf, CBZ,pdf") == ("pdf", "cbz")
    assert parse_exports(["zip"]) == ("zip",) and parse_exports(None) == ()
    with pytest.raises(LayoutError, match="unknown export 'epub'"):
        parse_exports("pdf,epub")


# ------------------------------------------------------------------------------------------- compose


def test_compose_run_writes_pages_index_and_every_export(tmp_path):
    run = make_run(tmp_path / "run", panels=7)
    result = compose_run(run, layout="four-panel", export="png,pdf,cbz,zip", lettering=False)
    assert [p.name for p in result.pages] == ["page_01.png", "page_02.png"]
    assert set(result.files) == {"pages", "pdf", "cbz", "zip"} and not result.warnings
    index = json.loads((run / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert (
        index["format"] == "storydiffusion-pages/1"
        and index["template"] == "four-panel"
        and index["direction"] == "ltr"
    )
    assert [page["file"] for page in index["pages"]] == ["page_01.png", "page_02.png"]
    assert [page["reading_order"] for page in index["pages"]] == [[1, 2, 3, 4], [5, 6, 7]]
    assert index["pages"][0]["cells"][0]["panel"] == 1
    page = Image.open(run / "pages" / "page_02.png")
    cell = index["pages"][1]["cells"][0]
    assert page.getpixel((cell["x"] + cell["w"] // 2, cell["y"] + cell["h"] // 2)) == COLOURS[4]
    assert len(pdf_pages(run / "comic.pdf")) == 2
    assert pdf_pages(run / "comic.pdf")[0] == pytest.approx((200 / 25.4 * 72, 200 / 25.4 * 72), abs=0.5)
    with zipfile.ZipFile(run / "comic.cbz") as archive:
        info = ElementTree.fromstring(archive.read("ComicInfo.xml"))
        assert (
            info.findtext("Title") == "A Test Story"
            and info.findtext("PageCount") == "2"
            and info.findtext("Manga") == "No"
        )
    with zipfile.ZipFile(run / "panels.zip") as archive:
        assert len(archive.namelist()) == 7
    assert no_temporaries(run)


def test_recomposing_replaces_pages_and_manga_is_right_to_left(tmp_path):
    run = make_run(tmp_path / "run", panels=13)
    first = compose_run(run, layout="four-panel", export="png", lettering=False)
    assert len(first.pages) == 4
    again = compose_run(run, layout="manga", export="cbz", lettering=False, dpi=60)
    assert len(again.pages) == 3
    assert sorted(p.name for p in (run / "pages").glob("page_*.png")) == ["page_01.png", "page_02.png", "page_03.png"]
    index = json.loads((run / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert index["direction"] == "rtl" and index["dpi"] == 60
    row = [c for c in index["pages"][0]["cells"] if c["y"] == index["pages"][0]["cells"][1]["y"]]
    assert row[0]["x"] > row[1]["x"]  # the first panel of the row is on the right
    with zipfile.ZipFile(run / "comic.cbz") as archive:
        assert ElementTree.fromstring(archive.read("ComicInfo.xml")).findtext("Manga") == "YesAndRightToLeft"


def test_recomposing_writes_the_earlier_exports_again_from_the_new_pages(tmp_path):
    """A PDF of the webtoon beside pages of the grid would be a folder at odds with itself."""
    run = make_run(tmp_path / "run", panels=6)
    compose_run(run, layout="webtoon", export="pdf,cbz", lettering=False)
    again = compose_run(run, layout="grid", lettering=False)
    assert {"pdf", "cbz"} <= set(again.files)
    with zipfile.ZipFile(run / "comic.cbz") as archive:
        pictures = [name for name in archive.namelist() if name.endswith(".png")]
        assert len(pictures) == len(again.pages) == len(list((run / "pages").glob("page_*.png")))
        assert ElementTree.fromstring(archive.read("ComicInfo.xml")).findtext("PageCount") == str(len(again.pages))
    (run / "comic.pdf").unlink()  # removed by the user: not made again
    assert "pdf" not in compose_run(run, layout="strip", lettering=False).files and not (run / "comic.pdf").exists()


def test_missing_panels_are_left_out_with_a_warning(tmp_path):
    run = make_run(tmp_path / "run", panels=5, missing=(1, 3))
    result = compose_run(run, layout="grid", lettering=False)
    assert result.layouts[0].reading_order == [0, 2, 4]
    assert [w for w in result.warnings if "missing" in w] == [
        "panels 2 and 4 are missing from panels/: left out of the pages"
    ]
    stopped = make_run(tmp_path / "stopped", panels=7, missing=(1, 2, 3, 4, 6))  # one line, however many
    warned = [w for w in compose_run(stopped, layout="grid", lettering=False).warnings if "missing" in w]
    assert warned == ["panels 2-5 and 7 are missing from panels/: left out of the pages"]
    alone = make_run(tmp_path / "alone", panels=3, missing=(2,))
    assert "panel 3 is missing (panels/panel_003.png)" in " ".join(compose_run(alone, lettering=False).warnings)
    empty = make_run(tmp_path / "empty", panels=2, missing=(0, 1))
    with pytest.raises(LayoutError, match="no panels"):
        compose_run(empty, lettering=False)
    with pytest.raises(LayoutError, match="story.json"):
        compose_run(tmp_path / "nowhere")


def test_letterbox_fit_and_dpi_options(tmp_path):
    run = make_run(tmp_path / "run", panels=1, size=(200, 50))
    result = compose_run(run, layout="four-panel", fit="letterbox", dpi=50, lettering=False)
    layout = result.layouts[0]
    page = Image.open(result.pages[0])
    assert page.size == (round(200 / 25.4 * 50), round(200 / 25.4 * 50))
    cell = layout.cells[0]
    assert page.getpixel((cell.x + cell.w // 2, cell.y + cell.h // 2)) == COLOURS[0]
    assert page.getpixel((cell.x + cell.w // 2, cell.y + 4)) == (255, 255, 255)  # bar above the panel
    with pytest.raises(LayoutError, match="fit"):
        compose_run(run, fit="stretch", lettering=False)


def test_compose_letters_edited_captions_and_the_title(tmp_path):
    pytest.importorskip("storydiffusion.layout.lettering")
    run = make_run(tmp_path / "run", panels=2, size=(256, 256))
    plain = compose_run(run, layout="strip", lettering=False)
    plain_page = Image.open(plain.pages[0]).copy()
    lettered = compose_run(run, layout="strip")
    index = json.loads((run / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert index["title"] == "A Test Story" and lettered.layouts[0].title_box is not None
    lettered_page = Image.open(lettered.pages[0]).copy()
    assert lettered_page.size == plain_page.size or lettered_page.height == plain_page.height
    # captions are read again from story.json: an edited caption changes the page
    manifest = json.loads((run / "story.json").read_text(encoding="utf-8"))
    manifest["story"]["panels"][0]["caption"] = "An entirely different and much longer caption than before."
    write_json(run / "story.json", manifest)
    edited = compose_run(run, layout="strip")
    assert Image.open(edited.pages[0]).tobytes() != lettered_page.tobytes()
    untitled = compose_run(run, layout="strip", title=False)
    assert untitled.layouts[0].title_box is None


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_compose(tmp_path, capsys):
    run = make_run(tmp_path / "run", panels=6)
    assert main(["compose", str(run), "--layout", "manga", "--export", "pdf,cbz", "--dpi", "60", "--no-lettering"]) == 0
    out = capsys.readouterr().out
    assert "2 manga pages" in out and "comic.pdf" in out
    assert (run / "pages" / "page_02.png").exists() and (run / "comic.cbz").exists()
    assert len(pdf_pages(run / "comic.pdf")) == 2
    assert main(["compose", str(run), "--layout", "none", "--no-title", "--fit", "letterbox", "--no-lettering"]) == 0
    assert len(list((run / "pages").glob("page_*.png"))) == 6


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--layout", "mangaa"], "unknown layout 'mangaa'"),
        (["--export", "pdf,epub"], "unknown export 'epub'"),
        (["--dpi", "5"], "dpi"),
    ],
)
def test_cli_compose_bad_input_exits_2_with_one_line(tmp_path, capsys, args, expected):
    run = make_run(tmp_path / "run", panels=2)
    assert main(["compose", str(run), *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and expected in error and len(error.splitlines()) == 1
    if "layout" in expected:
        assert all(name in error for name in list_templates())
    assert not (run / "pages").exists()


def test_cli_compose_of_a_folder_without_a_run(tmp_path, capsys):
    assert main(["compose", str(tmp_path)]) == 2
    assert "story.json" in capsys.readouterr().err


def test_generate_with_a_bad_layout_fails_before_generating(tmp_path, capsys):
    story = ROOT / "examples" / "lighthouse.yaml"
    assert main(["generate", str(story), "--out", str(tmp_path / "o"), "--model", "tiny-sdxl", "--layout", "nope"]) == 2
    assert "unknown layout 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_generate_with_layout_and_export(tmp_path, capsys):
    story = tmp_path / "s.yaml"
    story.write_text(
        'title: Test\ncharacters:\n  Bob: a man in a red coat\npanels:\n  - "[Bob] walks # Off he goes."\n  - "[NC] a street"\n  - "[Bob] sits"\n'
    )
    out = tmp_path / "out"
    fast = ["--model", "tiny-sdxl", "--steps", "2", "--quiet", "--device", "cpu"]
    assert main(["generate", str(story), "--out", str(out), *fast, "--layout", "yonkoma", "--export", "pdf,cbz"]) == 0
    assert (out / "panels" / "panel_003.png").exists()
    assert (out / "pages" / "page_01.png").exists() and (out / "pages" / "pages.json").exists()
    assert len(pdf_pages(out / "comic.pdf")) == 1
    with zipfile.ZipFile(out / "comic.cbz") as archive:
        assert ElementTree.fromstring(archive.read("ComicInfo.xml")).findtext("PageCount") == "1"
    assert "yonkoma page in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "title",
    ["Evil \x01\x0b <&> \x7f \ufffe \ud800 end", "<![CDATA[x]]> & </Title>", "\x00\x00", "漢字 · Ñandú"],
    ids=["controls", "markup", "nul", "unicode"],
)
def test_metadata_from_any_title_keeps_comicinfo_and_the_pdf_valid(title, tmp_path):
    from storydiffusion.layout.export import metadata_text

    xml = comic_info_xml(title, [(10, 10)], False, characters=["A\x02B"], summary=title)
    root = ElementTree.fromstring(xml)  # well-formed XML whatever the title holds
    assert root.findtext("Title") == metadata_text(title)
    assert all(ch.isprintable() for ch in root.findtext("Title"))
    pdf = write_pdf([Image.new("RGB", (16, 16), "white")], tmp_path / "c.pdf", 150, title=title)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.read_bytes().rstrip().endswith(b"%%EOF")


def test_the_tools_own_large_pages_open_without_a_decompression_bomb_warning():
    """A page at 1200 dpi is past the pixel count where Pillow warns (under MAX_PAGE_PIXELS): the warning,
    printed with a library path, would be noise under compose's one-line report."""
    import warnings

    from file_helpers import png_header_only

    from storydiffusion.layout import export

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert export._size(png_header_only(10_000, 10_000)) == (10_000, 10_000)


def test_metadata_leaves_out_the_controls_that_reorder_text():
    from storydiffusion.layout.export import metadata_text

    assert metadata_text("Safe \u202eexe.fdp") == "Safe exe.fdp"  # a reader's list would show "Safe pdf.exe"
    assert metadata_text("\u2067שלום\u2069 Mia") == "שלום Mia"


def test_pages_of_any_layout_can_read_right_to_left_and_a_recomposition_keeps_it(tmp_path, capsys):
    """A Hebrew or Arabic comic on classic pages: --direction rtl starts each row on the right."""
    from storydiffusion.layout.compose import compose_again

    run = make_run(tmp_path / "run", panels=4)
    ltr = compose_run(run, layout="four-panel", lettering=False).layouts[0].cells
    assert main(["compose", str(run), "--layout", "four-panel", "--direction", "rtl", "--no-lettering"]) == 0
    record = json.loads((run / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert record["direction"] == "rtl" and record["template"] == "four-panel"
    again = compose_again(run)  # after a redraw: the pages made again the way they were made
    cells = again.layouts[0].cells
    first_row = [cell for cell in cells if cell.y == cells[0].y]
    assert len(first_row) == 2 and first_row[0].panel_index == 0 and first_row[0].x > first_row[1].x
    ltr_row = [cell for cell in ltr if cell.y == ltr[0].y]
    assert ltr_row[0].panel_index == 0 and ltr_row[0].x < ltr_row[1].x  # the layout itself reads left to right
    assert main(["compose", str(run), "--direction", "up"]) == 2 and "--direction" in capsys.readouterr().err


def test_generate_composes_its_pages_right_to_left_when_asked(tmp_path):
    story = tmp_path / "s.yaml"
    story.write_text(
        'characters:\n  Dan: a man\npanels:\n  - "[Dan] walks # שלום"\n  - "[Dan] sits"\n', encoding="utf-8"
    )
    out = tmp_path / "out"
    flags = ["--model", "tiny-sdxl", "--steps", "2", "--width", "64", "--height", "64", "--quiet", "--device", "cpu"]
    assert main(["generate", str(story), "--out", str(out), *flags, "--direction", "rtl"]) == 0  # classic, read rtl
    record = json.loads((out / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert (record["template"], record["direction"]) == ("classic", "rtl")
