"""The output folder: what this tool wrote there is known from its own records, and only that is replaced."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PIL import Image

from storydiffusion import run_writer, rundir
from storydiffusion.atomic import write_json
from storydiffusion.errors import StoryDiffusionError
from storydiffusion.models import ModelSpec
from storydiffusion.pipeline import PanelImage, StoryResult
from storydiffusion.rundir import (
    MANIFEST_FORMAT,
    PAGES_FORMAT,
    check_output_dir,
    prepare_output_dir,
    recorded_exports,
    written_files,
)
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text


def make_run(run):
    """A run folder as generate, compose --export pdf and animate leave it, plus files of the user's."""
    (run / "panels").mkdir(parents=True)
    for name in ("panel_001.png", "panel_002.png"):
        Image.new("RGB", (8, 8), "red").save(run / "panels" / name)
    (run / "masks").mkdir()
    (run / "masks" / "panel_002_mask_1.png").write_bytes(b"mask")
    masks = {"Bob": "masks/panel_002_mask_1.png", "Eve": "masks/../notes.txt"}
    write_json(
        run / "story.json",
        {
            "format": MANIFEST_FORMAT,
            "panels": [{"file": "panels/panel_001.png"}, {"file": "panels/panel_002.png", "masks": masks}],
            "identity_bank": "identity_bank.safetensors",
        },
    )
    (run / "identity_bank.safetensors").write_bytes(b"bank")
    (run / "pages").mkdir()
    (run / "pages" / "page_01.png").write_bytes(b"page")
    write_json(
        run / "pages" / "pages.json",
        {"format": PAGES_FORMAT, "pages": [{"file": "page_01.png"}], "exports": ["comic.pdf"]},
    )
    (run / "comic.pdf").write_bytes(b"pdf")
    (run / "video").mkdir()
    (run / "video" / "01-02.mp4").write_bytes(b"mp4")
    (run / "video" / "01-02.gif").write_bytes(b"gif")
    write_json(run / "video" / "01-02.json", {"files": ["01-02.mp4", "01-02.gif"]})
    users = {
        run / "notes.txt": b"my notes",
        run / "panels" / "sketch.png": b"my sketch",
        run / "pages" / "cover.png": b"my cover",
        run / "comic.cbz": b"a cbz compose never wrote here",
        run / "video" / "mine.mp4": b"my clip",
        run / "masks" / "panel_001_mask_1.png": b"a mask no record names",
    }
    for path, data in users.items():
        path.write_bytes(data)
    return users


def test_written_files_are_exactly_what_the_records_name(tmp_path):
    users = make_run(tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written_files(tmp_path))
    assert names == sorted(
        [
            "story.json",
            "panels/panel_001.png",
            "panels/panel_002.png",
            "masks/panel_002_mask_1.png",
            "identity_bank.safetensors",
            "pages/pages.json",
            "pages/page_01.png",
            "comic.pdf",
            "video/01-02.json",
            "video/01-02.mp4",
            "video/01-02.gif",
        ]
    )
    assert not set(users) & set(written_files(tmp_path))


def test_records_cannot_point_outside_the_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"not yours")
    write_json(run / "story.json", {"format": MANIFEST_FORMAT, "panels": [{"file": "../precious.png"}]})
    (run / "link.png").symlink_to(outside)
    write_json(run / "video" / "x.json", {"files": ["../../precious.png", "../link.png"]})
    assert written_files(run) == [run / "story.json"]  # x.json is not a name this tool gives a clip record
    prepare_output_dir(run, overwrite=True)
    assert outside.read_bytes() == b"not yours"


def test_records_naming_the_users_own_files_are_not_believed(tmp_path):
    """A hand-edited record can name only files shaped like this tool's: never notes.txt or a sketch."""
    run = tmp_path / "run"
    users = {"notes.txt": b"notes", "panels/sketch.png": b"sketch", "pages/cover.png": b"cover", "video/a.mp4": b"a"}
    for name, data in users.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(data)
    panels = [{"file": "notes.txt"}, {"file": "panels/sketch.png"}, {"file": "panels/../notes.txt"}]
    write_json(run / "story.json", {"format": MANIFEST_FORMAT, "panels": panels, "identity_bank": "notes.txt"})
    write_json(
        run / "pages" / "pages.json",
        {"format": PAGES_FORMAT, "pages": [{"file": "cover.png"}, {"file": "../notes.txt"}]},
    )
    write_json(run / "video" / "01-02.json", {"files": ["a.mp4", "../notes.txt"]})
    assert sorted(p.relative_to(run).as_posix() for p in written_files(run)) == [
        "pages/pages.json",
        "story.json",
        "video/01-02.json",
    ]
    prepare_output_dir(run, overwrite=True)
    assert {name: (run / name).read_bytes() for name in users} == users


def test_overwrite_removes_only_what_this_tool_wrote(tmp_path):
    users = make_run(tmp_path)
    before = {path: path.read_bytes() for path in users}
    prepare_output_dir(tmp_path, overwrite=True)
    assert {path: path.read_bytes() for path in users} == before
    assert not (tmp_path / "story.json").exists() and not (tmp_path / "comic.pdf").exists()
    assert not (tmp_path / "panels" / "panel_001.png").exists()
    assert (tmp_path / "panels").is_dir()


def test_a_folder_with_files_is_refused_without_overwrite_and_left_untouched(tmp_path):
    make_run(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for check in (check_output_dir, prepare_output_dir):
        with pytest.raises(StoryDiffusionError, match="--overwrite"):
            check(tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_file_in_the_way_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(StoryDiffusionError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "out", overwrite=True)
    assert (tmp_path / "out").read_text() == "a file"


def test_recorded_exports_come_only_from_a_pages_index(tmp_path):
    assert recorded_exports(tmp_path) == []
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "pages.json").write_text(json.dumps({"format": "other", "exports": ["comic.pdf"]}))
    assert recorded_exports(tmp_path) == []
    write_json(tmp_path / "pages" / "pages.json", {"format": PAGES_FORMAT, "exports": ["comic.cbz", "../x", "a.pdf"]})
    assert recorded_exports(tmp_path) == ["comic.cbz"]


def test_overwrite_clears_temporaries_of_this_tools_files_but_never_unrecorded_look_alikes(tmp_path):
    """A run writes its manifest before its first panel, so a panel file no record names is the user's, and
    so is a temporary of one (``.panel_003.tmp.png``); only a temporary of a file this tool alone writes, one
    of a kind (the manifest, the bank, an export), is its own without a record."""
    (tmp_path / "panels").mkdir()
    ours = [".story.tmp.json", ".identity_bank.tmp.safetensors", ".comic.tmp.pdf"]
    mine = {
        name: b"mine"
        for name in (
            "panels/panel_001.png",
            "panels/panel_099.png",
            "panels/panel_1.png",
            "panels/my.tmp",
            "panels/.sketch.tmp.png",
            "panels/.panel_003.tmp.png",
            ".notes.tmp.txt",
        )
    }
    for name in [*ours, *mine]:
        (tmp_path / name).write_bytes(b"mine" if name in mine else b"from a stopped write")
    prepare_output_dir(tmp_path, overwrite=True)
    assert not any((tmp_path / name).exists() for name in ours)
    assert {name: (tmp_path / name).read_bytes() for name in mine} == mine


def finished_result(count: int) -> StoryResult:
    story = story_from_text("[Bob] a man", "\n".join(["[Bob] walks"] * count))
    image = Image.new("RGB", (8, 8), "red")
    panels = [PanelImage(index, image, index, "walks", "", ("Bob",), False) for index in range(count)]
    spec = ModelSpec("tiny-sdxl", "tiny", "sdxl", 2, 5.0, 64, 64)
    return StoryResult(story=story, settings=GenerationSettings(steps=2), model=spec, panels=panels, bank=None)


def test_a_run_is_recorded_before_its_first_panel_and_each_panel_as_it_is_written(tmp_path, monkeypatch):
    recorded_before_each_panel = []
    original = run_writer.save_panel

    def save_panel(panel, out_dir):
        manifest = json.loads((out_dir / "story.json").read_text(encoding="utf-8"))
        recorded_before_each_panel.append([entry["file"] for entry in manifest["panels"]])
        return original(panel, out_dir)

    monkeypatch.setattr(run_writer, "save_panel", save_panel)
    manifest = rundir.save_result(finished_result(3), tmp_path)
    assert recorded_before_each_panel == [
        [],
        ["panels/panel_001.png"],
        ["panels/panel_001.png", "panels/panel_002.png"],
    ]
    assert json.loads(manifest.read_text(encoding="utf-8"))["complete"] is True
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written_files(tmp_path)) == [
        "panels/panel_001.png",
        "panels/panel_002.png",
        "panels/panel_003.png",
        "story.json",
    ]

    writer, live = rundir.RunWriter(tmp_path / "live"), finished_result(1)
    writer.start(dataclasses.replace(live, panels=[]))
    writer.result.panels.append(live.panels[0])
    writer.panel(live.panels[0])
    assert recorded_before_each_panel[-1] == []


def test_exports_of_a_pages_index_from_before_the_exports_record_count_as_composes(tmp_path):
    (tmp_path / "pages").mkdir()
    write_json(tmp_path / "pages" / "pages.json", {"format": PAGES_FORMAT, "pages": []})
    (tmp_path / "comic.pdf").write_bytes(b"pdf")
    assert recorded_exports(tmp_path) == ["comic.pdf"]
