"""Output paths that cannot work are refused before any model loads, naming the path; nothing is lost."""

from __future__ import annotations

import os

import pytest

from storydiffusion.cli import main

STORY = "characters:\n  Bob: a tall man\npanels:\n  - '[Bob] walks'\n"
FAST = ["--model", "tiny-sdxl", "--steps", "2", "--quiet"]


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_text(STORY)
    return path


def run(story, out, capsys, *extra) -> str:
    assert main(["generate", str(story), "--out", str(out), *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_a_file_in_the_way_of_the_folder_is_named(story, tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    assert f"{blocker} is a file, not a folder" in run(story, blocker / "out", capsys)
    assert f"{blocker} is a file, not a folder" in run(story, blocker, capsys, "--overwrite")
    assert blocker.read_text() == "mine"


@pytest.mark.skipif(not os.path.isdir("/proc/self") or not os.path.exists("/dev/null"), reason="needs Linux")
def test_system_folders_and_devices_are_refused_for_what_they_are(story, capsys):
    """/proc answers "No such file or directory" for a folder it will not make: that is not the reason."""
    err = run(story, "/proc/storydiffusion-out", capsys)
    assert "cannot write in /proc (" in err and "No such file" not in err  # root: no new folders; others: permission
    assert "/dev/null is a device or other special file, not a folder" in run(story, "/dev/null/out", capsys)


def test_a_link_to_a_folder_that_does_not_exist_is_named_as_a_link(story, tmp_path, capsys):
    """It was called "out/panels is a file, not a folder": the link, not a file, is in the way."""
    os.symlink(tmp_path / "gone", tmp_path / "out")
    for out in (tmp_path / "out", tmp_path / "out" / "sub"):
        assert f"{tmp_path / 'out'} is a link to {tmp_path / 'gone'}, which does not exist: make that" in run(
            story, out, capsys
        )
    assert os.readlink(tmp_path / "out") == str(tmp_path / "gone") and not (tmp_path / "gone").exists()


def test_a_file_named_panels_inside_the_folder_is_named(story, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "panels").write_text("not a folder")
    assert "panels is a file, not a folder" in run(story, out, capsys, "--overwrite")
    assert (out / "panels").read_text() == "not a folder"


def test_a_name_too_long_for_the_file_system_is_refused(story, tmp_path, capsys):
    err = run(story, tmp_path / ("x" * 300), capsys)
    assert "300 bytes" in err and "shorter --out" in err
    assert list(tmp_path.iterdir()) == [story]


@pytest.mark.parametrize("flag, value", [("--guidance", "nan"), ("--guidance", "inf"), ("--lora-scale", "nan")])
def test_non_finite_numbers_on_the_command_line_are_refused(story, tmp_path, capsys, flag, value):
    err = run(story, tmp_path / "out", capsys, flag, value)
    assert (flag in err or flag.lstrip("-").replace("-", "_") in err) and f"got {value}" in err
    assert not (tmp_path / "out").exists()


def test_out_of_memory_while_reading_input_is_not_blamed_on_the_model(story, tmp_path, capsys, monkeypatch):
    import storydiffusion.cli_generate as cli

    def exhausted(path):
        raise MemoryError

    monkeypatch.setattr(cli, "_load_story_and_model", exhausted)
    err = run(story, tmp_path / "out", capsys)
    assert "reading the input" in err and "--height" not in err


@pytest.mark.parametrize(
    "value, expected",
    [("9", "--panels 9 does not exist"), ("0", "--panels 0 does not exist"), (",", "panel numbers such as 2,5")],
)
def test_panel_numbers_outside_the_story_are_refused_before_the_folder_changes(
    story, tmp_path, capsys, value, expected
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "story.json").write_text("{}")
    assert expected in run(story, out, capsys, "--panels", value, "--overwrite")
    assert (out / "story.json").read_text() == "{}"
