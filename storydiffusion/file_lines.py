"""Where in a YAML or JSON file a value is: the 1-based lines that errors about parsed data point at, found
again from the text only when a file has an error (composing it costs time a valid file never pays)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

__all__ = ["child_nodes", "line_of_mark", "line_of_named_path", "line_of_scalar", "line_of_second_key"]

# A key path as messages write it (``pages[0].rows[1].cells``, ``page.dpi``), or the key after "unknown key",
# "unknown side" or "unknown setting(s)" (which lives under the path written before it).
_NAMED_PATH = re.compile(
    r"unknown (?:key|side|setting\(s\)) (?:'([^']+)'|(\w+))|([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*)"
)
_PATH_PART = re.compile(r"\[(\d+)\]|\.?([A-Za-z_]\w*)")
# A JSON string (with the colon after it when it is an object's key) or a bracket.
_JSON_KEY_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"(?:\s*:)?|[\[\]{}]', re.S)


def line_of_scalar(text: str, wanted: Callable[[yaml.ScalarNode], bool] | None, is_json: bool = False) -> int | None:
    """The 1-based line of the first value or key (in the file's order) that ``wanted`` picks, found by
    composing the text again: YAML reads JSON too, once its tabs (between tokens, never inside a JSON string)
    are spaces. None when nothing is picked or the text does not compose."""
    if wanted is None:
        return None
    try:
        root = yaml.compose(text.replace("\t", " ") if is_json else text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None
    stack, seen = [root] if root is not None else [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # an alias repeats a node: once is enough
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and wanted(node):
            return line_of_mark(node.start_mark)
        stack.extend(reversed(child_nodes(node)))
    return None


def line_of_named_path(text: str, message: str, is_json: bool = False) -> int | None:
    """The 1-based line of the first key path that ``message`` names and the file has (``pages[0].rows[1]``,
    ``page.dpi``, ``unknown key 'x'``): for checks that see the parsed data, whose messages say where in it
    the mistake is but not on which line. None when the message names no place of the file."""
    try:
        root = yaml.compose(text.replace("\t", " ") if is_json else text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    # The key an "unknown key" names comes first (under the path written before it, else at the top).
    named: list[list[str | int]] = []
    before: list[str | int] = []
    for match in _NAMED_PATH.finditer(message):
        quoted, bare, written = match.groups()
        unknown = quoted or bare
        if unknown:
            named[:0] = [[*before, unknown], [unknown]]
        else:
            before = _path_parts(written)
            named.append(before)
    return next((line for parts in named if (line := _line_of_path(root, parts)) is not None), None)


def _path_parts(written: str) -> list[str | int]:
    return [int(index) if index else key for index, key in _PATH_PART.findall(written)]


def _line_of_path(root: yaml.Node, parts: list[str | int]) -> int | None:
    """The line of the key (or list item) at ``parts`` under ``root``; None unless the whole path is there."""
    node, line = root, None
    for part in parts:
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode) and part < len(node.value):
            node = node.value[part]
            line = line_of_mark(node.start_mark)
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            pair = next((pair for pair in node.value if getattr(pair[0], "value", None) == part), None)
            if pair is None:
                return None
            line, node = line_of_mark(pair[0].start_mark), pair[1]
        else:
            return None
    return line


def line_of_second_key(text: str, key: str) -> int | None:
    """The 1-based line where ``key`` comes a second time within one object of the JSON ``text``."""
    objects: list[set[str] | None] = []  # the keys seen so far in each open object (None: an array)
    for match in _JSON_KEY_OR_BRACKET.finditer(text):
        token = match.group()
        if token in ("{", "["):
            objects.append(set() if token == "{" else None)
        elif token in ("}", "]"):
            if objects:
                objects.pop()
        elif token.endswith(":") and objects and objects[-1] is not None:
            seen = json.loads(token[:-1].rstrip())
            if seen == key and seen in objects[-1]:
                return text.count("\n", 0, match.start()) + 1
            objects[-1].add(seen)
    return None


def child_nodes(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def line_of_mark(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None
