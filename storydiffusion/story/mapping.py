"""The story file format as a mapping (what YAML or JSON gives) -> a validated :class:`Story`.

``lines`` maps parts of the mapping to the lines of the file they came from (see ``files.yaml_lines``),
so an error can point into the file; it is empty for JSON and for ``Story.from_dict``.
"""

from __future__ import annotations

from typing import Any

from ..errors import SettingsError, StoryError
from ..settings import GenerationSettings
from .model import DEFAULT_TITLE, Character, DialogueLine, Panel, Story
from .names import kind_of, known_names, name_index, name_key, norm
from .text import parse_panel_line
from .validation import (
    add_character,
    check_brackets,
    check_name,
    check_text_tags,
    panel_characters,
    resolve_speaker,
    validate_story,
)

STORY_KEYS = ("title", "style", "negative_prompt", "seed", "characters", "panels", "settings", "identity_panels")
PANEL_KEYS = ("prompt", "caption", "dialogue", "seed")
# Settings a story file may also give at the top level, as a shorthand.
_TOP_LEVEL_SETTINGS = ("style", "negative_prompt", "seed")


def story_from_dict(data: Any) -> Story:
    """What ``Story.from_dict`` does: a validated story from a mapping in the story file format."""
    if not isinstance(data, dict):
        raise StoryError(f"a story must be a mapping of keys ({', '.join(STORY_KEYS)}), not {kind_of(data)}")
    return story_from_mapping(data, {})


def story_from_mapping(data: dict[str, Any], lines: dict[str, Any]) -> Story:
    key_lines = lines.get("keys", {})
    unknown = [str(k) for k in data if k not in STORY_KEYS]
    if unknown:
        raise StoryError(
            f"unknown key(s) in the story: {', '.join(unknown)}; known keys: {', '.join(STORY_KEYS)}",
            key_lines.get(unknown[0]),
        )
    title = data.get("title", DEFAULT_TITLE)
    if isinstance(title, (int, float)) and not isinstance(title, bool):
        title = str(title)
    if not isinstance(title, str):
        raise StoryError(f"title must be text, not {kind_of(title)}", key_lines.get("title"))
    settings = _settings_from(data, key_lines)
    characters = _characters_from(data.get("characters"), lines, key_lines.get("characters"))
    panels = _panels_from(data.get("panels"), characters, lines, key_lines.get("panels"))
    identity = _identity_from(data.get("identity_panels"), characters, key_lines.get("identity_panels"))
    story = Story(
        title=norm(title) or DEFAULT_TITLE,
        characters=characters,
        panels=panels,
        settings=settings,
        identity_panels=identity,
    )
    validate_story(story)
    return story


def _at(lines: dict[str, Any], group: str, i: int) -> int | None:
    """The file line of item ``i`` of ``group`` ("panels" or "characters"), when known."""
    items = lines.get(group) or []
    return items[i] if i < len(items) else None


def _settings_from(data: dict[str, Any], key_lines: dict[str, int]) -> GenerationSettings:
    raw = data.get("settings")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise StoryError(
            f"settings must be a mapping of setting names to values, not {kind_of(raw)}", key_lines.get("settings")
        )
    try:
        settings = GenerationSettings.from_dict(raw)
    except SettingsError as exc:
        raise StoryError(str(exc), key_lines.get("settings")) from None
    except (TypeError, ValueError) as exc:
        raise StoryError(f"invalid settings: {exc}", key_lines.get("settings")) from None
    for name in _TOP_LEVEL_SETTINGS:
        if name in data:
            if name in raw:
                raise StoryError(
                    f"'{name}' is given both at the top level and under settings: keep only one", key_lines.get(name)
                )
            value = data[name]
            if name == "negative_prompt" and value is None:
                value = ""
            setattr(settings, name, value)
    return settings


# ------------------------------------------------------------------------------------- characters


def _characters_from(raw: Any, lines: dict[str, Any], line: int | None) -> dict[str, Character]:
    characters: dict[str, Character] = {}
    if raw is None:
        return characters
    if isinstance(raw, dict):
        entries = list(raw.items())
    elif isinstance(raw, list):
        entries = _character_list_entries(raw, lines)
    else:
        raise StoryError(
            "characters must be a mapping of name to description, or a list of {name, description}, "
            f"not {kind_of(raw)}",
            line,
        )
    for i, (name, description) in enumerate(entries):
        where = _at(lines, "characters", i)
        if not isinstance(name, str):
            raise StoryError(f"character name {name!r} must be text: put it in quotes", where)
        add_character(characters, check_name(name, where), description, where)
    return characters


def _character_list_entries(raw: list[Any], lines: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(name, description) pairs from the list form ``- {name: Bob, description: ...}``."""
    entries = []
    for i, item in enumerate(raw):
        where = _at(lines, "characters", i)
        if not isinstance(item, dict) or "name" not in item:
            raise StoryError(
                f"character {i + 1} must be a mapping with 'name' and 'description', not {kind_of(item)}", where
            )
        extra = sorted(str(k) for k in item if k not in ("name", "description"))
        if extra:
            raise StoryError(
                f"character {i + 1} has unknown key(s) {', '.join(extra)}; known keys: name, description", where
            )
        entries.append((item["name"], item.get("description")))
    return entries


# ----------------------------------------------------------------------------------------- panels


def _panels_from(raw: Any, characters: dict[str, Character], lines: dict[str, Any], line: int | None) -> list[Panel]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StoryError(f"panels must be a list of panels, not {kind_of(raw)}", line)
    return [_panel_from_item(item, characters, f"panel {i + 1}", _at(lines, "panels", i)) for i, item in enumerate(raw)]


def _panel_from_item(item: Any, characters: dict[str, Character], label: str, line: int | None) -> Panel:
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
        raise StoryError(f"{label} must be text or a mapping with {', '.join(PANEL_KEYS)}, not {kind_of(item)}", line)
    extra = [str(k) for k in item if k not in PANEL_KEYS]
    if extra:
        raise StoryError(f"{label} has unknown key(s) {', '.join(extra)}; known keys: {', '.join(PANEL_KEYS)}", line)
    prompt = item.get("prompt")
    if not isinstance(prompt, str):
        raise StoryError(f"{label} needs a 'prompt' with the text of the panel, got {kind_of(prompt)}", line)
    check_brackets(prompt, label, line)
    names = panel_characters(prompt, characters, label, line)
    caption = _caption_from(item.get("caption"), characters, label, line)
    dialogue = _dialogue_from(item.get("dialogue"), characters, label, line)
    seed = item.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise StoryError(f"{label} seed must be a whole number, not {kind_of(seed)}", line)
    return Panel(prompt=prompt.strip(), caption=caption, dialogue=dialogue, seed=seed, characters=names)


def _caption_from(caption: Any, characters: dict[str, Character], label: str, line: int | None) -> str | None:
    if caption is None:
        return None
    if isinstance(caption, (int, float)) and not isinstance(caption, bool):
        caption = str(caption)
    if not isinstance(caption, str):
        raise StoryError(f"{label} caption must be text, not {kind_of(caption)}", line)
    check_brackets(caption, label, line)
    check_text_tags(caption, characters, label, line)
    return norm(caption) or None


def _dialogue_from(raw: Any, characters: dict[str, Character], label: str, line: int | None) -> list[DialogueLine]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StoryError(f"{label} dialogue must be a list of {{speaker, text}}, not {kind_of(raw)}", line)
    dialogue = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) - {"speaker", "text"} or "speaker" not in entry:
            raise StoryError(f"{label} dialogue entries must be mappings with 'speaker' and 'text'", line)
        if not isinstance(entry["speaker"], str):
            raise StoryError(
                f"{label} dialogue speaker must be a character name, not {kind_of(entry['speaker'])}", line
            )
        speaker = resolve_speaker(entry["speaker"], characters, label, line)
        said = entry.get("text")
        if not isinstance(said, str) or not said.strip():
            raise StoryError(f"{label} has an empty speech line for @{speaker}: give it a 'text'", line)
        check_brackets(said, label, line)
        check_text_tags(said, characters, label, line)
        dialogue.append(DialogueLine(speaker, norm(said)))
    return dialogue


# -------------------------------------------------------------------------------- identity panels


def _identity_from(raw: Any, characters: dict[str, Character], line: int | None) -> dict[str, list[int]]:
    """identity_panels as written (1-based panel numbers) to 0-based indices; range is checked later."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StoryError(
            f"identity_panels must be a mapping of character name to panel numbers, not {kind_of(raw)}", line
        )
    identity: dict[str, list[int]] = {}
    for name, numbers in raw.items():
        if not isinstance(name, str):
            raise StoryError(f"identity_panels: character name {name!r} must be text: put it in quotes", line)
        label = f"identity_panels for {name}"
        canonical = name_index(characters).get(name_key(name))
        if canonical is None:
            raise StoryError(f"{label} names an unknown character; known characters: {known_names(characters)}", line)
        identity[canonical] = _identity_indices(numbers, label, line)
    return identity


def _identity_indices(numbers: Any, label: str, line: int | None) -> list[int]:
    """1-based panel numbers (a list, or one number) -> 0-based indices."""
    if isinstance(numbers, int) and not isinstance(numbers, bool):
        numbers = [numbers]
    if not isinstance(numbers, list):
        raise StoryError(f"{label} must be a list of panel numbers, e.g. [1, 3, 4], not {kind_of(numbers)}", line)
    indices = []
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise StoryError(f"{label} has {number!r}: panel numbers are whole numbers starting at 1", line)
        indices.append(number - 1)
    return indices
