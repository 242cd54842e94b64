"""Hostile values in story files and hand-edited run manifests: exit 2, one line naming the key path and the value.

Wrong types (text, lists, mappings, true/false, null where something else belongs), NaN and infinity,
numbers out of range and text too long are refused before any model loads, and every file that was
there before is byte-identical after.
"""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from test_input_files import finished_run, one_line_error, snapshot  # noqa: F401  (finished_run: a fixture, used by name)

from storydiffusion.atomic import write_json
from storydiffusion.cli import main
from storydiffusion.rundir import MANIFEST_FORMAT, panel_filename
from storydiffusion.settings import MAX_TEXT_CHARS
from storydiffusion.story import story_from_text

CAST = "characters:\n  Bob: a tall man\n"
PANELS = "panels:\n  - '[Bob] walks'\n  - '[Bob] waves'\n"
GOOD = {"characters": {"Bob": "a tall man"}, "panels": ["[Bob] walks", "[Bob] waves"]}

# name -> (file text, words the one-line message must hold: the key path and the bad value)
HOSTILE_YAML = {
    "guidance_text": (CAST + PANELS + "settings: {guidance: abc}\n", ["settings.guidance", "'abc'", "not a number"]),
    "guidance_bool": (CAST + PANELS + "settings: {guidance: true}\n", ["settings.guidance", "True", "between 0"]),
    "guidance_nan": (CAST + PANELS + "settings: {guidance: .nan}\n", ["settings.guidance", "nan", "between 0"]),
    "guidance_inf": (CAST + PANELS + "settings: {guidance: .inf}\n", ["settings.guidance", "inf", "between 0"]),
    "guidance_minus_inf": (CAST + PANELS + "settings: {guidance: -.inf}\n", ["settings.guidance", "-inf"]),
    "steps_fraction": (CAST + PANELS + "settings: {steps: 1.5}\n", ["settings.steps", "1.5", "1..1000"]),
    "steps_negative": (CAST + PANELS + "settings: {steps: -1}\n", ["settings.steps", "-1", "1..1000"]),
    "steps_bool": (CAST + PANELS + "settings: {steps: true}\n", ["settings.steps", "True", "1..1000"]),
    "steps_null_list": (CAST + PANELS + "settings: {steps: [20]}\n", ["settings.steps", "[20]", "a list"]),
    "seed_text": (CAST + PANELS + "seed: '7'\n", ["seed must be", "'7'", "9223372036854775807"]),
    "settings_seed_text": (CAST + PANELS + "settings: {seed: '7'}\n", ["settings.seed", "'7'"]),
    "settings_seed_null": (CAST + PANELS + "settings: {seed: null}\n", ["settings.seed", "None"]),
    "sampling_rate_entry": (
        CAST + PANELS + "settings: {sampling_rate: {'12': 2}}\n",
        ["settings.sampling_rate.12", "2"],
    ),
    "sampling_rate_key": (
        CAST + PANELS + "settings: {sampling_rate: {big: 0.5}}\n",
        ["settings.sampling_rate", "'big'"],
    ),
    "sampling_rate_text": (CAST + PANELS + "settings: {sampling_rate: half}\n", ["settings.sampling_rate", "'half'"]),
    "width_exponent": (CAST + PANELS + "settings: {width: 1e9}\n", ["settings.width", "1e9", "multiple of 8"]),
    "width_huge": (CAST + PANELS + "settings: {width: 1000000000}\n", ["settings.width", "1000000000"]),
    "mode_list": (CAST + PANELS + "settings: {mode: [window]}\n", ["settings.mode", "['window']"]),
    "settings_list": (CAST + PANELS + "settings: []\n", ["settings must be a mapping", "[]"]),
    "settings_unknown": (CAST + PANELS + "settings: {stepz: 3}\n", ["settings: unknown setting(s) stepz", "steps"]),
    "negative_prompt_list": (CAST + PANELS + "negative_prompt: [ugly]\n", ["negative_prompt", "['ugly']"]),
    "settings_negative_prompt": (CAST + PANELS + "settings: {negative_prompt: 3}\n", ["settings.negative_prompt", "3"]),
    "style_number": (CAST + PANELS + "style: 5\n", ["style", "5"]),
    "title_mapping": (CAST + PANELS + "title: {a: 1}\n", ["title must be text", "{'a': 1}"]),
    "panels_mapping": (CAST + "panels: {one: '[Bob] walks'}\n", ["panels must be a list", "{'one'"]),
    "panels_number": (CAST + "panels: 5\n", ["panels must be a list", "(5)"]),
    "panel_number": (CAST + "panels: ['[Bob] walks', 5]\n", ["panels: panel 2", "(5)"]),
    "panel_seed_text": (CAST + "panels: [{prompt: '[Bob] walks', seed: '7'}]\n", ["panel 1: seed", "'7'"]),
    "panel_seed_fraction": (CAST + "panels: [{prompt: '[Bob] walks', seed: 1.5}]\n", ["panel 1: seed", "1.5"]),
    "panel_seed_negative": (CAST + "panels: [{prompt: '[Bob] walks', seed: -3}]\n", ["panel 1: seed", "-3"]),
    "panel_prompt_list": (CAST + "panels: [{prompt: [1, 2]}]\n", ["panel 1: prompt", "[1, 2]"]),
    "panel_caption_mapping": (CAST + "panels: [{prompt: x, caption: {a: 1}}]\n", ["panel 1: caption", "{'a': 1}"]),
    "panel_dialogue_text": (CAST + "panels: [{prompt: x, dialogue: hi}]\n", ["panel 1: dialogue", "'hi'"]),
    "speech_text_list": (
        CAST + "panels: [{prompt: x, dialogue: [{speaker: Bob, text: [hi]}]}]\n",
        ["panel 1: dialogue 1: text", "['hi']"],
    ),
    "characters_numbers": ("characters: [1, 2]\n" + PANELS, ["characters: character 1", "(1)"]),
    "characters_number": ("characters: 3\n" + PANELS, ["characters must be", "(3)"]),
    "description_list": ("characters: {Bob: [tall]}\n" + PANELS, ["characters.Bob.description", "['tall']"]),
    "identity_text": (CAST + PANELS + "identity_panels: {Bob: [x]}\n", ["identity_panels.Bob", "'x'"]),
    "huge_prompt": (
        CAST + "panels:\n  - '[Bob] " + "x" * 2**20 + "'\n",
        ["panel 1: prompt", "1,048,582 characters", f"at most {MAX_TEXT_CHARS:,}"],
    ),
}
HOSTILE_JSON = {
    "guidance_text": ({**GOOD, "settings": {"guidance": "abc"}}, ["settings.guidance", "'abc'"]),
    "width_exponent": ({**GOOD, "settings": {"width": 1e9}}, ["settings.width", "1000000000.0"]),
    "steps_bool": ({**GOOD, "settings": {"steps": True}}, ["settings.steps", "True"]),
    "sampling_rate_entry": ({**GOOD, "settings": {"sampling_rate": {"12": 2}}}, ["settings.sampling_rate.12", "2"]),
    "title_mapping": ({**GOOD, "title": {"a": 1}}, ["title must be text", "{'a': 1}"]),
    "negative_prompt_list": ({**GOOD, "negative_prompt": ["ugly"]}, ["negative_prompt", "['ugly']"]),
    "panel_seed_text": ({**GOOD, "panels": [{"prompt": "[Bob] x", "seed": "7"}]}, ["panel 1: seed", "'7'"]),
    "characters_numbers": ({**GOOD, "characters": [1, 2]}, ["characters: character 1", "(1)"]),
    "settings_null_values": ({**GOOD, "settings": {"window": None}}, ["settings.window", "None"]),
}


def refused(capsys, argv: list[str], *words: str) -> str:
    """Run the CLI and check it refused with one line holding every word (no traceback)."""
    assert main(argv) == 2
    err = one_line_error(capsys)
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_hostile_values_in_a_yaml_story_name_the_key_and_the_value(name, request, tmp_path, capsys):
    text, words = HOSTILE_YAML[name]
    story = tmp_path / f"{name}.yaml"
    story.write_text(text, encoding="utf-8")
    out, before = request.getfixturevalue("finished_run")
    err = refused(capsys, ["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--overwrite"], *words)
    assert len(err) < 500
    assert snapshot(out) == before


@pytest.mark.parametrize("name", sorted(HOSTILE_JSON))
def test_hostile_values_in_a_json_story_name_the_key_and_the_value(name, request, tmp_path, capsys):
    data, words = HOSTILE_JSON[name]
    story = tmp_path / f"{name}.json"
    story.write_text(json.dumps(data), encoding="utf-8")
    out, before = request.getfixturevalue("finished_run")
    refused(capsys, ["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--overwrite"], *words)
    assert snapshot(out) == before


# --------------------------------------------------------------------- hand-edited run manifests


def written_run(folder):
    """A run folder as `generate` writes it: a story.json manifest with story and settings, and two panels."""
    story = story_from_text("[Bob] a tall man", "[Bob] walks\n[Bob] waves")
    (folder / "panels").mkdir(parents=True)
    entries = []
    for i in range(2):
        Image.new("RGB", (64, 64), (40 * i, 90, 160)).save(folder / "panels" / panel_filename(i))
        entries.append({"panel": i + 1, "file": f"panels/{panel_filename(i)}", "seed": i, "prompt": "p"})
    manifest = {
        "format": MANIFEST_FORMAT,
        "story": story.to_dict(),
        "settings": {**story.settings.to_dict(), "steps": 2, "guidance": 5.0, "height": 64, "width": 64},
        "model": {"name": "tiny-sdxl"},
        "panels": entries,
        "complete": True,
    }
    write_json(folder / "story.json", manifest)
    return manifest


def edit(manifest: dict, path: str, value) -> dict:
    """A copy of ``manifest`` with the value at a dotted key path (list items by 0-based number) replaced."""
    edited = json.loads(json.dumps(manifest))
    *parents, last = path.split(".")
    node = edited
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return edited


HAND_EDITS = {
    "settings_steps_zero": ("settings.steps", 0, ["story.json: settings.steps", "got 0"]),
    "settings_guidance_text": ("settings.guidance", "abc", ["story.json: settings.guidance", "'abc'"]),
    "settings_seed_text": ("settings.seed", "7", ["story.json: settings.seed", "'7'"]),
    "settings_rate_entry": ("settings.sampling_rate", {"12": 2}, ["story.json: settings.sampling_rate.12", "2"]),
    "settings_list": ("settings", [], ["story.json: settings must be a mapping", "[]"]),
    "settings_unknown": ("settings.colour", 1, ["story.json: settings: unknown setting(s) colour"]),
    "story_list": ("story", [1], ["story.json: story:", "[1]"]),
    "story_panel_seed": ("story.panels.1.seed", 1.5, ["story.json: story: panel 2: seed", "1.5"]),
    "story_panels_mapping": ("story.panels", {"a": 1}, ["story.json: story: panels must be a list", "{'a': 1}"]),
    "story_title_mapping": ("story.title", {"a": 1}, ["story.json: story: title must be text", "{'a': 1}"]),
    "story_width": ("story.settings.width", 1e9, ["story.json: story: settings.width", "1000000000.0"]),
    "story_characters": ("story.characters", [1, 2], ["story.json: story: characters: character 1", "(1)"]),
    "story_negative_prompt": ("story.settings.negative_prompt", ["x"], ["settings.negative_prompt", "['x']"]),
    "story_caption_nul": ("story.panels.0.caption", "a\x00b", ["story.json: story: panel 1: caption", "U+0000"]),
    "settings_negative_bell": ("settings.negative_prompt", "blur\x07", ["settings.negative_prompt", "U+0007"]),
}


@pytest.mark.parametrize("command", ["generate", "compose", "animate"])
@pytest.mark.parametrize("name", sorted(HAND_EDITS))
def test_a_hand_edited_story_json_is_validated_like_a_story_file(name, command, tmp_path, capsys):
    run = tmp_path / "run"
    path, value, words = HAND_EDITS[name]
    write_json(run / "story.json", edit(written_run(run), path, value))
    before = snapshot(run)
    argv = {
        "generate": ["generate", str(run / "story.json"), "--out", str(tmp_path / "again"), "--model", "tiny-sdxl"],
        "compose": ["compose", str(run)],
        "animate": ["animate", str(run), "--from", "1", "--to", "2", "--model", "tiny"],
    }[command]
    located, *rest = words
    err = refused(capsys, argv, *rest)
    if located.startswith("story.json: "):  # and on the line of story.json that holds the edited key
        found = re.search(r"story\.json, line (\d+): ", err)
        assert found and located.removeprefix("story.json: ") in err, err
        key = next(part for part in reversed(path.split(".")) if not part.isdigit())
        assert f'"{key}"' in (run / "story.json").read_text().splitlines()[int(found.group(1)) - 1], err
    else:
        assert located in err, err
    assert snapshot(run) == before
    assert not (tmp_path / "again").exists()


def test_a_hand_edited_model_name_that_is_not_text_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    write_json(run / "story.json", edit(written_run(run), "model", {"name": ["tiny-sdxl"]}))
    refused(
        capsys, ["generate", str(run / "story.json"), "--out", str(tmp_path / "again")], "model.name", "['tiny-sdxl']"
    )


def test_an_unedited_story_json_still_reads(tmp_path):
    from storydiffusion.run_manifest import read_manifest, story_from_manifest

    run = tmp_path / "run"
    manifest = written_run(run)
    story = story_from_manifest(read_manifest(run / "story.json"))
    assert [p.prompt for p in story.panels] == ["[Bob] walks", "[Bob] waves"]
    assert (story.settings.steps, story.settings.width) == (manifest["settings"]["steps"], 64)


PANEL_ENTRY_EDITS = {
    "file_outside": ("panels.0.file", "../../outside.png", "panels[0].file must be 'panels/panel_001.png'"),
    "file_absolute": ("panels.0.file", "/etc/hostname", "panels[0].file must be"),
    "file_other_panel": ("panels.1.file", "panels/panel_001.png", "panels[1].file must be 'panels/panel_002.png'"),
    "number_text": ("panels.0.panel", "1", "panels[0].panel must be a panel number"),
    "number_zero": ("panels.1.panel", 0, "panels[1].panel must be a panel number"),
    "number_beyond_story": ("panels.1.panel", 3, "panels[1].panel is 3, but the story it records has 2 panels"),
    "number_twice": ("panels.1.panel", 1, "panels[1].panel: panel 1 has two entries"),
    "entry_number": ("panels.0", 5, "panels[0] must be a mapping"),
    "digest_number": ("panels.0.sha256", 5, "panels[0].sha256 must be the file's SHA-256 as text, got 5"),
    "masks_number": ("panels.0.masks", 5, "panels[0].masks must be a mapping of character names to text"),
    "masks_digests_list": ("panels.1.masks_sha256", [1], "panels[1].masks_sha256 must be a mapping of character"),
    "entries_mapping": ("panels", {"a": 1}, "panels must be a list"),
    "prompt_number": ("panels.0.prompt", 5, "panels[0].prompt must be text, got 5"),
    "negative_mapping": ("panels.1.negative_prompt", {"a": 1}, "panels[1].negative_prompt must be text"),
    "prompt_escape": ("panels.0.prompt", "a \x1b[2J b", "panels[0].prompt holds the control character U+001B"),
}


# A story.json read as a story (generate elsewhere, plan) goes through the same check: a few edits show it.
READ_AS_A_STORY = [("elsewhere", "file_outside"), ("plan", "file_absolute"), ("plan", "number_beyond_story")]


@pytest.mark.parametrize(
    "command, name",
    [(command, name) for command in ("animate", "continue", "compose") for name in sorted(PANEL_ENTRY_EDITS)]
    + READ_AS_A_STORY,
)
def test_hand_edited_panel_entries_never_point_a_reader_outside_the_run(name, command, tmp_path, capsys):
    """A panel entry names exactly the file this tool gave it, so no edit can make animate read another file."""
    run = tmp_path / "run"
    (tmp_path / "outside.png").write_bytes(b"not the user's panel")
    path, value, words = PANEL_ENTRY_EDITS[name]
    write_json(run / "story.json", {**edit(written_run(run), path, value), "complete": False})
    before = snapshot(tmp_path)
    argv = {
        "animate": ["animate", str(run), "--from", "1", "--to", "2", "--model", "tiny"],
        "continue": ["generate", str(run / "story.json"), "--out", str(run), "--model", "tiny-sdxl", "--steps", "2"],
        "compose": ["compose", str(run)],
        "elsewhere": ["generate", str(run / "story.json"), "--out", str(tmp_path / "again"), "--model", "tiny-sdxl"],
        "plan": ["plan", str(run / "story.json"), "--model", "tiny-sdxl"],
    }[command]
    err = refused(capsys, argv, words)
    found = re.search(r"story\.json, line (\d+): ", err)  # the line of the edited entry's key
    line = (run / "story.json").read_text().splitlines()[int(found.group(1)) - 1] if found else ""
    key = path.split(".")[-1]
    assert found and (key.isdigit() or f'"{key}"' in line), err  # (a list item's line holds its value)
    assert snapshot(tmp_path) == before


def test_a_finished_run_whose_record_lists_a_panel_its_story_lacks_is_named_not_counted(tmp_path, capsys):
    """ "holds a finished run (3 panels, none missing)" for a two-panel story sent the user to --panels 3."""
    run = tmp_path / "run"
    manifest = written_run(run)
    extra = {**manifest["panels"][1], "panel": 3, "file": "panels/panel_003.png"}
    write_json(run / "story.json", {**manifest, "panels": [*manifest["panels"], extra], "complete": True})
    before = snapshot(tmp_path)
    argv = ["generate", str(run / "story.json"), "--out", str(run), "--model", "tiny-sdxl", "--steps", "2"]
    err = refused(capsys, argv, "panels[2].panel is 3, but the story it records has 2 panels", "--overwrite")
    assert re.search(r"story\.json, line \d+: panels\[2\]", err), err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("bank", ["/etc/passwd", "../identity_bank.safetensors", 5])
@pytest.mark.parametrize("redraw", [[], ["--panels", "1"]])
def test_a_hand_edited_identity_bank_name_is_refused_not_dropped_from_the_record(bank, redraw, tmp_path, capsys):
    """Read, it could point outside the run; dropped, the run's real bank would fall out of its own record."""
    run = tmp_path / "run"
    write_json(run / "story.json", {**written_run(run), "identity_bank": bank, "complete": bool(redraw)})
    before = snapshot(tmp_path)
    argv = ["generate", str(run / "story.json"), "--out", str(run), "--model", "tiny-sdxl", "--steps", "2", *redraw]
    err = refused(capsys, argv, "identity_bank must be 'identity_bank.safetensors'", str(bank))
    assert re.search(r"story\.json, line \d+: identity_bank", err), err
    assert snapshot(tmp_path) == before
