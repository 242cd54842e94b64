"""Which characters a font has (its character map), stand-ins for those no face has, and naming the ones
left out by script, for a lettering warning."""

from __future__ import annotations

import io
import os
import unicodedata

from fontTools.ttLib import TTFont

__all__ = ["COMPLEX_SCRIPTS", "STAND_INS", "describe_missing", "read_cmap"]

#: OpenType script tags of writing whose letters change with their neighbours: a face for one of them is
#: always laid out by libraqm (Devanagari conjuncts, vowel signs drawn before their consonant, Arabic joining).
COMPLEX_SCRIPTS = frozenset(
    {"arab", "beng", "bng2", "deva", "dev2", "gjr2", "gujr", "gur2", "guru", "knd2", "knda", "khmr", "mlm2", "mlym"}
    | {"mym2", "mymr", "ory2", "orya", "sinh", "syrc", "taml", "tel2", "telu", "thaa", "tml2"}
)

# Stand-ins when no face has a character (the result is checked against the chain again).
STAND_INS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": ",",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u3000": " ",
    "\u2022": "*",
    "\u00b7": "*",
}


def read_cmap(font: bytes | str | os.PathLike[str]) -> frozenset[int]:
    """Code points that an OpenType/TrueType font (its bytes or its file) maps to a real glyph,
    not to ``.notdef``; the first font of a collection.

    Raises ``ValueError`` for data that is not a readable font or has no Unicode character map.
    """
    source = io.BytesIO(font) if isinstance(font, (bytes, bytearray)) else font
    try:
        with TTFont(source, lazy=True, fontNumber=0) as tt:
            cmap = tt.getBestCmap()
            notdef = tt.getGlyphOrder()[0] if cmap else None
    except Exception as error:  # fontTools raises many kinds of error for damaged files
        raise ValueError(f"not a readable OpenType/TrueType font: {error}") from error
    if cmap is None:
        raise ValueError("font has no Unicode cmap subtable")
    return frozenset(code for code, glyph in cmap.items() if glyph != notdef)


def describe_missing(characters: frozenset[str] | set[str], shown: int = 8) -> str:
    """Characters no bundled face has, by script, for a warning: ``Arabic and Hebrew letters and emoji
    or symbols (ا ب ש 😀)``; a user learns which writing to change, not a list of code points."""
    kinds = sorted({_script_of(char) for char in characters})
    named = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} and {kinds[-1]}"
    examples = " ".join(sorted(characters)[:shown]) + (" …" if len(characters) > shown else "")
    return f"{named} ({examples})"


def _script_of(char: str) -> str:
    """``Arabic letters``, ``Chinese or Japanese characters``, ``emoji or symbols``: from the Unicode name."""
    if unicodedata.category(char).startswith("S") or not unicodedata.name(char, ""):
        return "emoji or symbols"
    first = unicodedata.name(char).split()[0]
    if first in ("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC"):
        return "Chinese or Japanese characters"
    return f"{first.title()} letters"
