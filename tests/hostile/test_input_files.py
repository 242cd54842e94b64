"""Hostile story, layout and manifest files through the CLI: exit 2, one line naming the file, nothing lost.

Every case runs against an output folder that already holds a finished run and a file of the user's,
with --overwrite: a refused input must leave every one of those files byte-identical.
"""

from __future__ import annotations

import json

import pytest
from file_helpers import one_line_error, snapshot, write_recorded_run

from storydiffusion.cli import main
from storydiffusion.rundir import MANIFEST_FORMAT
from storydiffusion.structured import MAX_DEPTH, MAX_FILE_BYTES

STORY = "characters:\n  Bob: a tall man\npanels:\n  - '[Bob] walks'\n"
LAUGHS = "\n".join(
    ["characters: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"k{i}: &{b} [{', '.join([f'*{a}'] * 10)}]" for i, (a, b) in enumerate(zip("abcde", "bcdef"))]
    + ["panels: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]"]
)
HOSTILE_STORIES = {
    "laughs.yaml": (LAUGHS, "YAML aliases"),
    "deep.yaml": ("panels: " + "[" * 50_000, "nested more than"),
    "deep.json": ('{"panels": ' + "[" * 50_000, "nested more than"),
    "block.yaml": "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 3)),
    "tag.yaml": (STORY + "seed: !!python/object/apply:os.system ['echo owned']\n", "YAML tag"),
    "duplicate.yaml": (STORY + "panels: ['[Bob] runs']\n", "'panels' twice"),
    "duplicate.json": ('{"characters": {"Bob": "a man"}, "panels": ["x"], "panels": ["y"]}', "'panels' twice"),
    "nan.json": ('{"characters": {"Bob": "a man"}, "panels": ["x"], "settings": {"guidance": NaN}}', "NaN"),
    "huge.yaml": (STORY + "# " + "x" * MAX_FILE_BYTES + "\n", "MB allowed"),
    # Python refuses to read integers of over 4,300 digits (a ValueError from inside the parsers)
    "long_int.yaml": (STORY + "settings: {seed: " + "9" * 5000 + "}\n", "has 5000 characters, more than the 100"),
    "long_hex.yaml": (STORY + "settings: {seed: 0x" + "f" * 5000 + "}\n", "has 5002 characters"),
    "long_int.json": ('{"panels": ["x"], "settings": {"seed": ' + "9" * 5000 + "}}", "has 5000 characters"),
}
HOSTILE_STORIES["block.yaml"] = (HOSTILE_STORIES["block.yaml"], "nested more than")


@pytest.fixture
def finished_run(tmp_path):
    """An output folder holding an earlier run and a file of the user's, and a snapshot of its bytes."""
    out = write_recorded_run(tmp_path / "out")
    return out, snapshot(out)


@pytest.mark.parametrize("name", sorted(HOSTILE_STORIES))
def test_hostile_story_files_exit_2_and_touch_nothing(name, finished_run, tmp_path, capsys):
    text, expected = HOSTILE_STORIES[name]
    story = tmp_path / name
    story.write_text(text, encoding="utf-8")
    out, before = finished_run
    assert main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--overwrite"]) == 2
    err = one_line_error(capsys)
    assert expected in err and name in err
    assert snapshot(out) == before


def test_a_hostile_story_json_named_like_a_manifest_is_read_as_a_story_and_refused(finished_run, tmp_path, capsys):
    story = tmp_path / "story.json"
    story.write_text('{"format": "' + MANIFEST_FORMAT + '", "story": ' + "[" * 50_000)
    out, before = finished_run
    assert main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--overwrite"]) == 2
    assert "nested more than" in one_line_error(capsys)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nrows: " + "[" * 50_000, "nested more than"),
        ("name: x\nname: y\n", "'name' twice"),
        ("page: !!python/name:os.system x\n", "YAML tag"),
        ("page: {width: 59000px, height: 59000px}\npages:\n  - rows: [{cells: 1}]\n", "use a smaller size or page.dpi"),
        ("page: {dpi: " + "9" * 5000 + "}\n", "has 5000 characters"),
    ],
    ids=["deep", "duplicate", "tag", "page", "long_dpi"],
)
def test_hostile_layout_files_exit_2_before_any_page_is_drawn(text, expected, finished_run, tmp_path, capsys):
    layout = tmp_path / "evil.yaml"
    layout.write_text(text)
    out, before = finished_run
    assert main(["compose", str(out), "--layout", str(layout)]) == 2
    err = one_line_error(capsys)
    assert expected in err and "evil.yaml" in err
    assert snapshot(out) == before


def test_a_hostile_run_manifest_stops_compose_with_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "story.json").write_text(json.dumps({"format": MANIFEST_FORMAT})[:-1] + ', "story": ' + "{" * 50_000)
    before = snapshot(run)
    assert main(["compose", str(run)]) == 2
    assert "nested more than" in one_line_error(capsys)
    assert snapshot(run) == before


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "kind: none\nmargins: 10000mm\n",
            "would be 118,174 x 118,174 pixels, more than the 60,000 a page may have on a",
        ),
        (
            "kind: webtoon\npage: {width: 59000px}\n",
            "more than the 150,000,000 a page may have: use a smaller chapter_panels, or a narrower page",
        ),
    ],
    ids=["margins", "webtoon"],
)
def test_a_layout_whose_pages_would_need_gigabytes_is_refused_before_drawing(text, expected, tmp_path, capsys):
    """The process was killed for memory without a word: now the page's size is refused when the run is laid out."""
    story = tmp_path / "story.yaml"
    story.write_text(STORY + "settings: {steps: 1, id_images: 1, height: 64, width: 64}\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet"]) == 0
    before = snapshot(out)
    layout = tmp_path / "evil.yaml"
    layout.write_text(text)
    assert main(["compose", str(out), "--layout", str(layout)]) == 2
    err = one_line_error(capsys)
    assert expected in err and "evil.yaml" in err
    assert snapshot(out) == before
