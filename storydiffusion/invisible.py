"""Characters drawn as nothing: joiners, direction marks pasted with right-to-left text (U+200F, U+202E), the
soft hyphen, variation selectors. Lettering never draws them; a speech line made only of them says nothing."""

from __future__ import annotations

import unicodedata

#: The invisible controls that reorder the text around them (bidi embeddings, overrides and isolates): in a
#: name or title they can make one text read as another ("Safe \u202eexe.fdp" shows as "Safe pdf.exe").
TEXT_REORDERING = frozenset(chr(code) for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))

# Format characters (Unicode category Cf) that a font draws as a visible mark: Arabic number signs and the like.
_VISIBLE_FORMAT = frozenset("\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u08e2\U000110bd\U000110cd")


def is_invisible(char: str) -> bool:
    """Whether ``char`` only steers others (never drawn, never needs a glyph)."""
    if "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef":
        return True
    return unicodedata.category(char) == "Cf" and char not in _VISIBLE_FORMAT


def shows_nothing(text: str) -> bool:
    """Whether ``text`` would be drawn as nothing at all: only spaces and invisible characters."""
    return all(char.isspace() or is_invisible(char) for char in text)
