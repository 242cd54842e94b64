"""The command line: files written, manifest contents, exit codes and messages for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from storydiffusion.atomic import TEMPORARY_MARK
from storydiffusion.cli import main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--model", "tiny-sdxl", "--steps", "2", "--quiet", "--device", "cpu"]


def write_story(path: Path, panels: list[str], **extra) -> Path:
    lines = ["title: Test", "characters:", "  Bob: a man in a red coat", "panels:"]
    lines += [f"  - {json.dumps(panel)}" for panel in panels]
    lines += [f"{key}: {json.dumps(value)}" for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_generate_writes_panels_and_a_reproducible_manifest(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(ROOT / "examples" / "lighthouse.yaml"), "--out", str(out), *FAST, "--save-bank"]) == 0
    panels = sorted((out / "panels").glob("*.png"))
    manifest = json.loads((out / "story.json").read_text(encoding="utf-8"))
    assert [p.name for p in panels] == [f"panel_{i:03d}.png" for i in range(1, len(panels) + 1)]
    assert len(panels) == len(manifest["story"]["panels"]) == len(manifest["panels"])
    assert Image.open(panels[0]).size == (64, 64)
    assert manifest["model"]["name"] == "tiny-sdxl"
    assert manifest["settings"]["steps"] == 2
    assert all(isinstance(p["seed"], int) for p in manifest["panels"])
    assert {"torch", "diffusers", "transformers", "storydiffusion"} <= set(manifest["versions"])
    assert manifest["identity_bank"] == "identity_bank.safetensors" and (out / "identity_bank.safetensors").exists()
    assert not [p for p in out.rglob("*") if TEMPORARY_MARK in p.name]

    # The manifest alone reproduces the run byte for byte.
    again = tmp_path / "again"
    assert main(["generate", str(out / "story.json"), "--out", str(again), "--quiet", "--device", "cpu"]) == 0
    for panel in panels:
        assert (again / "panels" / panel.name).read_bytes() == panel.read_bytes()


def test_save_masks_writes_each_characters_mask_beside_the_panels_and_overwrite_keeps_the_users_files(tmp_path):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks", "[Bob] eats", "[NC] a street"])
    out = tmp_path / "out"
    args = ["generate", str(story), "--out", str(out), *FAST, "--consistency", "subject", "--save-masks"]
    assert main(args) == 0
    manifest = json.loads((out / "story.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["consistency"] == "subject"
    assert [entry.get("masks") for entry in manifest["panels"]] == [
        {"Bob": "masks/panel_001_mask_1.png"},
        {"Bob": "masks/panel_002_mask_1.png"},
        None,
    ]
    mask = Image.open(out / "masks" / "panel_001_mask_1.png")
    assert mask.mode == "L" and mask.size == (64, 64)
    (out / "masks" / "mine.png").write_bytes(b"the user's")
    assert main([*args[:-1], "--overwrite"]) == 0  # without --save-masks: the old masks go, the user's file stays
    assert sorted(path.name for path in (out / "masks").iterdir()) == ["mine.png"]


def test_regenerate_one_panel_from_a_saved_bank(tmp_path):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks", "[Bob] eats", "[Bob] sits", "[Bob] sleeps"])
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--id-images", "2", "--save-bank"]) == 0
    redo = tmp_path / "redo"
    code = main(
        [
            "generate",
            str(story),
            "--out",
            str(redo),
            *FAST,
            "--id-images",
            "2",
            "--panels",
            "4",
            "--bank",
            str(out / "identity_bank.safetensors"),
        ]
    )
    assert code == 0
    assert [p.name for p in (redo / "panels").iterdir()] == ["panel_004.png"]


def test_a_bank_of_another_story_is_named_by_its_cast_not_its_seed(tmp_path, capsys):
    """The bank of another story with another seed was refused as 'made with other settings (seed ...)'."""
    first = write_story(tmp_path / "a.yaml", ["[Bob] walks"])
    assert main(["generate", str(first), "--out", str(tmp_path / "a"), *FAST, "--id-images", "1", "--save-bank"]) == 0
    other = tmp_path / "b.yaml"
    other.write_text('characters:\n  Ann: a woman\npanels:\n  - "[Ann] reads"\nseed: 7\n', encoding="utf-8")
    capsys.readouterr()
    bank = str(tmp_path / "a" / "identity_bank.safetensors")
    code = main(["generate", str(other), "--out", str(tmp_path / "b"), *FAST, "--id-images", "1", "--bank", bank])
    error = capsys.readouterr().err
    assert code == 2 and "holds Bob, not a character of this story: use the bank of a run of this story" in error
    assert "seed" not in error


def test_existing_output_is_not_overwritten_without_the_flag(tmp_path, capsys):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["generate", str(story), "--out", str(out), *FAST]) == 2
    error = capsys.readouterr().err
    assert "--overwrite" in error and "Traceback" not in error
    assert main(["generate", str(story), "--out", str(out), *FAST, "--overwrite"]) == 0
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "panels" / "panel_001.png").exists()


@pytest.mark.parametrize(
    "panels,extra,args,expected",
    [
        (["[Carol] walks"], {}, [], "unknown character"),
        ([], {}, [], "no panels"),
        (["[Bob] walks"], {}, ["--sampling-rate", "1.5"], "--sampling-rate"),
        (["[Bob] walks"], {}, ["--style", "baroque"], "unknown style"),
        (["[Bob] walks"], {}, ["--height", "100"], "multiple of"),
        (["[Bob] walks"], {}, ["--width", "72"], "width must be a multiple of 16 for this model, got 72: use 64 or 80"),
        (["[Bob] walks"], {}, ["--model", "no-such-model"], "tiny-sdxl"),
        (["[Bob] walks"], {"settings": {"max_panels": 0}}, [], "max_panels"),
    ],
)
def test_bad_input_exits_2_with_one_line_message(tmp_path, capsys, panels, extra, args, expected):
    story = write_story(tmp_path / "s.yaml", panels, **extra)
    options = [a for a in FAST if a not in ("tiny-sdxl", "--model")] if "--model" in args else FAST
    assert main(["generate", str(story), "--out", str(tmp_path / "o"), *options, *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and expected in error
    assert len(error.splitlines()) == 1


def test_missing_story_file_is_a_clear_error(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point_runs(tmp_path):
    """python -m storydiffusion draws; a prompt longer than CLIP reads is one warning line (transformers and
    diffusers each warned about it twice, and the library's logger printed it bare before the CLI's own line)."""
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks " + "far " * 100, "[NC] a street"])
    done = subprocess.run(
        [sys.executable, "-m", "storydiffusion", "generate", str(story), "--out", str(tmp_path / "o"), *FAST],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "panels" / "panel_002.png").exists()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len([line for line in lines if "tokens but CLIP reads" in line]) == 1, done.stderr
    assert lines[0].startswith("warning: panel 1: the prompt is") and "truncated" not in done.stderr
    assert "Token indices" not in done.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "storydiffusion",
            "generate",
            str(tmp_path / "missing.yaml"),
            "--out",
            str(tmp_path / "p"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_help_and_a_bad_input_answer_without_loading_torch(tmp_path):
    """The command's answer to --help or a typo comes at once: torch and diffusers load only for real work."""
    probe = (
        "import sys; from storydiffusion.cli import main; "
        "codes = [main(['--help']), main(['generate', sys.argv[1], '--out', sys.argv[2]]), main(['evaluate', '--help'])]; "
        "print(codes, [name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "missing.yaml"), str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip().splitlines()[-1] == "[0, 2, 0] []", done.stdout + done.stderr
    assert "missing.yaml does not exist" in done.stderr and not (tmp_path / "out").exists()


def test_out_of_memory_becomes_a_message_with_settings_to_lower(tmp_path, capsys, monkeypatch):
    from storydiffusion.pipeline import StoryPipeline

    def exhausted(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(StoryPipeline, "generate", exhausted)
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks"])
    assert main(["generate", str(story), "--out", str(tmp_path / "o"), *FAST]) == 2
    error = capsys.readouterr().err
    assert "out of memory" in error and "--height" in error and "Traceback" not in error


def test_what_the_library_logs_as_a_warning_is_one_warning_line(tmp_path, capsys, monkeypatch):
    """A fallback taken while loading (the fp16-safe VAE not downloadable, say) is only logged by the library;
    the command prints it once, as a warning line."""
    import logging

    from storydiffusion.pipeline import StoryPipeline

    loading = StoryPipeline.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        logging.getLogger("storydiffusion.models.low_vram").warning("could not load the fp16-safe VAE")
        return loading(cls, *args, **kwargs)

    monkeypatch.setattr(StoryPipeline, "from_pretrained", classmethod(from_pretrained))
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks"])
    assert main(["generate", str(story), "--out", str(tmp_path / "o"), *FAST]) == 0
    err = capsys.readouterr().err
    assert err.count("could not load the fp16-safe VAE") == 1 and "warning: could not load the fp16-safe VAE" in err


def test_a_redraw_in_a_composed_folder_typesets_its_pages_and_exports_again(tmp_path, capsys):
    import zipfile

    story = write_story(tmp_path / "s.yaml", ["[Bob] walks", "[Bob] eats", "[Bob] sleeps"])
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--save-bank"]) == 0
    assert main(["compose", str(out), "--layout", "grid", "--export", "zip", "--no-title"]) == 0
    write_story(story, ["[Bob] walks", "[Bob] dances", "[Bob] sleeps"])
    capsys.readouterr()
    redraw = ["--panels", "2", "--bank", str(out / "identity_bank.safetensors")]
    assert main(["generate", str(story), "--out", str(out), *FAST, *redraw]) == 0
    assert "1 grid page in" in capsys.readouterr().out  # said, as compose says it
    with zipfile.ZipFile(out / "panels.zip") as archive:  # no export of the earlier panel 2 is left
        assert archive.read("panels/panel_002.png") == (out / "panels" / "panel_002.png").read_bytes()
    pages = json.loads((out / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert pages["template"] == "grid" and pages["title"] is None and pages["exports"] == ["panels.zip"]


def test_a_redraw_lays_pages_out_again_with_the_users_own_template_and_without_lettering(tmp_path, capsys):
    """The user's template file is recorded with the pages (its text, not its path): a redraw uses it even
    when it is named like a bundled layout, moved or deleted since; pictures-only pages stay pictures only."""
    from storydiffusion.resources import data_path

    story = write_story(tmp_path / "s.yaml", ["[Bob] walks # A caption. @Bob: Hi!", "[Bob] eats"])
    own = tmp_path / "mine" / "classic.yaml"  # the bundled webtoon layout, under a bundled layout's name
    own.parent.mkdir()
    own.write_text((data_path("layouts") / "webtoon.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--save-bank"]) == 0
    assert main(["compose", str(out), "--layout", str(own), "--no-lettering", "--no-title"]) == 0
    page = out / "pages" / "page_01.png"
    first = Image.open(page).size
    own.unlink()
    bank = ["--bank", str(out / "identity_bank.safetensors")]
    for panel in ("2", "1"):  # twice: the second redraw reads what the first one recorded
        assert main(["generate", str(story), "--out", str(out), *FAST, "--panels", panel, *bank]) == 0
        assert Image.open(page).size == first
    pages = json.loads((out / "pages" / "pages.json").read_text(encoding="utf-8"))
    assert pages["template_file"]["name"] == "classic.yaml" and str(tmp_path) not in json.dumps(pages)
    assert pages["lettering"] is False
    drawn = Image.open(page).convert("RGB")
    assert main(["compose", str(out), "--layout", "webtoon", "--no-title"]) == 0  # the same layout, lettered
    assert Image.open(page).convert("RGB").tobytes() != drawn.tobytes()


def test_pages_that_cannot_be_typeset_are_refused_before_a_panel_is_drawn(tmp_path, capsys):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks", "[Bob] eats"])
    wide = tmp_path / "wide.yaml"
    wide.write_text("kind: webtoon\npage: {width: 59000px, dpi: 150}\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--layout", str(wide)]) == 2
    assert "page 1 would be 59,000 x" in capsys.readouterr().err
    assert not out.exists()  # refused before the folder was made, let alone a panel drawn


def test_among_several_stories_a_refusal_names_the_file_it_is_about(tmp_path, capsys):
    good = write_story(tmp_path / "good.yaml", ["[Bob] walks"])
    bad = write_story(tmp_path / "bad.yaml", ["[Bob] walks"], settings={"window": 0})
    root = tmp_path / "runs"
    assert main(["generate", str(good), str(bad), "--out-root", str(root), *FAST]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: bad.yaml: line ") and "settings.window must be 1..64, got 0" in error
    assert not root.exists()  # checked before anything is written
    assert main(["generate", str(bad), "--out", str(tmp_path / "one"), *FAST]) == 2  # alone: its name is known
    assert capsys.readouterr().err.startswith("error: line ")


@pytest.mark.parametrize("under", ["", "runs"])
def test_an_out_root_that_is_a_file_is_refused_by_its_own_flag(under, tmp_path, capsys):
    stories = [write_story(tmp_path / f"{name}.yaml", ["[Bob] walks"]) for name in ("a", "b")]
    taken = tmp_path / "taken"
    taken.write_bytes(b"mine")
    root = taken / under if under else taken
    assert main(["generate", *map(str, stories), "--out-root", str(root), *FAST]) == 2
    assert "taken is a file, not a folder: choose another --out-root" in capsys.readouterr().err
    assert taken.read_bytes() == b"mine"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--layout="], "--layout"),
        (["--export="], "--export"),
        (["--export", ","], "--export"),
        (["--layout", " "], "--layout"),
    ],
)
def test_an_empty_layout_or_export_is_refused_not_taken_for_none(tmp_path, capsys, flags, named):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks"])
    assert main(["generate", str(story), "--out", str(tmp_path / "out"), *FAST, *flags]) == 2
    assert capsys.readouterr().err.startswith(f"error: {named} is empty: give ")
    assert not (tmp_path / "out").exists()


def test_compose_refuses_an_empty_export(tmp_path, capsys):
    assert main(["compose", str(tmp_path), "--export=,"]) == 2
    assert capsys.readouterr().err.startswith("error: --export is empty: give png, pdf")


def test_compose_says_whether_its_folder_is_missing_a_file_or_not_a_run(tmp_path, capsys):
    (tmp_path / "story.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    expected = {
        str(tmp_path / "nowhere"): "does not exist",
        str(tmp_path / "story.json"): "is a file, not a run folder",
        str(tmp_path / "empty"): "has no story.json",
    }
    for given, said in expected.items():
        assert main(["compose", given]) == 2
        assert said in capsys.readouterr().err


def test_mode_off_is_a_choice_of_generate_and_plan_as_of_a_story_file():
    from storydiffusion.cli_parser import build_parser
    from storydiffusion.settings import CONSISTENCY_MODES

    parser = build_parser()
    for command in ("generate", "plan"):
        assert parser.parse_args([command, "s.yaml", "--mode", "off"]).mode == "off"
    assert "off" in CONSISTENCY_MODES


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"format": "storydiffusion-run/9"}, "is a run manifest of the format 'storydiffusion-run/9', which this"),
        ({"format": "other/9"}, "is a run manifest of the format 'other/9'"),  # its 'story' tells what it is
    ],
)
def test_a_run_of_another_version_is_named_so_by_generate_and_compose(tmp_path, capsys, change, says):
    """generate listed the manifest's keys as unknown story keys; compose said only 'not a run manifest'."""
    run = tmp_path / "run"
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks"])
    assert main(["generate", str(story), "--out", str(run), *FAST]) == 0
    record = json.loads((run / "story.json").read_text(encoding="utf-8"))
    (run / "story.json").write_text(json.dumps({**record, **change}), encoding="utf-8")
    capsys.readouterr()
    assert main(["generate", str(run / "story.json"), "--out", str(tmp_path / "again"), *FAST]) == 2
    assert says in capsys.readouterr().err
    assert main(["compose", str(run)]) == 2
    error = capsys.readouterr().err
    assert says in error and "draw the story again from its story file" in error


def test_output_read_by_a_reader_that_left_ends_quietly_not_as_bad_input(monkeypatch, capfd):
    """`storydiffusion evaluate run | head -1`: the pipe closing is not the user's input at fault (exit 2 said
    "Broken pipe: check the path and its permissions")."""
    import storydiffusion.cli as cli

    def printing(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_command", lambda name: printing)
    assert main(["plan", str(ROOT / "examples" / "lighthouse.yaml")]) == cli.EXIT_BROKEN_PIPE
    assert "error" not in capfd.readouterr().err
