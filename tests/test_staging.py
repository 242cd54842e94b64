"""--overwrite stages the new run inside the folder and swaps it in only when finished: only runs' files move."""

from __future__ import annotations

import pytest

from storydiffusion.atomic import write_json
from storydiffusion.errors import StoryDiffusionError
from storydiffusion.rundir import MANIFEST_FORMAT, STAGING_DIR, check_output_dir
from storydiffusion.settings import GenerationSettings
from storydiffusion.staging import discard_staged_run, needs_staging, start_staged_run, swap_in_staged_run
from storydiffusion.story import story_from_text


def write_run(folder, panels: dict[str, bytes], bank: bytes | None = None):
    (folder / "panels").mkdir(parents=True, exist_ok=True)
    for name, data in panels.items():
        (folder / "panels" / name).write_bytes(data)
    if bank is not None:
        (folder / "identity_bank.safetensors").write_bytes(bank)
    record = {"format": MANIFEST_FORMAT, "panels": [{"file": f"panels/{name}"} for name in panels]}
    record["identity_bank"] = "identity_bank.safetensors" if bank is not None else None
    write_json(folder / "story.json", record)


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_only_a_folder_with_something_to_lose_is_staged(tmp_path):
    assert not needs_staging(tmp_path / "new")
    (tmp_path / "notes.txt").write_text("mine")
    assert not needs_staging(tmp_path)
    (tmp_path / STAGING_DIR).mkdir()
    assert needs_staging(tmp_path)
    (tmp_path / STAGING_DIR).rmdir()
    write_run(tmp_path, {"panel_001.png": b"old"})
    assert needs_staging(tmp_path)


def test_swap_replaces_exactly_the_old_run_and_keeps_the_users_files_and_the_bank_read(tmp_path):
    old = {f"panel_00{n}.png": f"old {n}".encode() for n in (1, 2, 3, 4)}
    write_run(tmp_path, old, b"old bank")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "panels" / "sketch.png").write_bytes(b"my sketch")
    staging = tmp_path / STAGING_DIR
    write_run(staging, {"panel_001.png": b"new 1", "panel_002.png": b"new 2", "panel_003.png": b"new 3"})
    (staging / "panels" / ".panel_003.tmp.png").write_bytes(b"half a panel")  # of a write since finished
    staged = snapshot(staging)
    manifest = swap_in_staged_run(tmp_path, keep=(tmp_path / "identity_bank.safetensors",))
    after = snapshot(tmp_path)
    assert manifest == tmp_path / "story.json" and not staging.exists()
    new = ("story.json", "panels/panel_001.png", "panels/panel_002.png", "panels/panel_003.png")
    assert {name: after[name] for name in new} == {name: staged[name] for name in new}
    assert "panels/panel_004.png" not in after and "panels/.panel_003.tmp.png" not in after
    assert after["notes.txt"] == b"mine" and after["panels/sketch.png"] == b"my sketch"
    assert after["identity_bank.safetensors"] == b"old bank"


def test_a_staged_run_of_another_drawing_is_discarded_and_the_old_run_left_alone(tmp_path):
    write_run(tmp_path, {"panel_001.png": b"old"})
    before = snapshot(tmp_path)
    staging = tmp_path / STAGING_DIR
    write_run(staging, {"panel_001.png": b"another story's panel"})
    story = story_from_text("[Bob] a man", "[Bob] walks")
    settings = GenerationSettings(steps=2, height=64, width=64, guidance=5.0)
    folder, plan = start_staged_run(tmp_path, story, settings, "tiny-sdxl", None)
    assert folder == staging and plan is None
    assert list(staging.rglob("*")) == [staging / "panels"]
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(STAGING_DIR)} == before


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_something_else_under_the_staging_name_is_refused_before_any_work(tmp_path, kind):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.txt").write_text("mine")
    if kind == "file":
        (tmp_path / STAGING_DIR).write_text("mine")
    else:
        (tmp_path / STAGING_DIR).symlink_to(target)
    with pytest.raises(StoryDiffusionError, match="is in the way"):
        check_output_dir(tmp_path, overwrite=True)
    assert (target / "precious.txt").read_text() == "mine"


def test_discarding_a_staged_run_removes_only_its_files_and_the_folders_it_leaves_empty(tmp_path):
    staging = tmp_path / STAGING_DIR
    write_run(staging, {"panel_001.png": b"staged 1"}, b"staged bank")
    (staging / ".story.tmp.json").write_bytes(b"half a record")
    discard_staged_run(tmp_path)
    assert not staging.exists()

    write_run(staging, {"panel_001.png": b"staged 1"})
    mine = {"keep.txt": b"mine", "panels/panel_099.png": b"my look-alike", "panels/.panel_1.tmp.png": b"mine"}
    for name, data in mine.items():
        (staging / name).write_bytes(data)
    discard_staged_run(tmp_path)
    assert snapshot(staging) == mine


@pytest.mark.parametrize("name", ["keep.txt", "panels/panel_099.png", "notes/plan.txt"])
def test_a_staging_folder_holding_a_file_this_tool_did_not_write_is_refused_and_left_as_it_is(tmp_path, name):
    write_run(tmp_path, {"panel_001.png": b"old"})
    staging = tmp_path / STAGING_DIR
    write_run(staging, {"panel_001.png": b"staged"})
    (staging / name).parent.mkdir(parents=True, exist_ok=True)
    (staging / name).write_bytes(b"mine")
    before = snapshot(tmp_path)
    story = story_from_text("[Bob] a man", "[Bob] walks")
    settings = GenerationSettings(steps=2, height=64, width=64, guidance=5.0)
    for attempt in (
        lambda: check_output_dir(tmp_path, overwrite=True),
        lambda: start_staged_run(tmp_path, story, settings, "tiny-sdxl", None),
    ):
        with pytest.raises(StoryDiffusionError, match=f"{STAGING_DIR} holds {name}, which this tool has no record"):
            attempt()
    assert snapshot(tmp_path) == before


def test_swap_keeps_a_users_file_shaped_like_a_panel_the_new_run_does_not_draw(tmp_path):
    write_run(tmp_path, {"panel_001.png": b"old 1", "panel_002.png": b"old 2", "panel_003.png": b"old 3"})
    (tmp_path / "panels" / "panel_099.png").write_bytes(b"my look-alike")
    write_run(tmp_path / STAGING_DIR, {"panel_001.png": b"new 1", "panel_002.png": b"new 2", "panel_003.png": b"n3"})
    swap_in_staged_run(tmp_path)
    after = snapshot(tmp_path)
    assert after["panels/panel_099.png"] == b"my look-alike" and after["panels/panel_001.png"] == b"new 1"
    assert not (tmp_path / STAGING_DIR).exists()
