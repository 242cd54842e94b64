"""Hostile panel images in a run folder, through the CLI: compose and animate exit 2, name the file, change nothing.

The run already holds composed pages, so a refused panel must leave those (and every other file)
byte-identical: the panels are all checked before the first page is written.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from file_helpers import one_line_error, png_header_only, snapshot
from PIL import Image

from storydiffusion.atomic import write_json
from storydiffusion.cli import main
from storydiffusion.images import MAX_IMAGE_BYTES
from storydiffusion.rundir import MANIFEST_FORMAT, panel_filename
from storydiffusion.story import story_from_text


def truncated(format: str) -> bytes:
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format=format)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


# name -> (bytes written over panel 2, a word the message must hold)
HOSTILE_PANELS = {
    "truncated_png": (truncated("PNG"), "cut short"),
    "truncated_jpeg": (truncated("JPEG"), "cut short"),
    "bomb_header": (png_header_only(100_000, 100_000), "refused before decoding"),
    "just_over_pillow_warning": (png_header_only(10_000, 10_000), "refused before decoding"),
    "over_the_pixel_limit": (png_header_only(9_000, 9_000), "9000 x 9000"),
    "text_named_png": (b"these are my notes, not a picture\n", "not an image"),
    "empty": (b"", "empty"),
    "zero_width": (png_header_only(0, 64), "not an image"),
}


def make_run(folder, panels: int = 3):
    """A run folder as `generate` writes it: story.json (story and panel records) and panels/."""
    story = story_from_text("[Bob] a man in a red coat", "\n".join(f"[Bob] scene {i + 1}" for i in range(panels)))
    (folder / "panels").mkdir(parents=True)
    entries = []
    for i in range(panels):
        Image.new("RGB", (64, 64), (40 * i, 120, 200)).save(folder / "panels" / panel_filename(i))
        entries.append({"panel": i + 1, "file": f"panels/{panel_filename(i)}", "seed": i, "prompt": f"scene {i + 1}"})
    write_json(folder / "story.json", {"format": MANIFEST_FORMAT, "story": story.to_dict(), "panels": entries})
    return folder


@pytest.fixture
def composed_run(tmp_path):
    run = make_run(tmp_path / "run")
    assert main(["compose", str(run), "--layout", "grid", "--no-lettering", "--export", "pdf"]) == 0
    assert (run / "pages" / "page_01.png").is_file() and (run / "comic.pdf").is_file()
    return run


@pytest.mark.parametrize("case", sorted(HOSTILE_PANELS))
def test_a_hostile_panel_stops_compose_with_exit_2_naming_it(case, composed_run, capsys):
    data, expected = HOSTILE_PANELS[case]
    panel = composed_run / "panels" / panel_filename(1)
    panel.write_bytes(data)
    before = snapshot(composed_run)
    capsys.readouterr()
    assert main(["compose", str(composed_run), "--layout", "grid", "--no-lettering", "--export", "pdf,cbz,zip"]) == 2
    err = one_line_error(capsys)
    assert str(panel) in err and expected in err
    assert "delete it and draw the panel again" in err  # and how to get the panel back
    assert snapshot(composed_run) == before


def test_an_oversized_panel_file_is_refused_without_reading_it(composed_run, capsys):
    panel = composed_run / "panels" / panel_filename(2)
    with open(panel, "r+b") as handle:  # a sparse file: as large as the limit says, without writing it
        handle.truncate(MAX_IMAGE_BYTES + 1)
    before = {path: path.stat().st_mtime_ns for path in composed_run.rglob("*")}
    assert main(["compose", str(composed_run), "--no-lettering"]) == 2
    err = one_line_error(capsys)
    assert str(panel) in err and "MiB an image may be" in err
    assert {path: path.stat().st_mtime_ns for path in composed_run.rglob("*")} == before


def test_unusual_but_valid_panels_are_composed(composed_run):
    """A 16-bit PNG, a grey+alpha PNG and a CMYK JPEG named .png are pictures, not errors."""
    grey16 = Image.fromarray(np.full((64, 64), 65535, dtype=np.uint16))
    grey16.save(composed_run / "panels" / panel_filename(0))
    Image.new("LA", (64, 64), (0, 0)).save(composed_run / "panels" / panel_filename(1))
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(composed_run / "panels" / panel_filename(2), format="JPEG")
    assert main(["compose", str(composed_run), "--layout", "grid", "--no-lettering"]) == 0


@pytest.mark.parametrize("case", ["truncated_png", "bomb_header", "text_named_png"])
def test_a_hostile_panel_stops_animate_before_any_model_with_exit_2(case, tmp_path, capsys, monkeypatch):
    import storydiffusion.motion.animate as animate

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded for a run whose panel is broken")

    monkeypatch.setattr(animate, "load_transition_pipeline", no_model)
    run = make_run(tmp_path / "run")
    data, expected = HOSTILE_PANELS[case]
    panel = run / "panels" / panel_filename(1)
    panel.write_bytes(data)
    before = snapshot(run)
    assert main(["animate", str(run), "--from", "1", "--to", "2", "--model", "tiny", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert str(panel) in err and expected in err
    assert snapshot(run) == before and not (run / "video").exists()
