"""Interrupted runs leave a valid, resumable folder; redrawing some panels in place keeps all the rest."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import storydiffusion.cli_generate as cli_generate
import storydiffusion.cli_output as cli_output
from storydiffusion.cli import main
from storydiffusion.cli_checks import EXIT_INTERRUPTED

FAST = ["--model", "tiny-sdxl", "--steps", "2", "--quiet", "--device", "cpu"]
STORY = """\
title: Two walkers
characters:
  Bob: a man in a red coat
  Ann: a woman with a blue scarf
panels:
  - "[Bob] walks"
  - "[Ann] reads"
  - "[Bob] sits on a bench"
  - "[Ann] waves"
  - "[Bob] and [Ann] share an umbrella"
settings: {id_images: 1, window: 2, first_consistent_step: 0}
"""


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_text(STORY, encoding="utf-8")
    return path


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def panels(folder):
    return {name: data for name, data in files(folder).items() if name.startswith("panels/")}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def manifest(folder):
    return json.loads((folder / "story.json").read_text(encoding="utf-8"))


def interrupt_after(monkeypatch, finished: int) -> None:
    """Ctrl+C as soon as ``finished`` panels are done (the progress bar sees every step)."""
    original = cli_output.StepBar.update

    def update(self, progress):
        if progress.panels_done >= finished:
            raise KeyboardInterrupt
        original(self, progress)

    monkeypatch.setattr(cli_output.StepBar, "update", update)


@pytest.mark.slow
def test_an_interrupted_run_is_valid_and_the_same_command_finishes_it_with_identical_pixels(
    story, tmp_path, monkeypatch, capsys
):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["generate", str(story), "--out", str(full), *FAST]) == 0

    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        assert main(["generate", str(story), "--out", str(part), *FAST]) == EXIT_INTERRUPTED
    assert "run the same command again" in capsys.readouterr().err
    record = manifest(part)
    listed = {entry["file"] for entry in record["panels"]}
    assert record["complete"] is False and 2 <= len(listed) < 5
    assert listed == set(panels(part))  # every listed panel exists and every panel is listed
    assert main(["compose", str(part)]) == 0  # the finished panels compose
    before = files(part)

    assert main(["generate", str(story), "--out", str(part), *FAST]) == 0  # no --overwrite needed
    assert manifest(part)["complete"] is True and len(manifest(part)["panels"]) == 5
    assert panels(part) == panels(full)
    assert all(files(part)[name] == data for name, data in before.items() if name.startswith("panels/"))


def test_an_unfinished_run_of_another_story_is_refused_and_left_as_it_is(story, tmp_path, monkeypatch, capsys):
    part = tmp_path / "part"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        main(["generate", str(story), "--out", str(part), *FAST])
    before = files(part)
    other = tmp_path / "other.yaml"
    other.write_text(STORY.replace("walks", "runs"), encoding="utf-8")
    capsys.readouterr()
    assert main(["generate", str(other), "--out", str(part), *FAST]) == 2
    err = capsys.readouterr().err
    assert "unfinished run" in err and "--overwrite" in err and "Traceback" not in err
    assert files(part) == before


@pytest.mark.slow
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_redrawing_some_panels_in_place_keeps_every_other_panel_the_bank_and_their_records(story, tmp_path, overwrite):
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--save-bank"]) == 0
    (out / "notes.txt").write_text("mine")
    before, records = files(out), {e["panel"]: e for e in manifest(out)["panels"]}
    edited = tmp_path / "edited.yaml"
    edited.write_text(STORY.replace("[Ann] reads", "[Ann] reads a map"), encoding="utf-8")
    bank = str(out / "identity_bank.safetensors")
    assert main(["generate", str(edited), "--out", str(out), *FAST, "--panels", "2", "--bank", bank, *overwrite]) == 0
    after = files(out)
    assert after["panels/panel_002.png"] != before["panels/panel_002.png"]
    unchanged = [name for name in before if name not in ("panels/panel_002.png", "story.json")]
    assert all(after[name] == before[name] for name in unchanged)  # other panels, the bank, the user's file
    new_records = {e["panel"]: e for e in manifest(out)["panels"]}
    assert {k: v for k, v in new_records.items() if k != 2} == {k: v for k, v in records.items() if k != 2}
    assert "reads a map" in new_records[2]["prompt"] and manifest(out)["identity_bank"] == "identity_bank.safetensors"


@pytest.mark.slow
def test_sigterm_stops_a_run_like_ctrl_c_and_leaves_a_resumable_folder(story, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "storydiffusion", "generate", str(story), "--out", str(out), *FAST]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "panels" / "panel_001.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err  # 128 + SIGTERM, as a shell reports a kill
    record = manifest(out)
    assert {entry["file"] for entry in record["panels"]} == set(panels(out))
    if len(record["panels"]) < 5:
        assert record["complete"] is False
    assert main(["generate", str(story), "--out", str(out), *FAST]) == 0
    assert manifest(out)["complete"] is True and len(panels(out)) == 5


@pytest.mark.slow
def test_the_same_command_draws_again_only_the_panels_deleted_from_a_finished_run(story, tmp_path, capsys):
    out = tmp_path / "out"
    command = ["generate", str(story), "--out", str(out), *FAST]
    assert main(command) == 0
    finished = files(out)
    capsys.readouterr()
    assert main(command) == 2  # nothing is missing: it says so and touches nothing
    err = capsys.readouterr().err
    assert "holds a finished run (5 panels, none missing)" in err and "--panels" in err and "--overwrite" in err
    assert files(out) == finished
    (out / "panels" / "panel_003.png").unlink()
    (out / "notes.txt").write_bytes(b"mine")
    assert main(command) == 0
    after = files(out)
    assert after.pop("notes.txt") == b"mine" and after.pop("story.json")
    redrawn, first = (after.pop("panels/panel_003.png"), finished.pop("panels/panel_003.png"))
    assert after == {name: data for name, data in finished.items() if name != "story.json"}  # the rest untouched
    # Drawn alone, not in its first batch of two: the same seed and bank, so the same picture up to the
    # last bit of a few values (a batch of another size sums in another order).
    difference = np.abs(pixels(redrawn) - pixels(first))
    assert difference.max() <= 1 and difference.mean() < 0.01
    assert manifest(out)["complete"] is True and len(manifest(out)["panels"]) == 5


@pytest.mark.slow
def test_the_command_animate_suggests_for_a_missing_panel_redraws_only_that_panel(story, tmp_path, capsys):
    import shlex

    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST]) == 0
    (out / "panels" / "panel_003.png").unlink()
    before = files(out)
    capsys.readouterr()
    assert main(["animate", str(out), "--from", "3", "--to", "4", "--model", "tiny"]) == 2
    err = capsys.readouterr().err
    suggested = shlex.split(err.split("`")[1])
    assert suggested[:2] == ["storydiffusion", "generate"]
    assert main([*suggested[1:], *FAST]) == 0
    after = files(out)
    assert "panels/panel_003.png" in after
    assert all(after[name] == data for name, data in before.items() if name != "story.json")


@pytest.mark.slow
def test_redrawing_one_panel_of_an_unfinished_run_does_not_call_it_complete(story, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        main(["generate", str(story), "--out", str(out), *FAST])
    finished = {entry["panel"] for entry in manifest(out)["panels"]}
    assert main(["generate", str(story), "--out", str(out), *FAST, "--panels", str(min(finished))]) == 0
    assert manifest(out)["complete"] is False and {e["panel"] for e in manifest(out)["panels"]} == finished


def test_ctrl_c_while_the_model_loads_says_nothing_was_written(story, tmp_path, monkeypatch, capsys):
    import storydiffusion.cli_generate as cli_generate

    def loading(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_generate, "_load_pipeline", loading)
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "stopped before any panel was drawn, and nothing was written" in err and "output folder" not in err
    assert not out.exists()


def test_a_run_with_other_settings_is_refused_naming_the_setting_and_both_values(story, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--panels", "1"]) == 0
    finished = files(out)
    capsys.readouterr()
    changed = [*FAST, "--panels", "1", "--guidance", "7.5"]
    assert main(["generate", str(story), "--out", str(out), *changed]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run with other settings (guidance" in err and "there, 7.5 now)" in err, err
    assert files(out) == finished


@pytest.mark.parametrize("again", [["--overwrite"], ["--panels", "2"]])
def test_a_panel_the_user_replaced_with_their_own_picture_is_theirs(again, story, tmp_path, capsys):
    """Its record keeps the SHA-256 of the file as written: the same name with other bytes is the user's edit,
    which no later run deletes or replaces, while compose still letters it into the pages."""
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST]) == 0
    assert all(len(entry["sha256"]) == 64 for entry in manifest(out)["panels"])
    Image.new("RGB", (64, 64), "red").save(out / "panels" / "panel_002.png")  # touched up by hand
    before = files(out)
    capsys.readouterr()
    assert main(["generate", str(story), "--out", str(out), *FAST, *again]) == 2
    err = capsys.readouterr().err
    assert "panel_002.png has changed since this tool wrote it" in err and "move it out of the folder" in err, err
    assert files(out) == before
    assert main(["compose", str(out), "--layout", "grid"]) == 0  # the edit is typeset, as it is
    assert files(out)["panels/panel_002.png"] == before["panels/panel_002.png"]


def test_compose_of_a_stopped_redraw_says_which_panels_may_still_be_the_earlier_drawing(
    story, tmp_path, monkeypatch, capsys
):
    """--panels 2,3 stopped after panel 2: panel 3's file is the drawing before, its caption the story's new
    one. Compose lays it out (the page keeps its shape) and says so, with how to finish."""
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST]) == 0
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        assert main(["generate", str(story), "--out", str(out), *FAST, "--panels", "2,3"]) == EXIT_INTERRUPTED
    assert manifest(out)["drawing"] == [3]
    capsys.readouterr()
    assert main(["compose", str(out), "--layout", "grid"]) == 0
    captured = capsys.readouterr()
    words = "panel 3 was being drawn when the run stopped, so its file may still be the earlier drawing"
    assert words in captured.out + captured.err and "run the same generate command again" in captured.out + captured.err
    assert main(["generate", str(story), "--out", str(out), *FAST, "--panels", "2,3"]) == 0
    capsys.readouterr()
    assert main(["compose", str(out), "--layout", "grid"]) == 0
    assert "being drawn" not in "".join(capsys.readouterr())


def test_a_generate_stopped_between_its_last_panel_and_its_pages_is_finished_by_the_same_command(
    story, tmp_path, monkeypatch, capsys
):
    """Every panel drawn, the manifest complete, no pages yet: the same command makes the pages and exports
    (without the model), where it said "holds a finished run"; once they are there, it says that again."""
    import storydiffusion.layout.compose as compose

    out = tmp_path / "out"
    # The default first_consistent_step (2), which a two-step run records as 1, half its steps: a setting
    # left as it is stays this command's, as the run resolved it.
    story.write_text(STORY.replace(", first_consistent_step: 0", ""), encoding="utf-8")
    command = ["generate", str(story), "--out", str(out), *FAST, "--layout", "grid", "--export", "pdf"]
    with monkeypatch.context() as patch:
        patch.setattr(compose, "compose_run", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
        assert main(command) == EXIT_INTERRUPTED
    assert manifest(out)["complete"] is True and not (out / "pages").exists()
    assert "make the pages, with --layout" in capsys.readouterr().err
    assert main([*command, "--steps", "3"]) == 2  # other settings: not this command's run to compose
    assert "holds a finished run" in capsys.readouterr().err
    Image.new("RGB", (64, 64), "red").save(out / "panels" / "panel_002.png")  # touched up: composing keeps it
    drawn = panels(out)
    with monkeypatch.context() as patch:
        patch.setattr(cli_generate, "_load_pipeline", lambda *args: (_ for _ in ()).throw(AssertionError("loaded")))
        assert main(command) == 0
    assert "holds every panel of this story already: making its pages" in capsys.readouterr().out
    assert (out / "pages" / "page_01.png").is_file() and (out / "comic.pdf").is_file() and panels(out) == drawn
    assert main(command) == 2 and "holds a finished run" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(STORY.replace("walks", "runs"), encoding="utf-8")
    (out / "comic.pdf").unlink()
    assert main(["generate", str(other), *command[2:]]) == 2  # another story: not this run's pages to make
