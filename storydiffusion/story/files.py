"""Reading story files: YAML or JSON text -> a mapping (with file lines for errors) -> a Story."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import StoryError, shown, wrong_kind
from ..file_lines import line_of_scalar
from ..settings import control_character, control_character_message
from ..structured import InputFileError, parse_json, parse_yaml, read_text
from .mapping import STORY_KEYS, story_from_mapping
from .model import Story

STORY_SUFFIXES = (".yaml", ".yml", ".json")


def load_story(path: str | os.PathLike[str]) -> Story:
    """Read and validate a story file (``.yaml``, ``.yml`` or ``.json``)."""
    if not os.fspath(path).strip():  # Path("") is the current folder, whose name is ""
        raise StoryError("the story file's name is empty: give the path of a .yaml, .yml or .json story file")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STORY_SUFFIXES and path.is_dir():
        raise StoryError(f"{path.name or path} is a folder, not a story file: give a .yaml, .yml or .json file in it")
    if suffix not in STORY_SUFFIXES and path.name.lower() in STORY_SUFFIXES:  # ".yaml": a suffix, no name
        raise StoryError(f"{path.name} has a suffix but no name: give the story file a name, e.g. story{path.name}")
    if suffix not in STORY_SUFFIXES:
        raise StoryError(f"{path.name}: story files must end in .yaml, .yml or .json")
    text = _read_text(path)
    if not text.strip():  # JSON would call it invalid; it is empty, whatever its suffix
        raise StoryError(f"{path.name} is empty: a story file needs at least 'characters' and 'panels'")
    data = _parse_json(text, path.name) if suffix == ".json" else _parse_yaml(text, path.name)
    if data is None:
        raise StoryError(f"{path.name} is empty: a story file needs at least 'characters' and 'panels'")
    if not isinstance(data, dict):
        raise StoryError(wrong_kind(path.name, f"a mapping of keys ({', '.join(STORY_KEYS)})", data))
    try:
        _refuse_control_characters(data, path.name)
    except StoryError as error:
        line = line_of_scalar(text, lambda node: control_character(node.value) is not None, is_json=suffix == ".json")
        raise StoryError(str(error), line) from None
    try:
        story = story_from_mapping(data, {}, path.parent)
    except StoryError as error:
        if error.line is not None:
            raise
        # Only a file with an error needs its lines, found by composing it again (YAML reads JSON too, once its
        # tabs, whitespace between tokens and never inside a JSON string, are spaces): the same error, now with
        # the line it names.
        lines = yaml_lines(text.replace("\t", " ") if suffix == ".json" else text)
        story = story_from_mapping(data, lines, path.parent)
    _check_pictures(story, path, text, suffix == ".json")
    return story


def _check_pictures(story: Story, path: Path, text: str, is_json: bool) -> None:
    """Every photo and control image the file names is a file: told now, with its line and as the file writes
    it, rather than when the run reaches it (by then as a full path)."""
    folder = os.path.abspath(path.parent)
    named = [(f"characters.{name}.reference", c.reference) for name, c in story.characters.items() if c.reference]
    named += [(f"panel {i + 1}: control.image", p.control.image) for i, p in enumerate(story.panels) if p.control]
    missing = next(((where, picture) for where, picture in named if not os.path.isfile(picture)), None)
    if missing is None:
        return
    where, picture = missing
    written: list[str] = []  # the path as the file writes it, met while its line is looked for

    def names_it(node: yaml.ScalarNode) -> bool:
        if isinstance(node.value, str) and os.path.abspath(os.path.join(folder, node.value.strip())) == picture:
            written.append(node.value.strip())
        return bool(written)

    line = line_of_scalar(text, names_it, is_json=is_json)
    what = "is a folder, not an image" if os.path.isdir(picture) else "does not exist"
    shown_path = written[0] if written else os.path.relpath(picture, folder)
    raise StoryError(
        f"{where}: {shown(shown_path)} {what}: check the name; a relative path is read from the folder of {path.name}",
        line,
    )


def _refuse_control_characters(value: Any, where: str) -> None:
    """No text of a story holds a control character (NUL, ESC, ...), which YAML's reader refuses in the file
    but which both formats let in through escapes such as ``\\u0000``: it would reach prompts, pages and
    terminals."""
    if isinstance(value, str):
        if (found := control_character(value)) is not None:
            raise StoryError(control_character_message(where, found))
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_control_characters(key, where)
            _refuse_control_characters(item, f"{where}: {key}" if isinstance(key, str) and len(key) <= 60 else where)
    elif isinstance(value, list):
        for number, item in enumerate(value, 1):
            _refuse_control_characters(item, f"{where}, item {number}")


def _read_text(path: Path) -> str:
    try:
        return read_text(path, "story file")
    except InputFileError as error:
        raise StoryError(error.message, error.line) from None


def _parse_json(text: str, name: str) -> Any:
    try:
        return parse_json(text, name)
    except InputFileError as error:
        raise StoryError(error.message, error.line) from None


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return parse_yaml(text, name)
    except InputFileError as error:
        hint = ""
        if "is not valid YAML" in error.message:
            hint = _half_quoted_hint(text, error.line)
            if not hint and _near_an_unquoted_item(text, error.line):
                hint = ". Put panel lines in quotes, especially when they start with '[' or contain ': ' or ' #'"
        raise StoryError(error.message + hint, error.line) from None


def _half_quoted_hint(text: str, line: int | None) -> str:
    """The hint for a list item whose quotes close before its text ends (``- "[Ann] waves" hello``): YAML
    reads the quoted part as the item and stumbles on the rest. Empty when no nearby item is like that."""
    if line is None:
        return ""
    for row in text.splitlines()[max(0, line - 2) : line]:
        item = re.match(r"\s*-\s+(?P<quoted>\"(?:[^\"\\]|\\.)*\"|'(?:[^']|'')*')(?P<rest>.*)$", row)
        rest = item["rest"].strip() if item else ""
        if rest and not rest.startswith("#"):
            return (
                f". The quotes of a panel line close before its end: {shown(rest)} follows them; "
                'put the whole line in quotes, e.g. - "[Ann] waves, smiling # A caption"'
            )
    return ""


def _near_an_unquoted_item(text: str, line: int | None) -> bool:
    """Whether the YAML error at ``line`` (or the line before) may be an unquoted panel line, the usual
    cause; a tab used as indent or a second document gets its own message without the hint."""
    if line is None:
        return True
    nearby = text.splitlines()[max(0, line - 2) : line]
    items = (re.match(r"\s*-(?:\s+(.*)|$)", row) for row in nearby)  # "- item", never a "---" document mark
    return any(item is not None and not (item.group(1) or "").startswith(("'", '"')) for item in items)


def yaml_lines(text: str) -> dict[str, Any]:
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
        elif key.value == "settings" and isinstance(value, yaml.MappingNode):
            found["settings"] = {
                k.value: k.start_mark.line + 1 for k, _ in value.value if isinstance(k, yaml.ScalarNode)
            }
    return found
