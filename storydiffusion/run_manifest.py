"""Reading a run's manifest (``story.json``) back: the record checked like any file from a user, the
panels it lists (only under this tool's own names), its model, and its story with the run's settings."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import StoryDiffusionError, StoryError, kind_of, shown, wrong_kind
from .file_lines import line_of_named_path
from .rundir import (
    BANK_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MAX_PANEL_NUMBER,
    PANELS_DIR,
    panel_filename,
)
from .settings import GenerationSettings, control_character, control_character_message
from .story import Story, validate_story
from .structured import InputFileError, parse_json, read_text


def run_folder_manifest(
    run_dir: str | os.PathLike, command: str, error: type[StoryDiffusionError] = StoryDiffusionError
) -> Path:
    """The ``story.json`` of a run folder a ``command`` (compose, evaluate, animate) was given, refused as
    ``error`` saying what the path is instead: missing, a file (a story file, say), or a folder of something
    else. Another kind of file under that name is refused by ``read_manifest``."""
    run = Path(run_dir)
    if not run.exists():
        raise error(f"{run} does not exist: {command} the folder 'generate' wrote (its --out, with {MANIFEST_NAME})")
    if not run.is_dir():
        raise error(f"{run} is a file, not a run folder: {command} the folder 'generate' wrote (its --out)")
    if not (run / MANIFEST_NAME).exists():
        raise error(f"{run} has no {MANIFEST_NAME}: {command} a folder written by 'generate' (its --out)")
    return run / MANIFEST_NAME


Read = TypeVar("Read")


class ManifestFormatError(StoryDiffusionError, ValueError):
    """A story.json written by another version of this tool (another ``format``): neither a run this version
    reads nor a story file."""


class Manifest(dict):
    """A story.json's mapping as ``read_manifest`` read it, with its text: an error about one of its entries
    (``story.json: panels[3].sha256 ...``) can then say on which line of the file the entry is."""

    text: str = ""


def read_manifest(path: str | os.PathLike) -> Manifest:
    """A story.json written by ``save_result``; other JSON is refused with a clear error."""
    try:
        text = read_text(path, "run manifest", MAX_MANIFEST_BYTES)
        data = parse_json(text, Path(path).name)
    except InputFileError as error:
        raise StoryDiffusionError(f"could not read {path}: {error}") from None
    if not isinstance(data, dict):
        raise StoryDiffusionError(
            f"{path} is not a StoryDiffusion run manifest: it holds {kind_of(data)}, not a mapping"
        )
    found = data.get("format")
    another_version = isinstance(found, str) and found.startswith("storydiffusion-run/")
    if found != MANIFEST_FORMAT and (another_version or isinstance(data.get("story"), dict)):
        raise ManifestFormatError(
            f"{path} is a run manifest of the format {shown(found)}, which this version does not read (it reads "
            f"{MANIFEST_FORMAT}): draw the story again from its story file, or use the version that wrote it"
        )
    if found != MANIFEST_FORMAT:
        raise StoryDiffusionError(
            f"{path} is not a StoryDiffusion run manifest (it has no 'format': {MANIFEST_FORMAT}): give the "
            "story.json that 'generate' wrote in its --out folder"
        )
    manifest = Manifest(data)
    manifest.text = text
    return manifest


def _naming_the_line(read: Callable[..., Read]) -> Callable[..., Read]:
    """``read(manifest, ...)`` whose refusals of a ``Manifest`` name the file line of the key they name:
    ``story.json, line 14: panels[1].sha256 must be ...``."""

    @functools.wraps(read)
    def reading(manifest: dict[str, Any], *args: Any, **kwargs: Any) -> Read:
        try:
            return read(manifest, *args, **kwargs)
        except StoryError as error:
            text = getattr(manifest, "text", "")
            name, colon, place = str(error).partition(": ")
            line = _line_of_place(text, place) if text and colon and error.line is None else None
            if line is None:
                raise
            raise StoryError(f"{name}, line {line}: {place}") from None

    return reading


def _line_of_place(text: str, place: str) -> int | None:
    """The line of the key ``place`` names first; in the recorded story (``story: panel 2: seed ...``,
    as a story file's checks word it) under the ``story`` key: the panel's key, else its entry."""
    found = None
    if panel := re.match(r"story: panel (\d+): (\w*)", place):
        at = f"story.panels[{int(panel.group(1)) - 1}]"
        found = line_of_named_path(text, f"{at}.{panel.group(2)} {at}", is_json=True)
    elif place.startswith("story: "):
        found = line_of_named_path(text, "story." + place.removeprefix("story: "), is_json=True)
    return found if found is not None else line_of_named_path(text, place, is_json=True)


@_naming_the_line
def manifest_panels(manifest: dict[str, Any], name: str = MANIFEST_NAME) -> dict[int, dict[str, Any]]:
    """The finished panels a manifest lists, by 0-based index, each checked like the rest of the file.

    An entry names its panel (a whole number from 1) and the file this tool gave it, exactly
    ``panels/panel_NNN.png``: a hand-edited name can never point a reader outside the run folder.
    """
    entries = manifest.get("panels", [])
    if not isinstance(entries, list):
        raise StoryError(f"{name}: {wrong_kind('panels', 'a list of panel entries', entries)}")
    story = manifest.get("story")
    story_panels = story.get("panels") if isinstance(story, dict) else None
    count = len(story_panels) if isinstance(story_panels, list) else None  # a broken story is refused elsewhere
    found: dict[int, dict[str, Any]] = {}
    for position, entry in enumerate(entries):
        where = f"{name}: panels[{position}]"
        if not isinstance(entry, dict):
            raise StoryError(f"{where} {wrong_kind('', 'a mapping', entry).strip()}")
        number = entry.get("panel")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_PANEL_NUMBER:
            raise StoryError(f"{where}.panel must be a panel number from 1, got {shown(number)}")
        if count is not None and number > count:
            raise StoryError(
                f"{where}.panel is {number}, but the story it records has {count} panel{'s' if count != 1 else ''}: "
                "remove the entry (or the panel's line from the story), or generate the story again with --overwrite"
            )
        if number - 1 in found:
            raise StoryError(f"{where}.panel: panel {number} has two entries: remove one of them")
        expected = f"{PANELS_DIR}/{panel_filename(number - 1)}"
        if entry.get("file") != expected:
            raise StoryError(
                f"{where}.file must be {expected!r} (the name this tool gives panel {number}), got {shown(entry.get('file'))}"
            )
        _check_entry_texts(entry, where)
        _check_entry_records(entry, where)
        found[number - 1] = entry
    return found


@_naming_the_line
def manifest_bank(manifest: dict[str, Any], name: str = MANIFEST_NAME) -> str | None:
    """The identity bank file a manifest records: None, or exactly the name this tool gives it, so that a
    hand-edited name (``"/etc/passwd"``) is refused, never read, nor silently dropped from the record."""
    bank = manifest.get("identity_bank")
    if bank is not None and bank != BANK_NAME:
        raise StoryError(
            f"{name}: identity_bank must be {BANK_NAME!r} (the name this tool gives the bank) or null, got {shown(bank)}"
        )
    return bank


def _check_entry_records(entry: dict[str, Any], where: str) -> None:
    """What an entry records of its files is of the kinds this tool writes: a digest is text, and ``masks`` and
    ``masks_sha256`` map character names to text (a hand-edited ``"masks": 5`` names no file)."""
    if "sha256" in entry and not isinstance(entry["sha256"], str):
        raise StoryError(f"{where}.sha256 must be the file's SHA-256 as text, got {shown(entry['sha256'])}")
    for key in ("masks", "masks_sha256"):
        value = entry.get(key)
        if value is not None and not (
            isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        ):
            raise StoryError(f"{where}.{key} must be a mapping of character names to text, got {shown(value)}")


def _check_entry_texts(entry: dict[str, Any], where: str) -> None:
    """The prompts an entry records are text (or absent) without control characters: animate and evaluate
    read them as they are."""
    for key in ("prompt", "negative_prompt"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise StoryError(f"{where}.{key} must be text, got {shown(value)}")
        if isinstance(value, str) and (found := control_character(value)) is not None:
            raise StoryError(control_character_message(f"{where}.{key}", found))


@_naming_the_line
def manifest_model_name(manifest: dict[str, Any], name: str = MANIFEST_NAME) -> str | None:
    """The name of the model a run manifest records (None when it records none), or a StoryError
    naming ``story.json: model ...`` for a hand-edited record that is not ``{"name": "..."}``."""
    model = manifest.get("model")
    if model is None:
        return None
    if not isinstance(model, dict):
        raise StoryError(f"{name}: " + wrong_kind("model", 'a mapping such as {"name": "tiny-sdxl"}', model))
    model_name = model.get("name")
    if model_name is not None and (not isinstance(model_name, str) or not model_name.strip()):
        raise StoryError(f"{name}: {wrong_kind('model.name', 'the name of a model', model_name)}")
    return model_name


@_naming_the_line
def story_from_manifest(
    manifest: dict[str, Any], name: str = MANIFEST_NAME, base: str | os.PathLike[str] | None = None
) -> Story:
    """The story of a run manifest (or project file) drawn with the run's settings, validated exactly
    like a story file: a hand-edited story.json is refused naming the key path, e.g.
    ``story.json: settings.steps must be 1..1000, got 0``. ``base``: the run folder, where the pictures
    it recorded (``inputs/…``) are found; without it they stay relative."""
    try:
        story = Story.from_dict(manifest.get("story"), base)
    except StoryError as error:
        raise StoryError(f"{name}: story: {error}") from None
    try:
        if "settings" in manifest:
            story.settings = GenerationSettings.from_dict(manifest["settings"], where="settings")
        validate_story(story)  # the run's settings may limit what its story holds (max_panels)
    except StoryDiffusionError as error:
        raise StoryError(f"{name}: {error}") from None
    return story
