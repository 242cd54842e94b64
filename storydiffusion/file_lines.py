"""Where in a YAML or JSON file a value is: the 1-based lines that errors about parsed data point at, found
again from the text only when a file has an error (composing it costs time a valid file never pays)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import yaml

__all__ = ["child_nodes", "line_of_mark", "line_of_scalar", "line_of_second_key"]

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
