"""Stories: characters, panels, captions and dialogue, read from text boxes or a YAML/JSON file.

The pipeline only ever sees a validated :class:`Story`, so every mistake a user can make in a story
is caught here and reported with the line it sits on and what to write instead.

Text syntax (one panel per line, as in the original StoryDiffusion demo)::

    [Bob] opens the door, [Alice] waits outside # Late again. @Bob: Sorry! @Alice: Come in.

See ``docs/story-format.md`` for the full reference.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SettingsError, StoryError
from .settings import GenerationSettings

__all__ = [
    "Character",
    "DialogueLine",
    "Panel",
    "Story",
    "load_story",
    "parse_characters",
    "parse_panels",
    "story_from_text",
    "story_to_text",
    "validate_story",
    "NO_CHARACTER",
    "DEFAULT_TITLE",
    "STORY_KEYS",
    "PANEL_KEYS",
]

NO_CHARACTER = "NC"
DEFAULT_TITLE = "Untitled story"
STORY_KEYS = ("title", "style", "negative_prompt", "seed", "characters", "panels", "settings", "identity_panels")
PANEL_KEYS = ("prompt", "caption", "dialogue", "seed")
STORY_SUFFIXES = (".yaml", ".yml", ".json")

NO_PANELS = "the story has no panels: write one panel per line (in a story file, list them under 'panels:')"
NO_CHARACTER_MESSAGE = "names no character: add a [Name] tag, or [NC] for a panel without characters"

_TAG = re.compile(r"\[([^\[\]]*)\]")
_CHARACTER_LINE = re.compile(r"\[([^\[\]]*)\](.*)\Z", re.S)
# "@Name:" starts a speech line; the "@" may not follow a letter or digit, so "bob@example.com:" is text.
_SPEECH = re.compile(r"(?<![\w@])@([^\s@:\[\]][^@:\[\]\n]*?)\s*:")
_SPACES = re.compile(r"\s+")
_COMMAS = re.compile(r"\s*,[\s,]*")
_NAME_PUNCTUATION = frozenset(" -_.'\u2019")


# --------------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Character:
    """A recurring character: the description replaces its ``[Name]`` tag in every prompt, so the
    model is told the same appearance each time."""

    name: str
    description: str


@dataclass(frozen=True)
class DialogueLine:
    """One speech bubble; kept apart from the caption so the layout can draw it next to the speaker."""

    speaker: str
    text: str


@dataclass
class Panel:
    """One image of the story.

    ``prompt`` is kept as written (with ``[Name]`` tags) so the story can be saved and edited again;
    :meth:`Story.panel_prompt` gives the text the model sees. ``characters`` are the canonical names
    shown in the panel, in order of first appearance, and decide which identity each panel shares;
    it is empty for a panel without characters (``[NC]``).
    """

    prompt: str
    caption: str | None = None
    dialogue: list[DialogueLine] = field(default_factory=list)
    # An explicit seed for this panel only; None lets the pipeline derive one from the story seed.
    seed: int | None = None
    characters: tuple[str, ...] = ()


@dataclass
class Story:
    """A titled list of panels with the characters they show and the settings to draw them with."""

    title: str = DEFAULT_TITLE
    characters: dict[str, Character] = field(default_factory=dict)
    panels: list[Panel] = field(default_factory=list)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    # 0-based panel indices per character to build its identity from; an empty dict lets the
    # pipeline choose (the first panels that show the character).
    identity_panels: dict[str, list[int]] = field(default_factory=dict)

    def panel_prompt(self, i: int) -> str:
        """The prompt for panel ``i`` as the model sees it: tags replaced by descriptions.

        A character listed in the panel but not tagged in its prompt (the implicit character of a
        one-character story) has its description put in front.
        """
        panel = self.panels[i]
        index = _name_index(self.characters)
        tagged: list[str] = []

        def replace(match: re.Match[str]) -> str:
            key = _key(match.group(1))
            if key == NO_CHARACTER.casefold():
                return ""
            name = index.get(key)
            if name is None:
                raise StoryError(_unknown_character(f"panel {i + 1}", match.group(1), self.characters))
            tagged.append(name)
            return self.characters[name].description

        text = _TAG.sub(replace, panel.prompt)
        untagged = [
            self.characters[n].description for n in panel.characters if n not in tagged and n in self.characters
        ]
        return _tidy_prompt(", ".join([*untagged, text]))

    def panel_caption(self, i: int) -> str | None:
        """The caption of panel ``i`` with ``[Name]`` tags shown as bare names (never raw tags)."""
        caption = self.panels[i].caption
        if caption is None:
            return None
        return _names_for_tags(caption, self.characters) or None

    def panel_dialogue(self, i: int) -> list[DialogueLine]:
        """The speech lines of panel ``i`` with any ``[Name]`` tags in their text shown as names."""
        return [DialogueLine(d.speaker, _names_for_tags(d.text, self.characters)) for d in self.panels[i].dialogue]

    def character_panels(self) -> dict[str, list[int]]:
        """0-based indices of the panels each character appears in, for every character."""
        return {name: [i for i, p in enumerate(self.panels) if name in p.characters] for name in self.characters}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict in the story file format, so it can be saved and loaded again.

        ``identity_panels`` are written 1-based, as a user writes them in a story file.
        """
        return {
            "title": self.title,
            "characters": {name: c.description for name, c in self.characters.items()},
            "panels": [
                {
                    "prompt": p.prompt,
                    "caption": p.caption,
                    "dialogue": [{"speaker": d.speaker, "text": d.text} for d in p.dialogue],
                    "seed": p.seed,
                }
                for p in self.panels
            ],
            "settings": self.settings.to_dict(),
            "identity_panels": {name: [i + 1 for i in idx] for name, idx in self.identity_panels.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Story:
        """Build and validate a story from a dict in the story file format (what :meth:`to_dict` gives)."""
        if not isinstance(data, dict):
            raise StoryError(f"a story must be a mapping of keys ({', '.join(STORY_KEYS)}), not {_kind(data)}")
        return _story_from_mapping(data, {})


# ------------------------------------------------------------------------------------------- helpers


def _norm(text: str) -> str:
    """Trim and collapse runs of whitespace."""
    return _SPACES.sub(" ", text).strip()


def _key(name: str) -> str:
    """Lookup key for a character name: names match case-insensitively."""
    return _norm(name).casefold()


def _name_index(characters: dict[str, Character]) -> dict[str, str]:
    return {_key(name): name for name in characters}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _known(characters: dict[str, Character]) -> str:
    return ", ".join(characters) if characters else "none defined yet"


def _unknown_character(label: str, tag: str, characters: dict[str, Character]) -> str:
    name = _norm(tag)
    return (
        f"{label} names unknown character [{name}]; known characters: {_known(characters)}. "
        f"Add it to the characters (e.g. '[{name}] a short description') or fix the spelling"
    )


def _tidy_prompt(text: str) -> str:
    """No doubled spaces, no empty comma runs, no leading or trailing commas or spaces."""
    text = _COMMAS.sub(", ", _norm(text))
    return text.strip(" ,")


def _names_for_tags(text: str, characters: dict[str, Character]) -> str:
    """Replace ``[Name]`` tags by the canonical name (``[NC]`` and unknown-case tags handled)."""
    index = _name_index(characters)

    def replace(match: re.Match[str]) -> str:
        key = _key(match.group(1))
        if key == NO_CHARACTER.casefold():
            return ""
        return index.get(key, _norm(match.group(1)))

    return _norm(_TAG.sub(replace, text))


def _check_name(raw: str, line: int | None) -> str:
    """A valid character name, trimmed; StoryError otherwise."""
    name = _norm(raw)
    if not name:
        raise StoryError("a character name is empty: write the name inside the brackets, e.g. '[Bob] a tall man'", line)
    if name.casefold() == NO_CHARACTER.casefold():
        raise StoryError("NC is reserved for panels without characters: choose another character name", line)
    for ch in name:
        if ch not in _NAME_PUNCTUATION and unicodedata.category(ch)[0] not in "LMN":
            raise StoryError(
                f"character name {name!r} contains {ch!r}: names may only use letters, digits, spaces and - _ . '",
                line,
            )
    return name


def _add_character(characters: dict[str, Character], name: str, description: Any, line: int | None) -> None:
    if description is None or (isinstance(description, str) and not description.strip()):
        raise StoryError(
            f"character {name} has no description: write what they look like, e.g. '[{name}] a tall man with red hair'",
            line,
        )
    if not isinstance(description, str):
        raise StoryError(f"the description of character {name} must be text, not {_kind(description)}", line)
    description = _norm(description)
    if "[" in description or "]" in description:
        raise StoryError(f"the description of character {name} may not contain '[' or ']': remove the brackets", line)
    for existing in characters:
        if _key(existing) == _key(name):
            raise StoryError(
                f"character {name} is defined twice (names are case-insensitive): define each character once", line
            )
    characters[name] = Character(name, description)


def _check_brackets(text: str, label: str, line: int | None) -> None:
    """Every '[' closes with ']' before the next one opens."""
    open_at = None
    for column, ch in enumerate(text, 1):
        if ch == "[":
            if open_at is not None:
                raise StoryError(
                    f"{label} has an unbalanced '[' (column {open_at}): close each [Name] tag with ']' before the next '['",
                    line,
                )
            open_at = column
        elif ch == "]":
            if open_at is None:
                raise StoryError(f"{label} has an unbalanced ']' (column {column}): write tags as [Name]", line)
            open_at = None
    if open_at is not None:
        raise StoryError(f"{label} has an unbalanced '[' (column {open_at}): close the [Name] tag with ']'", line)


def _resolve(tag: str, characters: dict[str, Character], label: str, line: int | None) -> str:
    """Canonical name for a tag, case-insensitively; StoryError naming the known characters otherwise."""
    if not _norm(tag):
        raise StoryError(
            f"{label} has an empty tag []: write a character name inside the brackets, or [NC] for a panel without characters",
            line,
        )
    name = _name_index(characters).get(_key(tag))
    if name is None:
        raise StoryError(_unknown_character(label, tag, characters), line)
    return name


def _check_text_tags(text: str, characters: dict[str, Character], label: str, line: int | None) -> None:
    """Tags in captions and speech must name known characters (they are shown as the bare name)."""
    for tag in _TAG.findall(text):
        if _key(tag) != NO_CHARACTER.casefold():
            _resolve(tag, characters, label, line)


def _panel_characters(prompt: str, characters: dict[str, Character], label: str, line: int | None) -> tuple[str, ...]:
    """The characters a prompt shows, by the rules of the text syntax (tags, [NC], implicit single character)."""
    names: list[str] = []
    no_character = False
    for tag in _TAG.findall(prompt):
        if _key(tag) == NO_CHARACTER.casefold():
            no_character = True
            continue
        name = _resolve(tag, characters, label, line)
        if name not in names:
            names.append(name)
    if no_character and names:
        raise StoryError(
            f"{label} has [NC] together with [{names[0]}]: [NC] marks a panel without characters, "
            "so remove either [NC] or the other tags",
            line,
        )
    if not _tidy_prompt(_TAG.sub(" ", prompt)):
        raise StoryError(
            f"{label} has an empty prompt: describe what the panel shows after the [Name] tags and before any '#' caption",
            line,
        )
    if not names and not no_character:
        if len(characters) == 1:
            names = list(characters)
        else:
            raise StoryError(f"{label} {NO_CHARACTER_MESSAGE}", line)
    return tuple(names)


def _resolve_speaker(raw: str, characters: dict[str, Character], label: str, line: int | None) -> str:
    name = _name_index(characters).get(_key(raw))
    if name is None:
        raise StoryError(
            f"{label} has a speech line by unknown speaker @{_norm(raw)}; known characters: {_known(characters)}. "
            "Speakers must be characters: add it to the characters or fix the spelling",
            line,
        )
    return name


def _split_caption(
    text: str, characters: dict[str, Character], label: str, line: int | None
) -> tuple[str | None, list[DialogueLine]]:
    """Caption part of a panel line: the text up to the first '@Name:', then speech lines."""
    speeches = list(_SPEECH.finditer(text))
    caption = _norm(text[: speeches[0].start()] if speeches else text) or None
    if caption is not None:
        _check_text_tags(caption, characters, label, line)
    dialogue = []
    for n, match in enumerate(speeches):
        speaker = _resolve_speaker(match.group(1), characters, label, line)
        end = speeches[n + 1].start() if n + 1 < len(speeches) else len(text)
        said = _norm(text[match.end() : end])
        if not said:
            raise StoryError(
                f"{label} has an empty speech line for @{speaker}: write what they say after "
                f"'@{speaker}:' or remove it",
                line,
            )
        _check_text_tags(said, characters, label, line)
        dialogue.append(DialogueLine(speaker, said))
    return caption, dialogue


def _parse_panel_line(text: str, characters: dict[str, Character], label: str, line: int | None) -> Panel:
    _check_brackets(text, label, line)
    prompt, has_caption, rest = text.partition("#")
    prompt = prompt.strip()
    names = _panel_characters(prompt, characters, label, line)
    caption, dialogue = _split_caption(rest, characters, label, line) if has_caption else (None, [])
    return Panel(prompt=prompt, caption=caption, dialogue=dialogue, characters=names)


# ---------------------------------------------------------------------------------------- text form


def parse_characters(text: str) -> dict[str, Character]:
    """Characters from text, one per line: ``[Name] description``. Lines starting with '#' are comments."""
    characters: dict[str, Character] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _CHARACTER_LINE.match(stripped)
        if match is None:
            raise StoryError(
                "a character line must start with a [Name] tag followed by a description, "
                "e.g. '[Bob] a tall man with red hair'",
                number,
            )
        name = _check_name(match.group(1), number)
        _add_character(characters, name, match.group(2), number)
    return characters


def parse_panels(text: str, characters: dict[str, Character]) -> list[Panel]:
    """Panels from text, one per non-blank line: ``prompt with [Name] tags # caption @Name: speech``."""
    panels = []
    for number, raw in enumerate(text.splitlines(), 1):
        if raw.strip():
            panels.append(_parse_panel_line(raw, characters, "panel", number))
    if not panels:
        raise StoryError(NO_PANELS)
    return panels


def story_from_text(
    characters_text: str,
    panels_text: str,
    *,
    title: str = DEFAULT_TITLE,
    settings: GenerationSettings | None = None,
) -> Story:
    """A validated story from the two text boxes of the web UI."""
    characters = parse_characters(characters_text)
    panels = parse_panels(panels_text, characters)
    story = Story(
        title=_norm(title) or DEFAULT_TITLE,
        characters=characters,
        panels=panels,
        settings=settings if settings is not None else GenerationSettings(),
    )
    validate_story(story)
    return story


def story_to_text(story: Story) -> tuple[str, str]:
    """The characters and panels text boxes for ``story``: what ``story_from_text`` reads back."""
    characters = "\n".join(f"[{c.name}] {c.description}" for c in story.characters.values())
    lines = []
    for panel in story.panels:
        extra = " ".join(
            part for part in [panel.caption or ""] + [f"@{d.speaker}: {d.text}" for d in panel.dialogue] if part
        )
        lines.append(f"{panel.prompt} # {extra}" if extra else panel.prompt)
    return characters, "\n".join(lines)


# ---------------------------------------------------------------------------------------- file form


def load_story(path: str | os.PathLike[str]) -> Story:
    """Read and validate a story file (``.yaml``, ``.yml`` or ``.json``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STORY_SUFFIXES:
        raise StoryError(f"{path.name}: story files must end in .yaml, .yml or .json")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StoryError(f"story file {path} does not exist: check the path") from None
    except UnicodeDecodeError:
        raise StoryError(f"story file {path.name} is not UTF-8 text: save it as UTF-8") from None
    except OSError as exc:
        raise StoryError(f"cannot read story file {path}: {exc.strerror or exc}") from None

    lines: dict[str, Any] = {}
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoryError(f"{path.name} is not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "syntax error"
            raise StoryError(
                f"{path.name} is not valid YAML: {problem}. Put panel lines in quotes, "
                "especially when they start with '[' or contain ': ' or ' #'",
                mark.line + 1 if mark is not None else None,
            ) from None
        except yaml.YAMLError as exc:
            raise StoryError(f"{path.name} is not valid YAML: {exc}") from None
        lines = _yaml_lines(text)
    if data is None:
        raise StoryError(f"{path.name} is empty: a story file needs at least 'characters' and 'panels'")
    if not isinstance(data, dict):
        raise StoryError(f"{path.name} must be a mapping of keys ({', '.join(STORY_KEYS)}), not {_kind(data)}")
    return _story_from_mapping(data, lines)


def _yaml_lines(text: str) -> dict[str, Any]:
    """1-based file lines of top-level keys, panels and characters, so errors can point into the file."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    found: dict[str, Any] = {"keys": {}}
    if not isinstance(root, yaml.MappingNode):
        return found
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        found["keys"][key.value] = key.start_mark.line + 1
        if key.value == "panels" and isinstance(value, yaml.SequenceNode):
            found["panels"] = [item.start_mark.line + 1 for item in value.value]
        elif key.value == "characters" and isinstance(value, yaml.SequenceNode):
            found["characters"] = [item.start_mark.line + 1 for item in value.value]
        elif key.value == "characters" and isinstance(value, yaml.MappingNode):
            found["characters"] = [k.start_mark.line + 1 for k, _ in value.value]
    return found


def _at(lines: dict[str, Any], group: str, i: int) -> int | None:
    items = lines.get(group) or []
    return items[i] if i < len(items) else None


def _story_from_mapping(data: dict[str, Any], lines: dict[str, Any]) -> Story:
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
        raise StoryError(f"title must be text, not {_kind(title)}", key_lines.get("title"))
    settings = _settings_from(data, key_lines)
    characters = _characters_from(data.get("characters"), lines, key_lines.get("characters"))
    panels = _panels_from(data.get("panels"), characters, lines, key_lines.get("panels"))
    identity = _identity_from(data.get("identity_panels"), characters, key_lines.get("identity_panels"))
    story = Story(
        title=_norm(title) or DEFAULT_TITLE,
        characters=characters,
        panels=panels,
        settings=settings,
        identity_panels=identity,
    )
    validate_story(story)
    return story


def _settings_from(data: dict[str, Any], key_lines: dict[str, int]) -> GenerationSettings:
    raw = data.get("settings")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise StoryError(
            f"settings must be a mapping of setting names to values, not {_kind(raw)}", key_lines.get("settings")
        )
    try:
        settings = GenerationSettings.from_dict(raw)
    except SettingsError as exc:
        raise StoryError(str(exc), key_lines.get("settings")) from None
    except (TypeError, ValueError) as exc:
        raise StoryError(f"invalid settings: {exc}", key_lines.get("settings")) from None
    for name in ("style", "negative_prompt", "seed"):
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


def _characters_from(raw: Any, lines: dict[str, Any], line: int | None) -> dict[str, Character]:
    characters: dict[str, Character] = {}
    if raw is None:
        return characters
    if isinstance(raw, dict):
        entries = list(raw.items())
    elif isinstance(raw, list):
        entries = []
        for i, item in enumerate(raw):
            where = _at(lines, "characters", i)
            if not isinstance(item, dict) or "name" not in item:
                raise StoryError(
                    f"character {i + 1} must be a mapping with 'name' and 'description', not {_kind(item)}", where
                )
            extra = sorted(str(k) for k in item if k not in ("name", "description"))
            if extra:
                raise StoryError(
                    f"character {i + 1} has unknown key(s) {', '.join(extra)}; known keys: name, description", where
                )
            entries.append((item["name"], item.get("description")))
    else:
        raise StoryError(
            "characters must be a mapping of name to description, or a list of {name, description}, "
            f"not {_kind(raw)}",
            line,
        )
    for i, (name, description) in enumerate(entries):
        where = _at(lines, "characters", i)
        if not isinstance(name, str):
            raise StoryError(f"character name {name!r} must be text: put it in quotes", where)
        _add_character(characters, _check_name(name, where), description, where)
    return characters


def _panels_from(raw: Any, characters: dict[str, Character], lines: dict[str, Any], line: int | None) -> list[Panel]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise StoryError(f"panels must be a list of panels, not {_kind(raw)}", line)
    return [_panel_from_item(item, characters, f"panel {i + 1}", _at(lines, "panels", i)) for i, item in enumerate(raw)]


def _panel_from_item(item: Any, characters: dict[str, Character], label: str, line: int | None) -> Panel:
    if isinstance(item, str):
        return _parse_panel_line(item, characters, label, line)
    if isinstance(item, list):
        raise StoryError(
            f"{label} is a list, not text: put the panel in quotes when it starts with a [Name] tag, "
            'e.g. - "[Bob] opens the door"',
            line,
        )
    if not isinstance(item, dict):
        raise StoryError(f"{label} must be text or a mapping with {', '.join(PANEL_KEYS)}, not {_kind(item)}", line)
    extra = [str(k) for k in item if k not in PANEL_KEYS]
    if extra:
        raise StoryError(f"{label} has unknown key(s) {', '.join(extra)}; known keys: {', '.join(PANEL_KEYS)}", line)
    prompt = item.get("prompt")
    if not isinstance(prompt, str):
        raise StoryError(f"{label} needs a 'prompt' with the text of the panel, got {_kind(prompt)}", line)
    _check_brackets(prompt, label, line)
    names = _panel_characters(prompt, characters, label, line)

    caption = item.get("caption")
    if caption is not None:
        if not isinstance(caption, str):
            caption = str(caption) if isinstance(caption, (int, float)) and not isinstance(caption, bool) else caption
        if not isinstance(caption, str):
            raise StoryError(f"{label} caption must be text, not {_kind(caption)}", line)
        _check_brackets(caption, label, line)
        _check_text_tags(caption, characters, label, line)
        caption = _norm(caption) or None

    dialogue_raw = item.get("dialogue")
    if dialogue_raw is None:
        dialogue_raw = []
    if not isinstance(dialogue_raw, list):
        raise StoryError(f"{label} dialogue must be a list of {{speaker, text}}, not {_kind(dialogue_raw)}", line)
    dialogue = []
    for entry in dialogue_raw:
        if not isinstance(entry, dict) or set(entry) - {"speaker", "text"} or "speaker" not in entry:
            raise StoryError(f"{label} dialogue entries must be mappings with 'speaker' and 'text'", line)
        if not isinstance(entry["speaker"], str):
            raise StoryError(f"{label} dialogue speaker must be a character name, not {_kind(entry['speaker'])}", line)
        speaker = _resolve_speaker(entry["speaker"], characters, label, line)
        said = entry.get("text")
        if not isinstance(said, str) or not said.strip():
            raise StoryError(f"{label} has an empty speech line for @{speaker}: give it a 'text'", line)
        _check_brackets(said, label, line)
        _check_text_tags(said, characters, label, line)
        dialogue.append(DialogueLine(speaker, _norm(said)))

    seed = item.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise StoryError(f"{label} seed must be a whole number, not {_kind(seed)}", line)
    return Panel(prompt=prompt.strip(), caption=caption, dialogue=dialogue, seed=seed, characters=names)


def _identity_from(raw: Any, characters: dict[str, Character], line: int | None) -> dict[str, list[int]]:
    """identity_panels as written (1-based panel numbers) to 0-based indices; range is checked later."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StoryError(
            f"identity_panels must be a mapping of character name to panel numbers, not {_kind(raw)}", line
        )
    identity: dict[str, list[int]] = {}
    for name, numbers in raw.items():
        label = f"identity_panels for {name}"
        if not isinstance(name, str):
            raise StoryError(f"identity_panels: character name {name!r} must be text: put it in quotes", line)
        canonical = _name_index(characters).get(_key(name))
        if canonical is None:
            raise StoryError(f"{label} names an unknown character; known characters: {_known(characters)}", line)
        if isinstance(numbers, int) and not isinstance(numbers, bool):
            numbers = [numbers]
        if not isinstance(numbers, list):
            raise StoryError(f"{label} must be a list of panel numbers, e.g. [1, 3, 4], not {_kind(numbers)}", line)
        indices = []
        for number in numbers:
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise StoryError(f"{label} has {number!r}: panel numbers are whole numbers starting at 1", line)
            indices.append(number - 1)
        identity[canonical] = indices
    return identity


# ---------------------------------------------------------------------------------------- validation


def validate_story(story: Story) -> None:
    """Raise StoryError for anything that would stop or spoil a run; do nothing for a good story.

    Catches what the parsers catch, for stories built in code, plus the settings, the panel limit
    and ``identity_panels``.
    """
    try:
        story.settings.validate()
    except SettingsError as exc:
        raise StoryError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise StoryError(f"invalid settings: {exc}") from None
    settings = story.settings
    if settings.style is not None and (not isinstance(settings.style, str) or not settings.style.strip()):
        raise StoryError(f"style must be the name of a style preset, got {settings.style!r}")
    if not isinstance(settings.negative_prompt, str):
        raise StoryError(f"negative_prompt must be text, not {_kind(settings.negative_prompt)}")
    if not isinstance(story.title, str):
        raise StoryError(f"title must be text, not {_kind(story.title)}")

    seen: dict[str, str] = {}
    for name, character in story.characters.items():
        if not isinstance(character, Character) or character.name != name:
            raise StoryError(f"characters[{name!r}] must be Character({name!r}, description)")
        _check_name(name, None)
        if _norm(name) != name:
            raise StoryError(f"character name {name!r} has extra spaces: write it as {_norm(name)!r}")
        if not isinstance(character.description, str) or not character.description.strip():
            raise StoryError(f"character {name} has no description: write what they look like")
        if "[" in character.description or "]" in character.description:
            raise StoryError(f"the description of character {name} may not contain '[' or ']': remove the brackets")
        if _key(name) in seen:
            raise StoryError(
                f"character {name} is defined twice (names are case-insensitive): define each character once"
            )
        seen[_key(name)] = name

    if not story.panels:
        raise StoryError(NO_PANELS)
    count = len(story.panels)
    if count > settings.max_panels:
        raise StoryError(
            f"the story has {count} panels but max_panels is {settings.max_panels}: "
            "split it into several stories or raise max_panels"
        )

    for i, panel in enumerate(story.panels):
        label = f"panel {i + 1}"
        if not isinstance(panel.prompt, str):
            raise StoryError(f"{label} prompt must be text, not {_kind(panel.prompt)}")
        _check_brackets(panel.prompt, label, None)
        expected = _panel_characters(panel.prompt, story.characters, label, None)
        for name in panel.characters:
            if name not in story.characters:
                raise StoryError(_unknown_character(label, name, story.characters))
        if tuple(panel.characters) != expected:
            raise StoryError(
                f"{label} lists characters ({', '.join(panel.characters) or 'none'}) but its prompt shows "
                f"({', '.join(expected) or 'none'}): make the characters match the [Name] tags of the prompt "
                "(and write [NC] in the prompt of a panel without characters)"
            )
        if panel.caption is not None:
            if not isinstance(panel.caption, str):
                raise StoryError(f"{label} caption must be text, not {_kind(panel.caption)}")
            _check_brackets(panel.caption, label, None)
            _check_text_tags(panel.caption, story.characters, label, None)
        for line in panel.dialogue:
            if line.speaker not in story.characters:
                raise StoryError(
                    f"{label} has a speech line by unknown speaker @{line.speaker}; known characters: "
                    f"{_known(story.characters)}. Speakers must be characters: add it to the characters or fix the spelling"
                )
            if not isinstance(line.text, str) or not line.text.strip():
                raise StoryError(f"{label} has an empty speech line for @{line.speaker}: write what they say")
            _check_brackets(line.text, label, None)
            _check_text_tags(line.text, story.characters, label, None)
        if panel.seed is not None and (
            isinstance(panel.seed, bool) or not isinstance(panel.seed, int) or not 0 <= panel.seed < 2**63
        ):
            raise StoryError(f"{label} seed must be an integer 0..2**63-1, got {panel.seed!r}")

    owner: dict[int, str] = {}
    for name, indices in story.identity_panels.items():
        label = f"identity_panels for {name}"
        if name not in story.characters:
            raise StoryError(f"{label} names an unknown character; known characters: {_known(story.characters)}")
        if not indices:
            raise StoryError(
                f"{label} is empty: list at least one panel number, or leave {name} out to choose automatically"
            )
        if len(set(indices)) != len(indices):
            raise StoryError(f"{label} lists the same panel twice: list each panel once")
        for index in indices:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
                shown = index + 1 if isinstance(index, int) and not isinstance(index, bool) else index
                raise StoryError(
                    f"{label}: panel {shown} does not exist; the story has {count} panels, numbered from 1"
                )
            if name not in story.panels[index].characters:
                raise StoryError(f"{label}: panel {index + 1} does not show {name}: pick panels tagged [{name}]")
            if index in owner:
                raise StoryError(
                    f"panel {index + 1} is in the identity_panels of both {owner[index]} and {name}: "
                    "give each character its own identity panels"
                )
            owner[index] = name
