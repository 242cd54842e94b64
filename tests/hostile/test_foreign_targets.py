"""No command replaces a file this tool did not write: a user's ``story.json``, ``panels/panel_002.png``,
``comic.pdf`` or clip in the folder it writes into is refused before any work, and stays byte-identical."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
from file_helpers import one_line_error, snapshot
from test_interrupted_runs import FAST, STORY

from storydiffusion.atomic import write_json
from storydiffusion.cli import main
from storydiffusion.errors import StoryDiffusionError
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.run_manifest import read_manifest
from storydiffusion.run_targets import foreign_targets, story_targets
from storydiffusion.rundir import RunWriter, save_panel, save_result, unrecorded_files, written_files
from storydiffusion.story import load_story

USERS = b"the user's own file, not this tool's"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of STORY, composed with a PDF: what compose and animate are pointed at."""
    folder = tmp_path_factory.mktemp("finished")
    (folder / "story.yaml").write_text(STORY, encoding="utf-8")
    out = folder / "run"
    assert main(["generate", str(folder / "story.yaml"), "--out", str(out), *FAST, "--layout", "grid"]) == 0
    return folder


def never_generate(monkeypatch) -> None:
    def generate(*args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(StoryPipeline, "generate", generate)


def plant(out, name: str, kind: str = "file") -> None:
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_bytes(USERS)
    elif kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_bytes(USERS)
    else:
        (out / "elsewhere.txt").write_bytes(USERS)
        os.symlink(out / "elsewhere.txt", path)


@pytest.mark.parametrize(
    "name, options",
    [
        ("story.json", []),
        ("panels/panel_002.png", []),
        ("identity_bank.safetensors", ["--save-bank"]),
        ("masks/panel_005_mask_2.png", ["--save-masks"]),
        ("pages/page_01.png", ["--layout", "grid"]),
        ("comic.pdf", ["--export", "pdf"]),
        ("panels.zip", ["--layout", "classic", "--export", "png,zip"]),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_an_overwrite_into_a_folder_holding_a_users_file_of_a_name_it_writes_is_refused(
    tmp_path, story_file, monkeypatch, capsys, name, options
):
    out = tmp_path / "out"
    plant(out, name)
    before = snapshot(out)
    never_generate(monkeypatch)
    assert main(["generate", str(story_file), "--out", str(out), *FAST, "--overwrite", *options]) == 2
    err = one_line_error(capsys)
    assert f"{out / name} is a file this tool has no record of writing" in err and "move it" in err
    assert snapshot(out) == before


@pytest.fixture
def story_file(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_text(STORY, encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_folder_or_a_link_where_a_panel_goes_is_refused_too(tmp_path, story_file, monkeypatch, capsys, kind):
    out = tmp_path / "out"
    plant(out, "panels/panel_003.png", kind)
    before = snapshot(out)
    never_generate(monkeypatch)
    assert main(["generate", str(story_file), "--out", str(out), *FAST, "--overwrite"]) == 2
    assert f"panel_003.png is a {kind} this tool has no record of writing" in one_line_error(capsys)
    assert snapshot(out) == before and (out / "panels" / "panel_003.png").exists()


def test_a_continued_run_refuses_a_users_file_dropped_where_a_missing_panel_goes(
    finished, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    manifest = read_manifest(out / "story.json")
    manifest["panels"] = manifest["panels"][:2]
    manifest["complete"] = False
    write_json(out / "story.json", manifest)
    for number in (3, 5):
        (out / "panels" / f"panel_00{number}.png").unlink()
    (out / "panels" / "panel_004.png").write_bytes(USERS)  # no longer on the record: the user's
    before = snapshot(out)
    never_generate(monkeypatch)
    assert main(["generate", str(finished / "story.yaml"), "--out", str(out), *FAST]) == 2
    assert "panel_004.png is a file this tool has no record of writing" in one_line_error(capsys)
    assert snapshot(out) == before


@pytest.mark.parametrize(
    "name, command",
    [
        ("pages/page_01.png", ["compose", "{run}"]),
        ("comic.cbz", ["compose", "{run}", "--export", "cbz"]),
        ("video/01-02.gif", ["animate", "{run}", "--from", "1", "--to", "2", "--device", "cpu"]),
        ("video/01-02.json", ["animate", "{run}", "--from", "1", "--to", "2", "--device", "cpu"]),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_compose_and_animate_refuse_to_replace_a_users_file(finished, tmp_path, capsys, name, command):
    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    if name.startswith("pages/"):
        (out / "pages" / "pages.json").unlink()  # the grid's pages are no longer on record: now they are the user's
        (out / name).write_bytes(USERS)
    else:
        plant(out, name)
    before = snapshot(out)
    assert main([part.format(run=out) for part in command]) == 2
    assert f"{out / name} is a file this tool has no record of writing" in one_line_error(capsys)
    assert snapshot(out) == before


def test_the_library_writers_refuse_a_users_file_too(finished, tmp_path, tiny_sdxl):
    tiny_result = tiny_sdxl.generate(load_story(finished / "story.yaml"), panels=[0, 1])
    out = tmp_path / "out"
    plant(out, "panels/panel_001.png")
    with pytest.raises(StoryDiffusionError, match="panel_001.png is a file this tool has no record of writing"):
        save_result(tiny_result, out)
    with pytest.raises(StoryDiffusionError, match="no record of writing"):
        RunWriter(out).start(dataclasses.replace(tiny_result, panels=[]))
    assert (out / "panels" / "panel_001.png").read_bytes() == USERS and not (out / "story.json").exists()


def test_the_tools_own_files_are_not_foreign(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    story = load_story(finished / "story.yaml")
    assert foreign_targets(run, story_targets(story)) == []
    (run / "panels" / "panel_001.png").unlink()
    assert foreign_targets(run, story_targets(story)) == []  # a missing file is in nobody's way


def test_a_panel_written_just_before_a_crash_is_the_tools_and_the_rerun_finishes_the_run(
    finished, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    original = RunWriter.panel

    def crash_between_file_and_record(self, panel):
        if panel.index == 2:
            save_panel(panel, self.out)
            raise KeyboardInterrupt  # as a kill between the panel's file and its record would leave it
        original(self, panel)

    with monkeypatch.context() as patch:
        patch.setattr(RunWriter, "panel", crash_between_file_and_record)
        assert main(["generate", str(finished / "story.yaml"), "--out", str(out), *FAST]) == 130
    record = read_manifest(out / "story.json")
    assert [entry["panel"] for entry in record["panels"]] == [1, 2] and 3 in record["drawing"]
    assert (out / "panels" / "panel_003.png").is_file() and unrecorded_files(out) == []
    assert main(["generate", str(finished / "story.yaml"), "--out", str(out), *FAST]) == 0
    clean = finished / "run" / "panels"
    assert {p.name: p.read_bytes() for p in (out / "panels").iterdir()} == {
        p.name: p.read_bytes() for p in clean.iterdir()
    }
    assert "drawing" not in read_manifest(out / "story.json")


def test_a_stopped_compose_or_animate_leaves_only_recorded_files_and_the_same_command_finishes(
    finished, tmp_path, monkeypatch
):
    import storydiffusion.layout.compose as compose
    import storydiffusion.motion.animate as animate

    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    (out / "pages" / "pages.json").unlink()
    for page in (out / "pages").iterdir():
        page.unlink()
    writes = compose.write_pages_png

    def pages_then_stop(*args, **kwargs):
        writes(*args, **kwargs)
        raise KeyboardInterrupt  # the pages are written, their final record is not

    with monkeypatch.context() as patch:
        patch.setattr(compose, "write_pages_png", pages_then_stop)
        assert main(["compose", str(out), "--export", "pdf"]) == 130
    assert (out / "pages" / "page_01.png").is_file() and unrecorded_files(out) == []
    assert main(["compose", str(out), "--export", "pdf"]) == 0 and (out / "comic.pdf").is_file()
    clip = ["animate", str(out), "--from", "1", "--to", "2", "--model", "tiny", "--frames", "2", "--steps", "1"]
    with monkeypatch.context() as patch:
        patch.setattr(animate, "write_gif", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert main([*clip, "--device", "cpu"]) == 130
    assert (out / "video" / "01-02.mp4").is_file() and unrecorded_files(out) == []
    assert main([*clip, "--device", "cpu"]) == 0 and (out / "video" / "01-02.gif").is_file()
    assert read_manifest(out / "story.json")["complete"] is True and unrecorded_files(out) == []


@pytest.mark.parametrize(("name", "kind"), [("panels", "link"), ("pages", "file"), ("masks", "link")])
def test_a_link_or_a_file_where_the_tool_writes_a_folder_is_refused_before_any_work(
    tmp_path, story_file, monkeypatch, capsys, name, kind
):
    out = tmp_path / "out"
    out.mkdir()
    if kind == "link":
        (tmp_path / "elsewhere").mkdir()
        os.symlink(tmp_path / "elsewhere", out / name)
    else:
        (out / name).write_bytes(USERS)
    never_generate(monkeypatch)
    options = ["--overwrite", "--layout", "classic", "--save-masks"]
    assert main(["generate", str(story_file), "--out", str(out), *FAST, *options]) == 2
    assert f"{out / name} is a {kind}" in one_line_error(capsys)
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())


def test_the_panels_being_drawn_claim_no_more_than_that_run_could_write(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    record = read_manifest(out / "story.json")
    record["drawing"] = [3, 4, 5, 7, 9]  # 7 and 9: beyond the story's five panels
    write_json(out / "story.json", record)
    plant(out, "panels/panel_007.png")
    plant(out, "masks/panel_004_mask_9.png")  # panel 4 shows one character: a ninth mask is not this tool's
    plant(out, "masks/panel_005_mask_2.png")  # panel 5 shows two: this name is the tool's
    ours = {path.relative_to(out).as_posix() for path in written_files(out)}
    assert "panels/panel_007.png" not in ours and "masks/panel_004_mask_9.png" not in ours
    assert "masks/panel_005_mask_2.png" in ours and "panels/panel_004.png" in ours


def test_a_page_the_layout_cannot_reach_does_not_stop_generate_layout(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    plant(out, "pages/page_99.png")
    assert (
        main(["generate", str(finished / "story.yaml"), "--out", str(out), *FAST, "--panels", "2", "--layout", "grid"])
        == 0
    )
    assert (out / "pages" / "page_99.png").read_bytes() == USERS


def test_the_library_writer_checks_the_masks_and_bank_it_may_write(finished, tmp_path, tiny_sdxl):
    result = tiny_sdxl.generate(load_story(finished / "story.yaml"), panels=[0], keep_masks=True)
    for name in ("masks/panel_001_mask_1.png", "identity_bank.safetensors"):
        out = tmp_path / name.replace("/", "_")
        plant(out, name)
        with pytest.raises(StoryDiffusionError, match="no record of writing"):
            RunWriter(out).start(dataclasses.replace(result, panels=[]))
        RunWriter(out, masks=False, bank=False).start(dataclasses.replace(result, panels=[]))  # asked for neither
        assert (out / name).read_bytes() == USERS


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_run_record_edited_until_it_no_longer_parses_is_named_as_the_reason(
    finished, tmp_path, monkeypatch, capsys, overwrite
):
    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    text = (out / "story.json").read_text(encoding="utf-8")
    (out / "story.json").write_text(text.replace('"seed": ', '"seed": 1e400, "was": ', 1), encoding="utf-8")
    before = snapshot(out)
    never_generate(monkeypatch)
    assert main(["generate", str(finished / "story.yaml"), "--out", str(out), *FAST, *overwrite]) == 2
    err = one_line_error(capsys)
    assert (
        f"{out / 'story.json'} is a file this tool has no record of writing: it cannot be read as a run's record" in err
    )
    assert "repair or delete it" in err and "already holds files" not in err
    assert snapshot(out) == before


def test_a_damaged_pages_record_stops_compose_with_composes_fix_and_not_a_generate_that_writes_no_pages(
    finished, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    shutil.copytree(finished / "run", out)
    (out / "pages" / "pages.json").write_text("{broken", encoding="utf-8")
    before = snapshot(out)
    assert main(["compose", str(out), "--layout", "grid"]) == 2
    err = one_line_error(capsys)
    assert "pages.json is a file this tool has no record of writing: it cannot be read" in err and "--out" not in err
    assert snapshot(out) == before
    assert main(["generate", str(finished / "story.yaml"), "--out", str(out), *FAST, "--overwrite"]) == 0
    assert (out / "pages" / "pages.json").read_text(encoding="utf-8") == "{broken"  # not its to judge, nor delete
