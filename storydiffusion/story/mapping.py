"""The story file format as a mapping (what YAML or JSON gives) -> a validated :class:`Story`.

``lines`` maps parts of the mapping to the lines of the file they came from (see ``files.yaml_lines``),
so an error can point into the file (a YAML or JSON file); it is empty for ``Story.from_dict``. Every message
names the value's place in the file the same way: a key path such as ``settings.sampling_rate.2`` or
``characters.Bob.description``, and ``panel 3: seed`` inside the (1-based) third panel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..errors import SettingsError, StoryError, shown, wrong_kind
from ..invisible import shows_nothing
from ..settings import SETTING_RANGES, GenerationSettings, control_character, control_character_message
from .control import control_from_value
from .model import DEFAULT_REFERENCE_SCALE, DEFAULT_TITLE, Character, DialogueLine, Panel, Story
from .names import CharacterTable, known_names, name_index, name_key, norm
from .regions import MAX_CHARACTERS_WITH_REGIONS, Region, region_from_value
from .text import parse_panel_line
from .validation import (
    add_character,
    check_brackets,
    check_name,
    check_text_tags,
    resolve_speaker,
    validate_story,
)

STORY_KEYS = ("title", "style", "negative_prompt", "seed", "characters", "panels", "settings", "identity_panels")
PANEL_KEYS = ("prompt", "caption", "dialogue", "seed", "regions", "control")
# Settings a story file may also give at the top level, as a shorthand.
_TOP_LEVEL_SETTINGS = ("style", "negative_prompt", "seed")


def story_from_dict(data: Any, base: Path | None = None) -> Story:
    """What ``Story.from_dict`` does: a validated story from a mapping in the story file format (relative
    picture paths taken from ``base``, when given)."""
    if not isinstance(data, dict):
        raise StoryError(wrong_kind("a story", f"a mapping of keys ({', '.join(STORY_KEYS)})", data))
    return story_from_mapping(data, {}, base)


def story_from_mapping(data: dict[str, Any], lines: dict[str, Any], base: Path | None = None) -> Story:
    """A validated story from a file's mapping; ``base`` is the file's folder, where relative reference
    photos are found (None: as written, from the working folder)."""
    key_lines = lines.get("keys", {})
    unknown = [str(k) for k in data if k not in STORY_KEYS]
    if unknown:
        raise StoryError(
            f"unknown key(s) in the story: {', '.join(unknown)}; known keys: {', '.join(STORY_KEYS)}",
            key_lines.get(unknown[0]),
        )
    title = _text(data.get("title", DEFAULT_TITLE), "title", key_lines.get("title"))
    settings = _settings_from(data, key_lines, lines.get("settings", {}))
    characters = _characters_from(data.get("characters"), lines, key_lines.get("characters"), base)
    panels = _panels_from(data.get("panels"), characters, lines, key_lines.get("panels"), base)
    identity = _identity_from(data.get("identity_panels"), characters, key_lines.get("identity_panels"))
    story = Story(
        title=norm(title) or DEFAULT_TITLE,
        characters=characters,
        panels=panels,
        settings=settings,
        identity_panels=identity,
    )
    try:
        validate_story(story)
    except StoryError as error:
        if type(error) is not StoryError or error.line is not None:
            raise
        message = str(error)
        raise StoryError(message, _line_of_place(message, lines)) from None
    return story


def _line_of_place(message: str, lines: dict[str, Any]) -> int | None:
    """The file line of the place a whole-story check names first in its ``message`` (``panel 3: ...``,
    ``identity_panels.Bob ...``, ``settings.steps ...``): those checks see the story, not the file."""
    key_lines = lines.get("keys", {})
    if panel := re.match(r"panel (\d+)\b", message):
        return _at(lines, "panels", int(panel.group(1)) - 1)
    if setting := re.match(r"settings\.(\w+)", message):
        return lines.get("settings", {}).get(setting.group(1), key_lines.get("settings"))
    top = re.match(r"\w+", message)
    return key_lines.get(top.group()) if top else None


def _text(value: Any, path: str, line: int | None) -> str:
    """Text as the file wrote it: a number is refused, not turned into text behind the user's back; a control
    character is refused before any other check of the text reads it (a story.json edited by hand)."""
    if isinstance(value, str):
        if (found := control_character(value)) is not None:
            raise StoryError(control_character_message(path, found), line)
        return value
    hint = ": put it in quotes" if isinstance(value, (int, float)) else ""
    raise StoryError(wrong_kind(path, "text", value) + hint, line)


def _at(lines: dict[str, Any], group: str, i: int) -> int | None:
    """The file line of item ``i`` of ``group`` ("panels" or "characters"), when known."""
    items = lines.get(group) or []
    return items[i] if i < len(items) else None


def _settings_from(
    data: dict[str, Any], key_lines: dict[str, int], setting_lines: dict[str, int]
) -> GenerationSettings:
    """The ``settings`` mapping, then the settings a story may also give at the top level. An error points
    at the line of the setting it names (``settings.width must be ...``), else at ``settings:``'s."""
    raw = data.get("settings")
    try:
        settings = GenerationSettings.from_dict({} if raw is None else raw, where="settings")
    except SettingsError as exc:
        message = str(exc)
        unknown = re.match(r"settings: unknown setting\(s\) ([^,;]+)", message)
        named = [
            line
            for key, line in setting_lines.items()
            if re.match(rf"settings\.{re.escape(key)}[ .]", message) or (unknown and unknown.group(1) == key)
        ]
        raise StoryError(message, named[0] if named else key_lines.get("settings")) from None
    for name in _TOP_LEVEL_SETTINGS:
        if name in data:
            if isinstance(raw, dict) and name in raw:
                raise StoryError(
                    f"'{name}' is given both at the top level and under settings: keep only one", key_lines.get(name)
                )
            value = data[name]
            setattr(settings, name, "" if name == "negative_prompt" and value is None else value)
            try:
                settings.validate(where="")  # the others passed already: an error names this key
                settings.validate_names(where="")
            except SettingsError as exc:
                raise StoryError(str(exc), key_lines.get(name)) from None
    return settings


# ------------------------------------------------------------------------------------- characters


CHARACTER_KEYS = ("name", "description", "reference", "reference_scale")


def _characters_from(raw: Any, lines: dict[str, Any], line: int | None, base: Path | None) -> dict[str, Character]:
    characters: dict[str, Character] = CharacterTable()  # finds each tag's name in one step
    if raw is None:
        return characters
    if isinstance(raw, dict):
        entries = [
            (name, _character_fields(value, f"characters.{name}", _at(lines, "characters", i)))
            for i, (name, value) in enumerate(raw.items())
        ]
    elif isinstance(raw, list):
        entries = _character_list_entries(raw, lines)
    else:
        raise StoryError(
            wrong_kind("characters", "a mapping of name to description, or a list of {name, description}", raw), line
        )
    for i, (name, (description, reference, scale)) in enumerate(entries):
        where = _at(lines, "characters", i)
        if not isinstance(name, str):
            raise StoryError(f"characters: character name {shown(name)} must be text: put it in quotes", where)
        if isinstance(reference, str) and base is not None and reference.strip():
            reference = os.path.abspath(base / reference.strip())  # a photo beside the story file
        add_character(characters, check_name(name, where), description, where, reference, scale)
    return characters


def _character_fields(value: Any, where: str, line: int | None) -> tuple[Any, Any, Any]:
    """(description, reference, reference_scale) of a character written as text or as a mapping."""
    if not isinstance(value, dict):
        return value, None, DEFAULT_REFERENCE_SCALE
    extra = sorted(str(k) for k in value if k not in CHARACTER_KEYS[1:])
    if extra:
        raise StoryError(
            f"{where} has unknown key(s) {', '.join(extra)}; known keys: {', '.join(CHARACTER_KEYS[1:])}", line
        )
    return value.get("description"), value.get("reference"), value.get("reference_scale", DEFAULT_REFERENCE_SCALE)


def _character_list_entries(raw: list[Any], lines: dict[str, Any]) -> list[tuple[Any, tuple[Any, Any, Any]]]:
    """(name, fields) pairs from the list form ``- {name: Bob, description: ..., reference: bob.png}``."""
    entries = []
    for i, item in enumerate(raw):
        where = _at(lines, "characters", i)
        if not isinstance(item, dict):
            raise StoryError(
                wrong_kind(f"characters: character {i + 1}", "a mapping with 'name' and 'description'", item), where
            )
        if "name" not in item:
            raise StoryError(f"characters: character {i + 1} has no 'name': give it one, e.g. name: Bob", where)
        extra = sorted(str(k) for k in item if k not in CHARACTER_KEYS)
        if extra:
            raise StoryError(
                f"characters: character {i + 1} has unknown key(s) {', '.join(extra)}; "
                f"known keys: {', '.join(CHARACTER_KEYS)}",
                where,
            )
        fields = {key: value for key, value in item.items() if key != "name"}
        entries.append((item["name"], _character_fields(fields, f"characters: character {i + 1}", where)))
    return entries


# ----------------------------------------------------------------------------------------- panels


def _panels_from(
    raw: Any, characters: dict[str, Character], lines: dict[str, Any], line: int | None, base: Path | None = None
) -> list[Panel]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StoryError(wrong_kind("panels", "a list of panels", raw), line)
    return [
        _panel_from_item(item, characters, f"panel {i + 1}", _at(lines, "panels", i), base)
        for i, item in enumerate(raw)
    ]


def _panel_from_item(
    item: Any, characters: dict[str, Character], label: str, line: int | None, base: Path | None = None
) -> Panel:
    """A panel written as one text line, or as a mapping with the keys of PANEL_KEYS."""
    if isinstance(item, str):
        return parse_panel_line(item, characters, label, line)
    if isinstance(item, list):
        raise StoryError(
            f"{label} is a list, not text: put the panel in quotes when it starts with a [Name] tag, "
            'e.g. - "[Bob] opens the door"',
            line,
        )
    if not isinstance(item, dict):
        raise StoryError(wrong_kind(f"panels: {label}", f"text or a mapping with {', '.join(PANEL_KEYS)}", item), line)
    extra = [str(k) for k in item if k not in PANEL_KEYS]
    if extra:
        raise StoryError(f"{label} has unknown key(s) {', '.join(extra)}; known keys: {', '.join(PANEL_KEYS)}", line)
    prompt = item.get("prompt")
    if prompt is None:
        raise StoryError(f"{label} needs a 'prompt' with the text of the panel", line)
    # The prompt reads as a panel line does: a caption after '#', speech after '@Name:', [Name@left] places.
    written = parse_panel_line(_text(prompt, f"{label}: prompt", line), characters, f"{label}: prompt", line)
    prompt, names = written.prompt, written.characters
    _refuse_twice(item, written, label, line)
    caption = written.caption or _caption_from(item.get("caption"), characters, label, line)
    dialogue = written.dialogue or _dialogue_from(item.get("dialogue"), characters, label, line)
    seed = item.get("seed")
    if seed is not None and not SETTING_RANGES["seed"].contains(seed):
        raise StoryError(
            f"{label}: seed must be a whole number {SETTING_RANGES['seed'].describe()}, got {shown(seed)}", line
        )
    regions = written.regions or _regions_from(item.get("regions"), characters, names, label, line)
    control = None
    if item.get("control") is not None:
        try:
            control = control_from_value(item["control"], f"{label}: control", base)
        except StoryError as error:
            raise StoryError(str(error), line) from None
    return Panel(
        prompt=prompt.strip(),
        caption=caption,
        dialogue=dialogue,
        seed=seed,
        characters=names,
        regions=regions,
        control=control,
    )


def _refuse_twice(item: dict[str, Any], written: Panel, label: str, line: int | None) -> None:
    """A caption, speech or places given both in the prompt's line syntax and under their own keys: which one
    the user meant cannot be told, so neither is dropped in silence."""
    for key, in_prompt, how in (
        ("caption", written.caption, "after '#'"),
        ("dialogue", written.dialogue, "after '@Name:'"),
        ("regions", written.regions, "as [Name@place] tags"),
    ):
        if in_prompt and item.get(key) is not None:
            raise StoryError(
                f"{label} gives its {key} twice, in the prompt ({how}) and under '{key}': keep one of them", line
            )


def _regions_from(
    raw: Any, characters: dict[str, Character], shown_here: tuple[str, ...], label: str, line: int | None
) -> dict[str, Region]:
    """``regions: {Name: left | [x0, y0, x1, y1] | {region, prompt}}`` for characters the panel shows."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StoryError(wrong_kind(f"{label}: regions", "a mapping of character name to place", raw), line)
    if len(raw) > MAX_CHARACTERS_WITH_REGIONS:
        raise StoryError(f"{label}: regions places {len(raw)} characters; at most {MAX_CHARACTERS_WITH_REGIONS}", line)
    regions: dict[str, Region] = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise StoryError(f"{label}: regions: character name {shown(name)} must be text: put it in quotes", line)
        canonical = name_index(characters).get(name_key(name))
        if canonical is None:
            raise StoryError(
                f"{label}: regions.{name} names an unknown character; known characters: {known_names(characters)}", line
            )
        if canonical not in shown_here:
            raise StoryError(
                f"{label}: regions.{name}: {canonical} is not in this panel's prompt; tag it, e.g. [{canonical}]", line
            )
        if canonical in regions:
            raise StoryError(f"{label}: regions places {canonical} twice", line)
        try:
            region = region_from_value(value, f"{label}: regions.{name}")
        except StoryError as error:
            raise StoryError(str(error), line) from None
        if region.prompt is not None:
            check_brackets(region.prompt, label, line)
            if "[" in region.prompt:
                raise StoryError(
                    f"{label}: regions.{name}.prompt holds a [tag]: a region's text is about {canonical} alone, "
                    "write it without tags",
                    line,
                )
        regions[canonical] = region
    return regions


def _caption_from(caption: Any, characters: dict[str, Character], label: str, line: int | None) -> str | None:
    if caption is None:
        return None
    caption = _text(caption, f"{label}: caption", line)
    check_brackets(caption, f"{label}: caption", line)
    check_text_tags(caption, characters, f"{label}: caption", line)  # a [Name] in it is shown as the name
    return None if shows_nothing(caption) else norm(caption)


def _dialogue_from(raw: Any, characters: dict[str, Character], label: str, line: int | None) -> list[DialogueLine]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StoryError(wrong_kind(f"{label}: dialogue", "a list of {speaker, text}", raw), line)
    dialogue = []
    for n, entry in enumerate(raw, 1):
        path = f"{label}: dialogue {n}"
        if not isinstance(entry, dict) or set(entry) - {"speaker", "text"} or "speaker" not in entry:
            raise StoryError(
                f"{path} must be a mapping with 'speaker' and 'text' (nothing else), got {shown(entry)}", line
            )
        if not isinstance(entry["speaker"], str):
            raise StoryError(wrong_kind(f"{path}: speaker", "a character name", entry["speaker"]), line)
        speaker = resolve_speaker(entry["speaker"], characters, label, line)
        said = entry.get("text")
        if said is not None:
            said = _text(said, f"{path}: text", line)
        if not isinstance(said, str) or shows_nothing(said):
            raise StoryError(f"{label} has an empty speech line for @{speaker}: give it a 'text'", line)
        check_brackets(said, f"{path}: text", line)
        check_text_tags(said, characters, f"{path}: text", line)
        dialogue.append(DialogueLine(speaker, norm(said)))
    return dialogue


# -------------------------------------------------------------------------------- identity panels


def _identity_from(raw: Any, characters: dict[str, Character], line: int | None) -> dict[str, list[int]]:
    """identity_panels as written (1-based panel numbers) to 0-based indices; range is checked later."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StoryError(wrong_kind("identity_panels", "a mapping of character name to panel numbers", raw), line)
    identity: dict[str, list[int]] = {}
    for name, numbers in raw.items():
        if not isinstance(name, str):
            raise StoryError(f"identity_panels: character name {shown(name)} must be text: put it in quotes", line)
        label = f"identity_panels.{name}"
        canonical = name_index(characters).get(name_key(name))
        if canonical is None:
            raise StoryError(f"{label} names an unknown character; known characters: {known_names(characters)}", line)
        if canonical in identity:
            raise StoryError(
                f"identity_panels names {canonical} twice (names match whatever their case or Unicode form): keep one",
                line,
            )
        identity[canonical] = _identity_indices(numbers, label, line)
    return identity


def _identity_indices(numbers: Any, label: str, line: int | None) -> list[int]:
    """1-based panel numbers (a list, or one number) -> 0-based indices."""
    if isinstance(numbers, int) and not isinstance(numbers, bool):
        numbers = [numbers]
    if not isinstance(numbers, list):
        raise StoryError(wrong_kind(label, "a list of panel numbers, e.g. [1, 3, 4]", numbers), line)
    indices = []
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise StoryError(f"{label} has {shown(number)}: panel numbers are whole numbers starting at 1", line)
        indices.append(number - 1)
    return indices
