"""Reading story files: YAML or JSON text -> a mapping (with file lines for errors) -> a Story."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import StoryError
from .mapping import STORY_KEYS, story_from_mapping
from .model import Story
from .names import kind_of

STORY_SUFFIXES = (".yaml", ".yml", ".json")


def load_story(path: str | os.PathLike[str]) -> Story:
    """Read and validate a story file (``.yaml``, ``.yml`` or ``.json``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in STORY_SUFFIXES:
        raise StoryError(f"{path.name}: story files must end in .yaml, .yml or .json")
    text = _read_text(path)
    if suffix == ".json":
        data, lines = _parse_json(text, path.name), {}
    else:
        data, lines = _parse_yaml(text, path.name), yaml_lines(text)
    if data is None:
        raise StoryError(f"{path.name} is empty: a story file needs at least 'characters' and 'panels'")
    if not isinstance(data, dict):
        raise StoryError(f"{path.name} must be a mapping of keys ({', '.join(STORY_KEYS)}), not {kind_of(data)}")
    return story_from_mapping(data, lines)


def _read_text(path: Path) -> str:
    """The file as text; ``utf-8-sig`` so a byte-order mark from a Windows editor is not part of the first key."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise StoryError(f"story file {path} does not exist: check the path") from None
    except UnicodeDecodeError:
        raise StoryError(f"story file {path.name} is not UTF-8 text: save it as UTF-8") from None
    except OSError as exc:
        raise StoryError(f"cannot read story file {path}: {exc.strerror or exc}") from None


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StoryError(f"{name} is not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        raise StoryError(
            f"{name} is not valid YAML: {problem}. Put panel lines in quotes, "
            "especially when they start with '[' or contain ': ' or ' #'",
            mark.line + 1 if mark is not None else None,
        ) from None
    except yaml.YAMLError as exc:
        raise StoryError(f"{name} is not valid YAML: {exc}") from None


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
    return found
