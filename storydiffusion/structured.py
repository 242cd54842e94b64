"""Reading YAML and JSON that users hand us: bounded in size, depth and expansion, and unambiguous.

Story files, layout templates, run manifests and project files all come through here, so the same
limits hold everywhere: the file's size is checked before it is read, nesting depth before it is
parsed (deep nesting is an input error, never a RecursionError), YAML aliases may not expand past
a node budget (the "billion laughs"), explicit YAML tags and duplicate keys are refused, JSON's
non-standard NaN and Infinity are refused naming their key path, and so is text that is not text
(a lone surrogate such as ``"\\ud800"``, which no file can hold). Only regular files are read: a named
pipe or a device would block or never end.

YAML plain scalars are read by the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: only ``true``/``false``
are booleans and only plain decimal numbers are numbers, so a character called ``No``, ``mode: off``, a
caption ``1:30`` (YAML 1.1: the number 90) or a title ``2024-05-01`` (YAML 1.1: a date) stay the text the
user wrote.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import StoryDiffusionError
from .file_lines import child_nodes, line_of_mark, line_of_scalar, line_of_second_key

MAX_FILE_BYTES = 4 * 2**20
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_NUMBER_CHARS = 100  # far beyond any setting; Python refuses to read integers of over 4,300 digits at all

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "InputFileError",
    "check_regular_file",
    "decode_text",
    "parse_json",
    "parse_yaml",
    "read_text",
]

_DEPTH_UP = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_YAML_INT = "tag:yaml.org,2002:int"
_DEPTH_DOWN = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
# YAML's longest implicit key: a longer one reads as text, and the ':' after it as an error.
MAX_YAML_KEY_CHARS = 1024
_JSON_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


class _CoreSchemaLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.2 core schema's implicit types (null, bool, int, float) and no
    others: no yes/no/on/off booleans, sexagesimal or octal numbers, dates, or the ``=`` value tag that has
    no constructor."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = self.construct_scalar(node)
        if value.startswith(("0x", "0o")):
            return int(value[2:], 16 if value[1] == "x" else 8)
        return int(value)  # decimal, leading zeros included: YAML 1.2 has no 0-prefixed octal


# (type, pattern, first characters) from the YAML 1.2 spec, section 10.3, except that a fraction keeps its
# decimal point as in YAML 1.1 (1e9 stays the text written, which a message can then quote as written)
_CORE_SCHEMA = (
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "float",
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
    ("merge", r"^(?:<<)$", ["<"]),
)


def _use_core_schema(loader: type[yaml.SafeLoader]) -> None:
    loader.yaml_implicit_resolvers = {}  # the class's own table: SafeLoader's stays untouched
    for kind, pattern, first in _CORE_SCHEMA:
        loader.add_implicit_resolver(f"tag:yaml.org,2002:{kind}", re.compile(pattern), first)
    loader.add_constructor("tag:yaml.org,2002:int", loader.construct_yaml_int)
    loader.add_constructor("tag:yaml.org,2002:merge", loader.construct_yaml_str)  # "<<" as a value is text


_use_core_schema(_CoreSchemaLoader)


class InputFileError(StoryDiffusionError, ValueError):
    """A structured file is too large, too deep, ambiguous or not valid; ``line`` is 1-based when known.
    ``culprit``: picks the value the message names among the file's composed scalars, so that a caller
    holding the text finds its line (``line_of_scalar``) when the parsed data alone could not tell it."""

    def __init__(self, message: str, line: int | None = None, culprit: Callable[[yaml.ScalarNode], bool] | None = None):
        self.message, self.line, self.culprit = message, line, culprit
        super().__init__(f"line {line}: {message}" if line is not None else message)


def check_regular_file(path: str | os.PathLike[str], what: str) -> int:
    """The size of ``path``, refused unless it is a regular file: opening a named pipe blocks until
    someone writes to it, and a device may never end, so this runs before any reader opens a user's file."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist: check the path") from None
    except OSError as error:
        raise InputFileError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if stat.S_ISDIR(status.st_mode):
        raise InputFileError(f"cannot read {what} {path}: it is a folder, give the path of a file")
    if not stat.S_ISREG(status.st_mode):
        raise InputFileError(
            f"cannot read {what} {path}: it is not a regular file (a pipe, socket or device): give the path of a file"
        )
    return status.st_size


def read_text(path: str | os.PathLike[str], what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The file as UTF-8 text (a byte-order mark is dropped), refused before reading when too large."""
    path = Path(path)
    size = check_regular_file(path, what)
    if size > max_bytes:
        raise InputFileError(
            f"{what} {path.name} is {_size(size)}, more than the {_size(max_bytes)} allowed: check that it is the right file"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputFileError(f"{what} {path} does not exist: check the path") from None
    except OSError as error:
        raise InputFileError(f"cannot read {what} {path}: {error.strerror or error}") from None
    if len(data) > max_bytes:  # the file grew while we looked
        raise InputFileError(f"{what} {path.name} is more than the {_size(max_bytes)} allowed")
    return decode_text(data, f"{what} {path.name}")


def decode_text(data: bytes, label: str) -> str:
    """Bytes of a text file as UTF-8 (a byte-order mark is dropped); UTF-16 and other encodings are refused
    by name, saying how to save the file."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        found = " (it is UTF-16)" if utf16 else ""
        raise InputFileError(f"{label} is not UTF-8 text{found}: save it as UTF-8") from None


def parse_yaml(text: str, name: str) -> Any:
    """Safe YAML with the limits above; syntax errors keep PyYAML's line."""
    try:
        _check_yaml_tokens(text, name)
        loader = _CoreSchemaLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _check_yaml_nodes(root, name)
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "syntax error"
        if error.context and problem.startswith("but "):  # "expected a single document ..., but found another"
            problem = f"{error.context}, {problem}"
        if mark is not None and mark.column > MAX_YAML_KEY_CHARS and ("mapping values" in problem or "':'" in problem):
            problem += (
                f": the key before this ':' is longer than the {MAX_YAML_KEY_CHARS} characters YAML allows "
                "a key; shorten it, or, if it is text rather than a key, put all of it in quotes"
            )
        if "'\\t'" in problem:
            problem += ": YAML indents with spaces only; replace the tabs at the start of the line with spaces"
        raise InputFileError(f"{name} is not valid YAML: {problem}", line_of_mark(mark)) from None
    except yaml.reader.ReaderError as error:  # a character YAML refuses anywhere: a control character
        found = f"U+{error.character:04X}" if isinstance(error.character, int) else "a character that is not text"
        raise InputFileError(
            f"{name} holds the control character {found}: remove it (only tabs and line breaks may appear in text)",
            text.count("\n", 0, error.position) + 1 if isinstance(error.position, int) else None,
        ) from None
    except yaml.YAMLError as error:
        raise InputFileError(f"{name} is not valid YAML: {error}") from None
    except RecursionError:  # a guard behind the depth check, never expected
        raise InputFileError(f"{name} is nested too deeply: at most {MAX_DEPTH} levels") from None
    try:
        _check_text(data, name)
    except InputFileError as error:
        raise InputFileError(error.message, error.line or line_of_scalar(text, error.culprit)) from None
    return data


def parse_json(text: str, name: str) -> Any:
    """Standard JSON with the limits above: no duplicate keys, no NaN or Infinity, only encodable text."""
    depth = 0
    for match in _JSON_STRING_OR_BRACKET.finditer(text):
        bracket = match.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputFileError(_too_deep(name), text.count("\n", 0, match.start()) + 1)
        elif bracket in ("]", "}"):
            depth -= 1
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys(name), parse_int=_bounded_int(name))
    except _DuplicateKey as error:
        raise InputFileError(error.message, line_of_second_key(text, error.key)) from None
    except json.JSONDecodeError as error:
        raise InputFileError(f"{name} is not valid JSON: {error.msg} (column {error.colno})", error.lineno) from None
    except RecursionError:
        raise InputFileError(_too_deep(name)) from None
    try:
        _check_numbers(data, name)
        _check_text(data, name)
    except InputFileError as error:  # the line, found again only for a file with an error
        raise InputFileError(error.message, error.line or line_of_scalar(text, error.culprit, is_json=True)) from None
    return data


def plain_digits(text: str) -> bool:
    """Whether ``text`` is a whole number written in ASCII digits (``str.isdigit`` also takes '²' and '١٢٣')."""
    return text.isascii() and text.isdigit()


def _long_number(name: str, digits: str) -> str:
    return (
        f"{name}: the number {digits[:12]}… has {len(digits)} characters, more than the {MAX_NUMBER_CHARS} a "
        "number may have here: write a smaller number"
    )


def _bounded_int(name: str):
    """JSON's integers, refused by name when longer than any setting could use (int() would raise ValueError)."""

    def parse(digits: str) -> int:
        if len(digits) > MAX_NUMBER_CHARS:
            raise InputFileError(_long_number(name, digits))
        return int(digits)

    return parse


def _values(data: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key path, value) of parsed data, keys included, depth first; depth is bounded by MAX_DEPTH."""
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _values(key, f"{path} key" if path else "a key")
            yield from _values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _values(value, f"{path}[{i}]")


def _check_numbers(data: Any, name: str) -> None:
    """NaN, Infinity and numbers too large for a float (1e999) are not JSON numbers: refused by key path."""
    for path, value in _values(data):
        if isinstance(value, float) and not math.isfinite(value):
            spelled = "NaN" if math.isnan(value) else ("-Infinity" if value < 0 else "Infinity")
            where = _shown_path(path) if path else "the file"
            message = f"{name}: {where} is {spelled}, which is not a number: write a finite number"
            raise InputFileError(message, culprit=_unquoted_non_finite)


def _unquoted_non_finite(node: yaml.ScalarNode) -> bool:
    """A JSON number that is not finite, as YAML composes it: NaN, Infinity, or one too large for a float."""
    if node.style is not None:  # quoted: text, not a number
        return False
    try:
        return not math.isfinite(float(node.value))
    except ValueError:
        return node.value in ("NaN", "Infinity", "-Infinity")


def _check_text(data: Any, name: str) -> None:
    """A lone surrogate (``"\\ud800"`` in JSON) parses but cannot be written back as UTF-8: refused here,
    not by the writer of a manifest half-way through a run."""
    for path, value in _values(data):
        if isinstance(value, str) and not _is_encodable(value):
            surrogate = next(ch for ch in value if not _is_encodable(ch))
            where = _shown_path(path) if path else "the file"
            raise InputFileError(
                f"{name}: {where} holds a lone surrogate {surrogate.encode('unicode_escape').decode()}, "
                "which is not text: write the character itself or remove it",
                culprit=lambda node: not _is_encodable(node.value),
            )


def _is_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown_path(path: str) -> str:
    """A key path as a message can print it: surrogates in keys escaped, very long keys cut short."""
    shown = path.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if len(shown) <= 200 else shown[:200] + "..."


def _check_yaml_tokens(text: str, name: str) -> None:
    """Depth, tags and the count of written values, from the token stream: the scanner is not recursive, the
    composer is, and a file of too many values is refused here, before the slower composer reads all of it."""
    depth = scalars = 0
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.ScalarToken):
            scalars += 1  # each becomes a value of its own (keys included), so these alone may exceed the budget
            if scalars > MAX_NODES:
                raise InputFileError(_too_many_values(name, False), line_of_mark(token.start_mark))
        elif isinstance(token, _DEPTH_UP):
            depth += 1
            if depth > MAX_DEPTH:
                raise InputFileError(_too_deep(name), line_of_mark(token.start_mark))
        elif isinstance(token, _DEPTH_DOWN):
            depth -= 1
        elif isinstance(token, yaml.TagToken):
            handle, suffix = token.value
            raise InputFileError(
                f"{name} uses the YAML tag {(handle or '') + suffix!r}: tags are not allowed here, remove it "
                "(quote the value if it should be text)",
                line_of_mark(token.start_mark),
            )


def _check_yaml_nodes(root: yaml.Node, name: str) -> None:
    """Duplicate keys, and how many values the document holds once its aliases are expanded."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    aliased = False  # a node met twice is one an alias (*name) repeats
    open_nodes: set[int] = set()  # met, their children not all counted yet: the path from the root
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            aliased = True
            continue
        children = child_nodes(node)
        if isinstance(node, yaml.ScalarNode) and node.tag == _YAML_INT and len(node.value) > MAX_NUMBER_CHARS:
            raise InputFileError(_long_number(name, node.value), line_of_mark(node.start_mark))
        if not children_done:
            if isinstance(node, yaml.MappingNode):
                _check_unique_yaml_keys(node, name)
            if any(id(child) in open_nodes for child in children):  # an alias inside its own anchor
                raise InputFileError(
                    f"{name} has a value that holds itself through a YAML alias (*name inside its own &name): "
                    "it would never end; write the value out",
                    line_of_mark(node.start_mark),
                )
            open_nodes.add(id(node))
            stack.append((node, True))
            aliased = aliased or any(id(child) in sizes for child in children)
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 1) for child in children)
        if sizes[id(node)] > MAX_NODES:
            raise InputFileError(_too_many_values(name, aliased), line_of_mark(node.start_mark))


def _too_many_values(name: str, aliased: bool) -> str:
    if aliased:
        return (
            f"{name} expands to more than {MAX_NODES:,} values through YAML aliases (*name): "
            "write the values out instead of repeating an anchor"
        )
    return f"{name} holds more than {MAX_NODES:,} values: no story needs as many; split it or write fewer"


def _check_unique_yaml_keys(node: yaml.MappingNode, name: str) -> None:
    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if (key.tag, key.value) in seen:
                fix = "merge several in one: <<: [*a, *b]" if key.tag.endswith(":merge") else "keep only one"
                raise InputFileError(
                    f"{name} has the key {key.value!r} twice in one mapping: {fix}", line_of_mark(key.start_mark)
                )
            seen.add((key.tag, key.value))


class _DuplicateKey(InputFileError):
    """A key given twice in one JSON object; ``json`` does not say where, so the key is kept to find it."""

    def __init__(self, name: str, key: str):
        super().__init__(f"{name} has the key {key!r} twice in one object: keep only one")
        self.key = key


def _unique_keys(name: str):
    def pairs_to_dict(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise _DuplicateKey(name, key)
            result[key] = value
        return result

    return pairs_to_dict


def _too_deep(name: str) -> str:
    return f"{name} is nested more than {MAX_DEPTH} levels deep: check for runaway brackets or indentation"


def _size(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size:,} bytes"
