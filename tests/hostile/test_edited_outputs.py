"""A file this tool wrote and the user then edited is the user's: every record keeps the SHA-256 of each file
as written (panels, masks, identity bank, pages, PDF/CBZ/ZIP, clips), so a touched-up ``page_03.png`` or
``comic.pdf`` is never deleted by ``--overwrite`` nor replaced by the next compose or animate."""

from __future__ import annotations

import json
import shutil

import pytest
from file_helpers import one_line_error, snapshot
from PIL import Image
from test_interrupted_runs import FAST, STORY

from storydiffusion.cli import main
from storydiffusion.rundir import unrecorded_files, written_files

EDIT = b"touched up by hand"
CLIP = ["animate", "{run}", "--from", "1", "--to", "2", "--model", "tiny", "--frames", "2", "--steps", "1"]
CLIP += ["--device", "cpu"]
EXPORTS = ["--export", "pdf,cbz,zip"]
EVERY_FILE = [
    "pages/page_01.png",
    "pages/page_02.png",
    "comic.pdf",
    "comic.cbz",
    "panels.zip",
    "identity_bank.safetensors",
    "masks/panel_005_mask_2.png",
    "video/01-02.mp4",
    "video/01-02.gif",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run with every kind of file this tool writes: panels, masks, bank, pages, exports and a clip."""
    folder = tmp_path_factory.mktemp("finished")
    (folder / "story.yaml").write_text(STORY, encoding="utf-8")
    run = folder / "run"
    options = ["--save-bank", "--save-masks", "--layout", "four-panel", *EXPORTS]  # five panels: two pages
    assert main(["generate", str(folder / "story.yaml"), "--out", str(run), *FAST, *options]) == 0
    assert main([part.format(run=run) for part in CLIP]) == 0
    assert {path.relative_to(run).as_posix() for path in written_files(run)} >= set(EVERY_FILE)
    return folder


def edited_copy(finished, tmp_path, name: str):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    (run / name).write_bytes(EDIT)
    return run


@pytest.mark.parametrize("name", EVERY_FILE)
def test_an_edited_file_is_no_longer_the_tools_and_overwrite_leaves_it(finished, tmp_path, name):
    run = edited_copy(finished, tmp_path, name)
    assert run / name not in written_files(run) and unrecorded_files(run) == [run / name]
    fresh = ["generate", str(finished / "story.yaml"), "--out", str(run), *FAST, "--overwrite"]
    assert main(fresh) == 0  # this run writes no file of that name: it replaces its own and leaves the edit
    assert (run / name).read_bytes() == EDIT and unrecorded_files(run) == [run / name]


@pytest.mark.parametrize(
    "name, command",
    [
        ("pages/page_01.png", ["compose", "{run}", "--layout", "grid"]),
        ("comic.pdf", ["compose", "{run}", "--layout", "grid"]),  # an earlier export is refreshed: not this one
        ("panels.zip", ["compose", "{run}", "--layout", "classic", "--export", "zip"]),
        ("identity_bank.safetensors", ["generate", "{story}", "--out", "{run}", *FAST, "--overwrite", "--save-bank"]),
        (
            "masks/panel_005_mask_2.png",
            ["generate", "{story}", "--out", "{run}", *FAST, "--panels", "5", "--save-masks"],
        ),
        ("video/01-02.gif", CLIP),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_command_that_would_replace_an_edited_file_is_refused_and_touches_nothing(
    finished, tmp_path, capsys, name, command
):
    run = edited_copy(finished, tmp_path, name)
    before = snapshot(run)
    capsys.readouterr()
    assert main([part.format(run=run, story=finished / "story.yaml") for part in command]) == 2
    err = one_line_error(capsys)
    assert f"{run / name} has changed since this tool wrote it (your own edit?)" in err, err
    assert "move it out of the folder" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("redraw", [["--panels", "3"], []], ids=["panels", "finish"])
def test_a_redraw_of_other_panels_keeps_an_edited_panel_and_its_record(finished, tmp_path, redraw):
    """--panels 3 (or finishing a run whose panel 3 is missing) does not touch panel 2: the user's edit there
    is no reason to refuse, and stays theirs on the new record."""
    run = edited_copy(finished, tmp_path, "panels/panel_002.png")
    Image.new("RGB", (64, 64), "red").save(run / "panels" / "panel_002.png")  # touched up: compose letters it
    edit = (run / "panels" / "panel_002.png").read_bytes()
    if not redraw:
        (run / "panels" / "panel_003.png").unlink()
    assert main(["generate", str(finished / "story.yaml"), "--out", str(run), *FAST, *redraw]) == 0
    assert (run / "panels" / "panel_002.png").read_bytes() == edit
    assert run / "panels" / "panel_003.png" in written_files(run)  # drawn again, on the record
    assert run / "panels" / "panel_002.png" in unrecorded_files(run)


def test_compose_leaves_an_edited_page_its_new_layout_no_longer_writes(finished, tmp_path):
    run = edited_copy(finished, tmp_path, "pages/page_02.png")
    assert main(["compose", str(run), "--layout", "grid", "--export", "pdf"]) == 0  # one page now
    assert (run / "pages" / "page_02.png").read_bytes() == EDIT and unrecorded_files(run) == [run / "pages/page_02.png"]


def test_compose_records_the_digest_of_each_page_and_export_it_writes(finished, tmp_path):
    import hashlib
    import json

    run = finished / "run"
    pages = json.loads((run / "pages" / "pages.json").read_text(encoding="utf-8"))
    for entry in pages["pages"]:
        assert entry["sha256"] == hashlib.sha256((run / "pages" / entry["file"]).read_bytes()).hexdigest()
    assert set(pages["exports_sha256"]) == {"comic.pdf", "comic.cbz", "panels.zip"}
    clip = json.loads((run / "video" / "01-02.json").read_text(encoding="utf-8"))
    assert set(clip["sha256"]) == {"01-02.mp4", "01-02.gif"}
    manifest = json.loads((run / "story.json").read_text(encoding="utf-8"))
    assert (
        manifest["identity_bank_sha256"] == hashlib.sha256((run / manifest["identity_bank"]).read_bytes()).hexdigest()
    )
    assert all(len(digest) == 64 for entry in manifest["panels"] for digest in entry.get("masks_sha256", {}).values())


def test_compose_and_animate_check_only_the_files_they_write(finished, tmp_path, monkeypatch):
    """Checking a file against its digest reads it whole: a bank of gigabytes is read by no command that
    does not write it (compose rereads its pages, animate its clip)."""
    import storydiffusion.run_records as run_records

    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    read, digest = [], run_records.file_digest
    monkeypatch.setattr(run_records, "file_digest", lambda path: read.append(path.name) or digest(path))
    assert main(["compose", str(run), "--layout", "four-panel"]) == 0
    assert main([part.format(run=run) for part in CLIP]) == 0
    assert read and not [name for name in read if name.startswith(("identity_bank", "panel_"))], read


@pytest.mark.parametrize("masks", [[], ["--save-masks"]], ids=["without", "with"])
def test_a_redrawn_panels_old_masks_go_with_its_old_drawing(finished, tmp_path, capsys, masks):
    """--panels 5 without --save-masks dropped panel 5's masks from the record but left their files, which the
    next --save-masks then refused as the user's; now they go (or are drawn again), never orphaned."""
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    others = {path.name: path.read_bytes() for path in (run / "masks").iterdir() if "panel_005" not in path.name}
    assert main(["generate", str(finished / "story.yaml"), "--out", str(run), *FAST, "--panels", "5", *masks]) == 0
    left = {path.name for path in (run / "masks").iterdir()}
    assert {name for name in left if "panel_005" in name} == (
        {"panel_005_mask_1.png", "panel_005_mask_2.png"} if masks else set()
    )
    assert {name: (run / "masks" / name).read_bytes() for name in others} == others
    assert unrecorded_files(run) == []
    assert (
        main(["generate", str(finished / "story.yaml"), "--out", str(run), *FAST, "--panels", "5", "--save-masks"]) == 0
    )


def _without(record: dict, path: str) -> dict:
    """``record`` with the key at ``path`` (``panels/0/sha256``) deleted."""
    *parents, last = path.split("/")
    place = record
    for part in parents:
        place = place[int(part)] if part.isdigit() else place[part]
    del place[last]
    return record


@pytest.mark.parametrize(
    "record, key, name, command, code",
    [
        (
            "story.json",
            "panels/1/sha256",
            "panels/panel_002.png",
            ["generate", "{story}", "--out", "{run}", *FAST, "--panels", "2"],
            2,
        ),
        (
            "story.json",
            "identity_bank_sha256",
            "identity_bank.safetensors",
            ["generate", "{story}", "--out", "{run}", *FAST, "--overwrite"],
            0,
        ),
        ("pages/pages.json", "exports_sha256/comic.pdf", "comic.pdf", ["compose", "{run}", "--layout", "grid"], 2),
        ("pages/pages.json", "pages/0/sha256", "pages/page_01.png", ["compose", "{run}", "--layout", "grid"], 2),
        ("video/01-02.json", "sha256", "video/01-02.gif", CLIP, 2),
    ],
    ids=["panel", "bank", "export", "page", "clip"],
)
def test_a_digest_deleted_from_a_record_makes_its_edited_file_the_users_not_the_tools(
    finished, tmp_path, capsys, record, key, name, command, code
):
    """The records declare a digest for every finished file: a key deleted by hand leaves the file unowned
    (it went by name, and the edit was replaced or deleted without a word)."""
    run = edited_copy(finished, tmp_path, name)
    if name.endswith(".png") and name.startswith("panels/"):
        Image.new("RGB", (64, 64), "red").save(run / name)
    (run / record).write_text(json.dumps(_without(json.loads((run / record).read_text("utf-8")), key)), "utf-8")
    edit = (run / name).read_bytes()
    capsys.readouterr()
    assert main([part.format(run=run, story=finished / "story.yaml") for part in command]) == code
    assert (run / name).read_bytes() == edit
    if code == 2:
        named = run / (name if record != "video/01-02.json" else "video/01-02.mp4")  # the clip's first file
        assert f"{named} is a file this tool has no record of writing" in one_line_error(capsys)


def test_a_run_recorded_without_digests_goes_by_name_and_is_digested_when_continued(finished, tmp_path):
    """A run of 0.1.0 kept no digests: its files are the tool's by name, and its kept panels are digested
    into the record of the run that continues it."""
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    manifest = json.loads((run / "story.json").read_text("utf-8"))
    for entry in manifest["panels"]:
        entry.pop("sha256"), entry.pop("masks_sha256", None)
    for key in ("digests", "identity_bank_sha256"):
        manifest.pop(key)
    (run / "story.json").write_text(json.dumps(manifest), "utf-8")
    assert run / "panels" / "panel_001.png" in written_files(run)
    assert main(["generate", str(finished / "story.yaml"), "--out", str(run), *FAST, "--panels", "2"]) == 0
    again = json.loads((run / "story.json").read_text("utf-8"))
    assert again["digests"] == "sha256" and all(len(entry["sha256"]) == 64 for entry in again["panels"])
    assert len(again["identity_bank_sha256"]) == 64 and unrecorded_files(run) == []


def test_a_clip_record_that_no_longer_parses_is_named_as_the_reason(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    info = run / "video" / "01-02.json"
    info.write_text(info.read_text("utf-8").replace('"fps": ', '"fps": NaN, "was": ', 1), "utf-8")
    before = snapshot(run)
    capsys.readouterr()
    assert main([part.format(run=run) for part in CLIP]) == 2
    err = one_line_error(capsys)
    assert f"{info} is a file this tool has no record of writing: it cannot be read" in err and "fps is NaN" in err
    assert snapshot(run) == before


def test_a_continued_run_does_not_adopt_a_file_its_record_disowns(finished, tmp_path):
    """A record declaring digests lists panel 2 without one (deleted by hand) and the user edits panel 2:
    --panels 3 keeps it, off the record's digests, never digesting the user's bytes as its own."""
    run = edited_copy(finished, tmp_path, "panels/panel_002.png")
    Image.new("RGB", (64, 64), "red").save(run / "panels" / "panel_002.png")
    manifest = json.loads((run / "story.json").read_text("utf-8"))
    del manifest["panels"][1]["sha256"]
    (run / "story.json").write_text(json.dumps(manifest), "utf-8")
    assert main(["generate", str(finished / "story.yaml"), "--out", str(run), *FAST, "--panels", "3"]) == 0
    again = json.loads((run / "story.json").read_text("utf-8"))
    assert "sha256" not in again["panels"][1] and run / "panels" / "panel_002.png" in unrecorded_files(run)


@pytest.mark.parametrize("key, value", [("exports", 5), ("pages", 7), ("exports_sha256", [1])])
def test_a_pages_record_with_values_of_the_wrong_kind_lists_nothing_and_breaks_nothing(finished, tmp_path, key, value):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    pages = json.loads((run / "pages" / "pages.json").read_text("utf-8"))
    (run / "pages" / "pages.json").write_text(json.dumps({**pages, key: value}), "utf-8")
    ours = {path.relative_to(run).as_posix() for path in written_files(run)}
    assert "panels/panel_001.png" in ours and "pages/pages.json" in ours


def test_the_masks_of_a_panel_a_stopped_run_was_drawing_go_when_it_is_drawn_again_without_masks(finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished / "run", run)
    manifest = json.loads((run / "story.json").read_text("utf-8"))
    manifest["panels"], manifest["drawing"], manifest["complete"] = manifest["panels"][:4], [5], False
    (run / "story.json").write_text(json.dumps(manifest), "utf-8")  # stopped while panel 5 was written
    assert main(["generate", str(finished / "story.yaml"), "--out", str(run), *FAST]) == 0
    assert not list((run / "masks").glob("panel_005_*")) and unrecorded_files(run) == []
