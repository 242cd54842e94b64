"""Character names and ``[Name]`` tags: how names are tidied, matched and put in place of tags.

Every reader of a story (the text syntax, the file reader, the validator, the prompt builder) matches
names the same way, so the rules live here once: names match case-insensitively and in any Unicode
form (NFKC) with runs of spaces collapsed, and ``[NC]`` marks a panel without characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

NO_CHARACTER = "NC"

TAG = re.compile(r"\[([^\[\]]*)\]")
_SPACES = re.compile(r"\s+")
_COMMAS = re.compile(r"\s*,[\s,]*")


def norm(text: str) -> str:
    """Trim and collapse runs of whitespace."""
    return _SPACES.sub(" ", text).strip()


def name_key(name: str) -> str:
    """Lookup key for a character name: names match case-insensitively and in any Unicode form, so "José" typed
    with a combining accent, or "Ｍｉａ" in full-width letters, is the same character as "José" and "Mia".
    Turkish capitals fold to a dotted i in any locale (İpek, ipek; IŞIK, ışık), as a Turkish reader matches them;
    a zero-width (non-)joiner, which some keyboards type and others do not, is no part of the key."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", norm(name)).casefold())
    return folded.replace("i\u0307", "i").replace("ı", "i").replace("\u200c", "").replace("\u200d", "")


# Besides letters, marks and digits, a name may hold these; and a zero-width non-joiner or joiner between two
# letters, as Persian and Indic spellings need (مهر‌ناز).
_NAME_PUNCTUATION = frozenset(" -_.'\u2019")
_JOINERS = "\u200c\u200d"


def odd_name_character(name: str) -> str | None:
    """The first character ``name`` may not hold, or None: the rule names are checked by, and tags measured
    against (``[Ann: hi]`` is no name to offer as a new character)."""
    for i, ch in enumerate(name):
        joiner = ch in _JOINERS and 0 < i < len(name) - 1 and name[i - 1].isalpha() and name[i + 1].isalpha()
        if ch not in _NAME_PUNCTUATION and unicodedata.category(ch)[0] not in "LMN" and not joiner:
            return ch
    return None


def is_no_character(tag: str) -> bool:
    """True for the ``[NC]`` tag, in any case."""
    return name_key(tag) == NO_CHARACTER.casefold()


class CharacterTable(dict):
    """A story's characters by name, with the lookup index of their names kept until the table changes: each
    of a long story's tags is then found in one step, not by keying every character again."""

    _index: dict[str, str] | None = None

    def name_index(self) -> Mapping[str, str]:
        if self._index is None:
            self._index = {name_key(name): name for name in self}
        return MappingProxyType(self._index)

    def _changed(self) -> None:
        self._index = None

    def __setitem__(self, name: str, value: Any) -> None:
        if self._index is not None and name not in self:  # one more name: keyed alone, the rest kept
            self._index[name_key(name)] = name
        super().__setitem__(name, value)

    def __delitem__(self, name: str) -> None:
        self._changed()
        super().__delitem__(name)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._changed()
        super().update(*args, **kwargs)

    def pop(self, *args: Any) -> Any:
        self._changed()
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self._changed()
        return super().popitem()

    def setdefault(self, name: str, default: Any = None) -> Any:
        self._changed()
        return super().setdefault(name, default)

    def clear(self) -> None:
        self._changed()
        super().clear()


def name_index(characters: Mapping[str, Any]) -> Mapping[str, str]:
    """Lookup key -> canonical name, for every character (kept by a ``CharacterTable``)."""
    if isinstance(characters, CharacterTable):
        return characters.name_index()
    return {name_key(name): name for name in characters}


def known_names(characters: Mapping[str, Any]) -> str:
    return ", ".join(characters) if characters else "none defined yet"


def unknown_character_message(label: str, tag: str, characters: Mapping[str, Any]) -> str:
    name = _short(norm(tag))
    odd = odd_name_character(norm(tag))  # the whole tag: the shortened one ends in "..."
    if odd is not None:  # "[Ann: hi]": no name could be written so, so adding it as a character is no advice
        return (
            f"{label} has the tag [{name}], which is no character name ({odd!r} cannot be part of one); "
            f"known characters: {known_names(characters)}. A tag holds only a name, e.g. [{next(iter(characters), 'Bob')}]"
        )
    return (
        f"{label} names unknown character [{name}]; known characters: {known_names(characters)}. "
        f"Add it to the characters (e.g. '[{name}] a short description') or fix the spelling"
    )


def unknown_speaker_message(label: str, speaker: str, characters: Mapping[str, Any]) -> str:
    speaker = _short(speaker)
    return (
        f"{label} has a speech line by unknown speaker @{speaker}; known characters: {known_names(characters)}. "
        "Speakers must be characters: add it to the characters or fix the spelling"
    )


def _short(name: str, limit: int = 60) -> str:
    """A name as a message shows it: a pasted paragraph in a tag keeps the message one short line."""
    return name if len(name) <= limit else f"{name[:limit]}..."


def tidy_prompt(text: str) -> str:
    """No doubled spaces, no empty comma runs, no leading or trailing commas or spaces."""
    text = _COMMAS.sub(", ", norm(text))
    return text.strip(" ,")


def names_for_tags(text: str, characters: Mapping[str, Any]) -> str:
    """Replace ``[Name]`` tags by the canonical name (``[NC]`` and unknown-case tags handled)."""
    index = name_index(characters)

    def replace(match: re.Match[str]) -> str:
        if is_no_character(match.group(1)):
            return ""
        return index.get(name_key(match.group(1)), norm(match.group(1)))

    return norm(TAG.sub(replace, text))
