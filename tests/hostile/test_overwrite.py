"""--overwrite checks everything first and replaces the earlier run only once the new run is finished:
a failure or an interruption leaves the earlier run byte-identical and readable, and the same command
continues the staged run and then swaps it in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from file_helpers import one_line_error, snapshot, write_recorded_run
from test_interrupted_runs import FAST, STORY, files, interrupt_after, manifest, panels

from storydiffusion.cli import main
from storydiffusion.cli_checks import EXIT_INTERRUPTED
from storydiffusion.errors import ModelOutOfMemory
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.rundir import STAGING_DIR, RunWriter

OTHER = STORY.replace("[Bob] walks", "[Bob] runs")  # another drawing: only --overwrite may replace the run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished, composed run of STORY with its bank, and a clean run of OTHER to compare pixels with."""
    folder = tmp_path_factory.mktemp("runs")
    (folder / "story.yaml").write_text(STORY, encoding="utf-8")
    (folder / "other.yaml").write_text(OTHER, encoding="utf-8")
    old = ["generate", str(folder / "story.yaml"), "--out", str(folder / "old"), *FAST, "--save-bank"]
    assert main([*old, "--layout", "classic"]) == 0
    assert main(["generate", str(folder / "other.yaml"), "--out", str(folder / "clean"), *FAST]) == 0
    return folder


@pytest.fixture
def earlier(runs, tmp_path):
    """A copy of the finished run with a file of the user's: (its folder, its bytes, the OTHER story)."""
    out = tmp_path / "out"
    shutil.copytree(runs / "old", out)
    (out / "notes.txt").write_text("the user's own notes")
    return out, files(out), runs / "other.yaml"


def fail_after_one_panel(monkeypatch, error: BaseException) -> None:
    original = StoryPipeline.generate

    def generate(self, *args, on_panel=None, **kwargs):
        def panel_then_fail(panel):
            on_panel(panel)
            raise error

        return original(self, *args, on_panel=panel_then_fail, **kwargs)

    monkeypatch.setattr(StoryPipeline, "generate", generate)


@pytest.mark.slow
@pytest.mark.parametrize(
    "error, code",
    [(RuntimeError("a crash"), None), (ModelOutOfMemory("CUDA out of memory"), 2), (KeyboardInterrupt(), 130)],
    ids=["crash", "out-of-memory", "ctrl-c"],
)
def test_a_failing_overwrite_leaves_the_earlier_run_byte_identical_and_composable(
    earlier, monkeypatch, capsys, error, code
):
    out, before, other = earlier
    command = ["generate", str(other), "--out", str(out), *FAST, "--overwrite"]
    with monkeypatch.context() as patch:
        fail_after_one_panel(patch, error)
        if code is None:
            with pytest.raises(RuntimeError, match="a crash"):
                main(command)
        else:
            assert main(command) == code
    err = capsys.readouterr().err
    assert "earlier run, unchanged" in err and str(out / STAGING_DIR) in err and "Traceback" not in err
    assert {name: data for name, data in files(out).items() if not name.startswith(STAGING_DIR)} == before
    staged = manifest(out / STAGING_DIR)
    assert staged["complete"] is False and len(staged["panels"]) == 1
    assert main(["compose", str(out)]) == 0  # the earlier run is still a run


@pytest.mark.slow
def test_the_same_command_continues_the_staged_run_then_swaps_it_in_with_a_clean_runs_pixels(
    earlier, runs, monkeypatch, capsys
):
    out, before, other = earlier
    command = ["generate", str(other), "--out", str(out), *FAST, "--overwrite"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        assert main(command) == EXIT_INTERRUPTED
    assert "run the same command again" in capsys.readouterr().err
    assert {name: data for name, data in files(out).items() if not name.startswith(STAGING_DIR)} == before
    drawn = []
    with monkeypatch.context() as patch:
        original = RunWriter.panel
        patch.setattr(RunWriter, "panel", lambda self, panel: drawn.append(panel.index) or original(self, panel))
        assert main(command) == 0
    assert 0 < len(drawn) < 5  # continued, not started again
    assert panels(out) == panels(runs / "clean") and not (out / STAGING_DIR).exists()
    assert manifest(out)["complete"] is True and "[Bob] runs" in manifest(out)["story"]["panels"][0]["prompt"]
    after = files(out)
    assert after["notes.txt"] == before["notes.txt"]
    assert not any(name.startswith("pages/") or name == "identity_bank.safetensors" for name in after)


@pytest.mark.slow
def test_sigterm_during_an_overwrite_keeps_the_earlier_run(earlier):
    out, before, other = earlier
    command = [sys.executable, "-m", "storydiffusion", "generate", str(other), "--out", str(out), *FAST, "--overwrite"]
    process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / STAGING_DIR / "panels" / "panel_001.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err  # 128 + SIGTERM
    assert "earlier run, unchanged" in err
    assert {name: data for name, data in files(out).items() if not name.startswith(STAGING_DIR)} == before


@pytest.fixture
def recorded_run(tmp_path):
    """An earlier run as its records show it (no model needed), a file of the user's, and its bytes."""
    out = write_recorded_run(tmp_path / "out")
    return out, snapshot(out)


def never_generate(monkeypatch) -> None:
    def generate(*args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(StoryPipeline, "generate", generate)


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--model", "no-such-model"], "no-such-model"),
        (["--bank", "{junk}"], "could not read identity bank"),
        (["--bank", "{missing}"], "could not read identity bank"),
        (["--height", "100"], "multiple of"),
    ],
    ids=["model", "junk-bank", "missing-bank", "size"],
)
def test_an_overwrite_refused_for_its_model_bank_or_settings_touches_nothing(
    recorded_run, tmp_path, monkeypatch, capsys, options, expected
):
    out, before = recorded_run
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    (tmp_path / "junk.safetensors").write_bytes(b"not a bank")
    names = {"junk": tmp_path / "junk.safetensors", "missing": tmp_path / "missing.safetensors"}
    options = [option.format(**names) for option in options]
    never_generate(monkeypatch)
    base = [a for a in FAST if a not in ("--model", "tiny-sdxl")] if "--model" in options else FAST
    assert main(["generate", str(story), "--out", str(out), *base, *options, "--overwrite"]) == 2
    assert expected in one_line_error(capsys)
    assert snapshot(out) == before and not (out / STAGING_DIR).exists()


@pytest.mark.parametrize(
    "name", ["keep.txt", "panels/panel_099.png", "panels/.keep.tmp.png", "notes/keep.txt"], ids=lambda n: n
)
def test_an_overwrite_refuses_a_staging_folder_holding_the_users_files_and_touches_nothing(
    recorded_run, tmp_path, monkeypatch, capsys, name
):
    out, _ = recorded_run
    staging = out / STAGING_DIR
    (staging / name).parent.mkdir(parents=True)
    (staging / name).write_bytes(b"the user's, not a staged run's")
    before = snapshot(out)
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    never_generate(monkeypatch)
    assert main(["generate", str(story), "--out", str(out), *FAST, "--overwrite", "--seed", "4"]) == 2
    err = one_line_error(capsys)
    assert f"{staging} holds {name}, which this tool has no record of writing" in err
    assert snapshot(out) == before


@pytest.mark.slow
def test_an_overwrite_keeps_the_users_file_shaped_like_a_panel_the_run_does_not_draw(earlier, tmp_path, capsys):
    out, before, _ = earlier
    (out / "panels" / "panel_099.png").write_bytes(b"the user's, not a panel of this run")
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    assert main(["generate", str(story), "--out", str(out), *FAST, "--overwrite", "--seed", "4"]) == 0
    after = files(out)
    assert after["panels/panel_099.png"] == b"the user's, not a panel of this run"
    assert after["notes.txt"] == before["notes.txt"] and manifest(out)["settings"]["seed"] == 4
    assert after["panels/panel_001.png"] != before["panels/panel_001.png"] and not (out / STAGING_DIR).exists()
