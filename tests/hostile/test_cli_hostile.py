"""Hostile command lines and files through the CLI: one ``error:`` line naming the flag or key path, exit 2,
before any model loads and before the output folder changes; never a traceback, never a hang.

Named pipes stand in for every file that is not a regular file; JSON's NaN/Infinity and lone surrogates
for values no key may hold; argparse's own mistakes must read like the CLI's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from file_helpers import one_line_error, snapshot, write_recorded_run
from test_values import edit, written_run

from storydiffusion.atomic import write_json
from storydiffusion.cli import main
from storydiffusion.errors import ImageInputError
from storydiffusion.images import read_image
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.settings import MAX_SEED, MAX_TEXT_CHARS
from storydiffusion.structured import MAX_DEPTH

STORY = "characters:\n  Bob: a tall man\npanels:\n  - '[Bob] walks'\n  - '[Bob] waves'\n"
GOOD = {"characters": {"Bob": "a tall man"}, "panels": ["[Bob] walks", "[Bob] waves"]}
TINY = ["--model", "tiny-sdxl", "--steps", "2", "--quiet"]


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Every case here is refused before a model loads: loading one fails the test."""
    import storydiffusion.motion.animate as animate

    def load(*args, **kwargs):
        raise AssertionError("a model was loaded for a bad input")

    monkeypatch.setattr(StoryPipeline, "from_pretrained", load)
    monkeypatch.setattr(animate, "load_transition_pipeline", load)


# Run beside the test: after a while, keeps opening the write end of every named pipe under a folder.
# It is a process of its own because a reader blocked in native code (safetensors) may hold the GIL.
UNBLOCKER = """
import os, stat, sys, time
time.sleep(20)
while True:
    for folder, _, names in os.walk(sys.argv[1]):
        for name in names:
            path = os.path.join(folder, name)
            try:
                if stat.S_ISFIFO(os.stat(path).st_mode):
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # only when a reader waits
                    print(path, flush=True)
            except OSError:
                pass
    time.sleep(0.5)
"""


@pytest.fixture
def fifo(tmp_path):
    """Makes named pipes. A reader that opens one blocks until a writer comes, so after a while a writer
    keeps coming to unblock it, and the test fails: a command that hangs on a pipe fails, never hangs."""
    unblocker = subprocess.Popen([sys.executable, "-c", UNBLOCKER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    yield os.mkfifo
    unblocker.kill()
    opened = unblocker.communicate()[0]
    assert not opened, f"a reader opened a named pipe: {opened}"


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "story.yaml"
    path.write_text(STORY, encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path):
    """A run folder as generate writes it (manifest and two real panels), and its snapshot."""
    folder = tmp_path / "run"
    written_run(folder)
    return folder, snapshot(folder)


def refused(argv: list[str], capsys, *words: str) -> str:
    assert main(argv) == 2
    err = one_line_error(capsys)
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


# ------------------------------------------------------------------------ files that are not files


def test_a_named_pipe_as_story_file_is_refused_naming_it(tmp_path, capsys, fifo):
    for name in ("fifo.yaml", "fifo.json"):
        fifo(tmp_path / name)
        out = tmp_path / "out"
        refused(["generate", str(tmp_path / name), "--out", str(out), *TINY], capsys, name, "not a regular file")
        assert not out.exists()


def test_a_named_pipe_as_bank_is_refused_naming_it(story, tmp_path, capsys, fifo):
    fifo(tmp_path / "fifo.safetensors")
    out = write_recorded_run(tmp_path / "out")
    before = snapshot(out)
    argv = ["generate", str(story), "--out", str(out), *TINY, "--bank", str(tmp_path / "fifo.safetensors")]
    refused(argv + ["--panels", "2"], capsys, "fifo.safetensors", "not a regular file")
    assert snapshot(out) == before


def test_a_named_pipe_as_layout_or_panel_is_refused(run, tmp_path, capsys, fifo):
    folder, _ = run
    fifo(tmp_path / "fifo.yaml")
    refused(["compose", str(folder), "--layout", str(tmp_path / "fifo.yaml")], capsys, "fifo.yaml", "regular file")
    panel = folder / "panels" / "panel_001.png"
    panel.unlink()
    fifo(panel)
    assert main(["compose", str(folder)]) == 0  # a panel that is not a file is a missing panel: left out
    assert "panel 1 is missing" in capsys.readouterr().err
    refused(["animate", str(folder), "--from", "1", "--to", "2", "--model", "tiny"], capsys, "panel 1 has no image")


@pytest.mark.parametrize("flag", ["--model", "--lora"])
def test_a_named_pipe_as_model_or_lora_file_is_refused_naming_the_flag(flag, story, tmp_path, capsys, fifo):
    fifo(tmp_path / "weights.safetensors")
    options = [flag, str(tmp_path / "weights.safetensors")] + (["--model", "tiny-sdxl"] if flag == "--lora" else [])
    argv = ["generate", str(story), "--out", str(tmp_path / "out"), "--quiet", *options]
    refused(argv, capsys, flag, "weights.safetensors", "not a regular file")
    assert not (tmp_path / "out").exists()


def test_a_lora_file_that_is_not_there_is_refused_before_the_model_loads(story, tmp_path, capsys, monkeypatch):
    import storydiffusion.cli_generate as cli_generate

    monkeypatch.setattr(cli_generate, "_load_pipeline", lambda *args: pytest.fail("the model was loaded"))
    argv = ["generate", str(story), "--out", str(tmp_path / "out"), "--model", "tiny-sdxl", "--quiet"]
    refused(
        [*argv, "--lora", str(tmp_path / "style.safetensors")], capsys, "--lora", "style.safetensors", "no such file"
    )
    assert not (tmp_path / "out").exists()


def test_the_image_gate_refuses_a_named_pipe_without_opening_it(tmp_path, fifo):
    fifo(tmp_path / "fifo.png")
    with pytest.raises(ImageInputError, match="not a plain file"):
        read_image(tmp_path / "fifo.png")


# ----------------------------------------------------------------- values that are not numbers or text


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"guidance": Infinity}', ["settings.guidance is Infinity", "not a number"]),
        ('{"guidance": -Infinity}', ["settings.guidance is -Infinity"]),
        ('{"guidance": NaN}', ["settings.guidance is NaN"]),
        ('{"guidance": 1e999}', ["settings.guidance is Infinity"]),
        ('{"sampling_rate": {"1": NaN}}', ["settings.sampling_rate.1 is NaN"]),
    ],
)
def test_non_finite_json_numbers_are_named_by_key_path(text, words, tmp_path, capsys):
    story = tmp_path / "story.json"
    story.write_text(json.dumps(GOOD)[:-1] + ', "settings": ' + text + "}", encoding="utf-8")
    out = write_recorded_run(tmp_path / "out")
    before = snapshot(out)
    refused(["generate", str(story), "--out", str(out), *TINY, "--overwrite"], capsys, "story.json", *words)
    assert snapshot(out) == before


CAST_JSON = '"characters": {"Bob": "a tall man"}'


@pytest.mark.parametrize(
    "text, where",
    [
        ('{%s, "panels": ["[Bob] x"], "title": "bad \\ud800"}', "title holds a lone surrogate \\ud800"),
        ('{%s, "panels": ["[Bob] walks \\udfff"]}', "panels[0] holds a lone surrogate \\udfff"),
        ('{%s, "panels": ["[Bob] x"], "\\ud800": 1}', "a key holds a lone surrogate"),
    ],
)
def test_lone_surrogates_in_a_json_story_are_named_by_key_path(text, where, tmp_path, capsys):
    story = tmp_path / "story.json"
    story.write_text(text % CAST_JSON)
    out = tmp_path / "out"
    refused(["generate", str(story), "--out", str(out), *TINY], capsys, where, "not text")
    assert not out.exists()


def test_a_lone_surrogate_in_a_run_manifest_stops_compose_and_animate(run, capsys):
    folder, _ = run
    text = (folder / "story.json").read_text().replace('"[Bob] walks"', '"[Bob] walks \\ud800"', 1)
    (folder / "story.json").write_text(text)
    before = snapshot(folder)
    refused(["compose", str(folder)], capsys, "story.json", "lone surrogate")
    refused(["animate", str(folder), "--from", "1", "--to", "2", "--model", "tiny"], capsys, "lone surrogate")
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "line, key",
    [
        ("margins: .nan", "margins"),
        ("gutter: .nan", "gutter"),
        ("title_height: .nan", "title_height"),
        ("margins: {top: .inf}", "margins.top"),
        ("border: {width: 1.0e+400}", "border.width"),
        ("margins: 100000000000000000000000000000000000000000000000000000000000mm", "margins"),
    ],
)
def test_non_finite_or_huge_template_lengths_are_named_by_key(line, key, run, tmp_path, capsys):
    folder, before = run
    layout = tmp_path / "mine.yaml"
    layout.write_text(f"page: {{size: a4, dpi: 150}}\npages: [{{rows: [{{cells: 2}}]}}]\n{line}\n")
    refused(["compose", str(folder), "--layout", str(layout)], capsys, f"{key}:", "mine.yaml")
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "text, words",
    [
        ("title: 5\n", ["title must be text", "(5)", "quotes"]),
        ("title: 3.5\n", ["title must be text", "(3.5)", "quotes"]),
        ("panels: [{prompt: 5}]\n", ["panel 1: prompt must be text", "(5)"]),
        ("panels: [{prompt: '[Bob] x', caption: 5}]\n", ["panel 1: caption must be text", "(5)"]),
        ("panels: [{prompt: '[Bob] x', dialogue: [{speaker: Bob, text: 5}]}]\n", ["dialogue 1: text must be text"]),
        ("settings: {scheduler: bogus}\n", ["settings.scheduler: unknown scheduler 'bogus'", "euler"]),
        ("style: nope\n", ["style: unknown style 'nope'", "comic"]),
    ],
)
def test_numbers_where_text_belongs_and_unknown_names_are_refused_by_key(text, words, tmp_path, capsys):
    story = tmp_path / "story.yaml"
    story.write_text("characters:\n  Bob: a tall man\n" + ("" if "panels" in text else "panels: ['[Bob] x']\n") + text)
    out = write_recorded_run(tmp_path / "out")
    before = snapshot(out)
    refused(["generate", str(story), "--out", str(out), *TINY, "--overwrite"], capsys, *words)
    assert snapshot(out) == before


# ------------------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--steps", "abc"], ["argument --steps: expected a whole number", "'abc'", "storydiffusion generate --help"]),
        # int() and float() also read other scripts' digits and underscores; a story file does not
        (["--steps", "\u0663"], ["argument --steps", "digits 0-9", "'\u0663'"]),
        (["--seed", "1_000"], ["argument --seed", "digits 0-9", "'1_000'"]),
        (["--guidance", "\u0667.5"], ["argument --guidance", "digits 0-9", "'\u0667.5'"]),
        (["--guidance", "7_5"], ["argument --guidance", "'7_5'"]),
        (["--guidance", "high"], ["argument --guidance", "'high'"]),
        (["--width", "64.0"], ["argument --width", "'64.0'"]),
        (["--sampling-rate", "1:0.5:2"], ["argument --sampling-rate", "'1:0.5:2'"]),
        (["--sampling-rate=-1:0.5"], ["argument --sampling-rate", "factors 0..1024", "'-1:0.5'"]),
        (["--sampling-rate", "1:nan"], ["--sampling-rate 1: must be between 0 and 1", "got nan"]),
        (["--panels", "a"], ["argument --panels", "'a'"]),
        (["--panels", "1,,2"], ["argument --panels", "'1,,2'"]),
        (["--panels", "\u0663"], ["argument --panels", "such as 2,5"]),
        (["--mode", "sideways"], ["argument --mode", "'sideways'", "identity"]),
        (["--seed", "-inf"], ["argument --seed: expected one argument", "--seed="]),
        (["--bogus"], ["unrecognized arguments: --bogus"]),
    ],
)
def test_argparse_errors_are_one_line_naming_the_flag(argv, words, story, tmp_path, capsys):
    refused(["generate", str(story), "--out", str(tmp_path / "out"), *argv], capsys, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["animate", "run", "--from", "1", "--to", "2", "--fps", "fast"], ["argument --fps", "'fast'"]),
        (["animate", "run", "--from", "1", "--to", "2", "--guidance", "-inf"], ["--guidance=", "'-'"]),
        (["compose"], ["required: run_dir", "storydiffusion compose --help"]),
        ([], ["required: command", "storydiffusion --help"]),
        (["paint"], ["invalid choice: 'paint'"]),
    ],
)
def test_argparse_errors_of_every_subcommand_are_one_line(argv, words, capsys):
    refused(argv, capsys, *words)


def test_help_still_prints_the_usage_and_exits_0(capsys):
    assert main(["generate", "--help"]) == 0
    assert "--sampling-rate" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-5", "1000000"])
def test_compose_dpi_out_of_range_names_the_flag(value, run, capsys):
    folder, before = run
    refused(["compose", str(folder), "--dpi", value], capsys, "--dpi must be 10..1200", f"got {value}")
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "options, words",
    [
        (["--scheduler", "bogus"], ["--scheduler: unknown scheduler 'bogus'", "euler-a"]),
        (["--style", "nope"], ["--style: unknown style 'nope'", "manga"]),
        (["--negative-prompt", "x" * (MAX_TEXT_CHARS + 1)], ["--negative-prompt is 20,001 characters"]),
        (["--negative-prompt", "bad \udcff"], ["--negative-prompt", "not text"]),
    ],
)
def test_names_and_texts_of_generate_are_checked_before_the_folder_is_prepared(options, words, story, tmp_path, capsys):
    out = write_recorded_run(tmp_path / "out")
    before = snapshot(out)
    refused(["generate", str(story), "--out", str(out), *TINY, "--overwrite", *options], capsys, *words)
    assert snapshot(out) == before


def test_an_empty_model_is_refused_not_taken_for_the_default(story, tmp_path, capsys):
    refused(["generate", str(story), "--out", str(tmp_path / "out"), "--model", ""], capsys, "--model is empty")
    refused(["animate", str(tmp_path), "--from", "1", "--to", "2", "--model", " "], capsys, "--model is empty")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------- animate


def predictor_folder(tmp_path, config: str | None = None):
    folder = tmp_path / "predictor"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    if config is not None:
        (folder / "config.json").write_text(config)
    return folder


@pytest.mark.parametrize(
    "options, words",
    [
        (["--seed", "-1"], ["--seed must be 0..9223372036854775807", "got -1"]),
        (["--seed", str(2**64)], ["--seed must be", str(2**64)]),
        (["--seed", str(MAX_SEED + 1)], ["--seed must be"]),
        (["--prompt", "x" * 100_000], ["--prompt is 100,000 characters", f"at most {MAX_TEXT_CHARS:,}"]),
        (["--negative-prompt", "x" * 100_000], ["--negative-prompt is 100,000 characters"]),
    ],
)
def test_animate_values_are_checked_by_flag_before_any_model(options, words, run, capsys):
    folder, before = run
    refused(["animate", str(folder), "--from", "1", "--to", "2", "--model", "tiny", *options], capsys, *words)
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    "config, words",
    [
        ('{"hidden": ' + "[" * 10_000, [f"nested more than {MAX_DEPTH}"]),
        ('{"hidden": NaN}', ["hidden is NaN", "not a number"]),
        ('{"hidden": "wide"}', ["hidden must be a whole number", "'wide'"]),
        ('{"heads": 0}', ["heads must be a whole number", "got 0"]),
        ('{"hidden": 64, "heads": 5}', ["divisible by heads"]),
        ("[1, 2]", ["must hold a mapping"]),
        (None, ["config.json does not exist"]),
    ],
)
def test_a_broken_predictor_config_is_refused_before_any_model(config, words, run, tmp_path, capsys):
    folder, before = run
    predictor = predictor_folder(tmp_path, config)
    argv = ["animate", str(folder), "--from", "1", "--to", "2", "--model", "tiny", "--predictor", str(predictor)]
    refused(argv, capsys, "--predictor", *words)
    assert snapshot(folder) == before


def test_a_predictor_that_is_missing_a_file_or_a_pipe_is_refused(run, tmp_path, capsys, fifo):
    folder, _ = run
    base = ["animate", str(folder), "--from", "1", "--to", "2", "--model", "tiny", "--predictor"]
    refused(base + [str(tmp_path / "nowhere")], capsys, "--predictor", "does not exist")
    (tmp_path / "file").write_text("x")
    refused(base + [str(tmp_path / "file")], capsys, "--predictor", "is not a folder")
    predictor = tmp_path / "pipe"
    predictor.mkdir()
    (predictor / "model.safetensors").write_bytes(b"weights")
    fifo(predictor / "config.json")
    refused(base + [str(predictor)], capsys, "config.json", "not a regular file")


# --------------------------------------------------------------------------- hand-edited manifests


@pytest.mark.parametrize("model", ["tiny-sdxl", [1], {"name": ""}])
def test_a_manifest_model_that_is_not_a_name_mapping_is_refused(model, story, tmp_path, capsys):
    run = tmp_path / "run"
    write_json(run / "story.json", {**edit(written_run(run), "model", model), "complete": False})
    before = snapshot(run)
    refused(
        ["generate", str(run / "story.json"), "--out", str(tmp_path / "again")], capsys, "story.json, line", ": model"
    )
    refused(["generate", str(story), "--out", str(run), *TINY, "--panels", "2"], capsys, "story.json, line", ": model")
    assert snapshot(run) == before
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["generate", "s.yaml", "--out", ""], "argument --out: is empty: name a folder"),
        (["compose", " "], "argument run_dir: is empty"),
        (["evaluate", ""], "argument run: is empty"),
        (["generate", "s.yaml", "--out", "o", "--sampling-rate", "1:0.5,1:0.3"], "argument --sampling-rate: expected"),
        (["generate", "s.yaml", "--out", "o", "--device", "cpu:5"], "the CPU has no number"),
        (["generate", "s.yaml", "--out", "o", "--bank", ""], "argument --bank: is empty: give a value, or leave"),
        (["generate", "s.yaml", "--out", "o", "--device="], "argument --device: is empty"),
        (["generate", "s.yaml", "--out", "o", "--dtype", " "], "argument --dtype: is empty"),
        (["evaluate", "o", "--encoder", ""], "argument --encoder: is empty"),
        (["animate", "o", "--from", "1", "--to", "2", "--predictor", ""], "argument --predictor: is empty"),
    ],
)
def test_empty_folders_repeated_factors_and_numbered_cpus_are_refused(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("characters: {Bob: a man}\npanels: ['[Bob] walks']\n", encoding="utf-8")
    before = sorted(path.name for path in tmp_path.iterdir())
    assert main(argv) == 2
    assert expected in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_an_empty_json_story_is_called_empty(tmp_path, capsys):
    (tmp_path / "s.json").write_text("  \n", encoding="utf-8")
    assert main(["generate", str(tmp_path / "s.json"), "--out", str(tmp_path / "o")]) == 2
    assert "s.json is empty: a story file needs at least 'characters' and 'panels'" in capsys.readouterr().err
