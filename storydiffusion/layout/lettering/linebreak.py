"""Line breaking for lettering: where a line may end in Latin, Cyrillic, Hangul, Han, kana, Hebrew, Arabic and
Indic text (a word is never split inside what is drawn as one letter).

Kept apart from the fonts: it only needs a way to measure a string, so the rules read on their own
and are tested with any measure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

__all__ = ["NO_LINE_START", "wrap_text"]

#: A line may not start with these: they stay with the character before them.
NO_LINE_START = frozenset(",.;:!?)]}%\u2019\u201d\u00bb\u2026、。，．！？：；）」』】〉》〕｝～ー")
_WORD = re.compile(r"[^ \t\u00a0\u3000]+")  # a word: what lies between spaces

Measure = Callable[[str], float]


def wrap_text(
    text: str, max_width: float, width_of: Measure, hyphen: bool = True, max_lines: int | None = None
) -> list[str]:
    """``text`` word-wrapped into lines no wider than ``max_width`` as ``width_of`` measures them.

    Breaks at spaces; between CJK ideographs and kana, which need none; and inside a word only when
    the word alone is too wide (Hangul between syllables, Latin with a hyphen when ``hyphen``).
    Explicit newlines are kept. A single character wider than ``max_width`` still gets its own
    line: callers measure the lines against their box to know whether the text fits. ``max_lines``:
    stop once that many lines are wrapped (a box holds no more; 20,000 characters are many lines).
    """
    paragraphs = text.split("\n")
    while paragraphs and not _WORD.search(paragraphs[-1]):  # blank lines at either end wrap to nothing
        paragraphs.pop()
    while paragraphs and not _WORD.search(paragraphs[0]):
        paragraphs.pop(0)
    lines: list[str] = []
    for paragraph in paragraphs:
        lines.extend(_wrap_paragraph(paragraph, max_width, width_of, hyphen, max_lines))
        if max_lines is not None and len(lines) >= max_lines:
            return lines[:max_lines]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _wrap_paragraph(
    paragraph: str, max_width: float, width_of: Measure, hyphen: bool, max_lines: int | None = None
) -> list[str]:
    lines: list[str] = []
    line = ""
    for token, spaced in _tokens(paragraph):
        if max_lines is not None and len(lines) >= max_lines:
            return lines
        candidate = f"{line} {token}" if (line and spaced) else line + token
        if _fits(candidate, max_width, width_of):
            line = candidate
            continue
        if line:
            lines.append(line)
        if _fits(token, max_width, width_of):
            line = token
        else:
            left = None if max_lines is None else max_lines - len(lines)
            pieces = _break_word(token, max_width, width_of, hyphen, left)
            lines.extend(pieces[:-1])
            line = pieces[-1]
    if line or not lines:
        lines.append(line)
    return lines


def _fits(text: str, max_width: float, width_of: Measure) -> bool:
    """Whether ``text`` fits in ``max_width``, measuring prefixes of doubling length first (a width only grows
    with the text): a word of 20,000 letters costs about what a line of it does."""
    n = 64
    while n < len(text):
        if width_of(text[:n]) > max_width:
            return False
        n *= 2
    return width_of(text) <= max_width


def _break_word(word: str, max_width: float, width_of: Measure, hyphen: bool, limit: int | None = None) -> list[str]:
    """Splits a word too wide for one line; Latin pieces end with a hyphen when one fits. ``limit``: at most that
    many pieces that fit, then the rest unbroken."""
    pieces: list[str] = []
    rest = word
    while rest and (limit is None or len(pieces) < limit):
        n = _longest_prefix(rest, max_width, width_of)  # measures a line's worth, never the whole rest
        if n >= len(rest):
            break
        piece = rest[:n]
        own = piece.rfind("-", 0, n - 1)  # the word's own hyphen ("well-known"): the break goes after it
        if own > 0 and piece[own - 1].isalnum():
            piece, n = rest[: own + 1], own + 1
        elif hyphen and _hyphenates(piece[-1]) and _hyphenates(rest[n]):
            hyphenated = _hyphenated(piece, max_width, width_of)
            if hyphenated is not None:
                piece, n = hyphenated, len(hyphenated) - 1
        pieces.append(piece)
        rest = rest[n:]
    pieces.append(rest)
    return pieces


def _longest_prefix(word: str, max_width: float, width_of: Measure) -> int:
    """How many characters of ``word`` fit (at least one), keeping closing punctuation with the
    character before it."""
    low, high = 1, 1  # word[:low] fits (or is one character); word[:high + 1] does not, or is the whole word
    while high < len(word) and width_of(word[: min(2 * high, len(word))]) <= max_width:
        low = high = min(2 * high, len(word))
    high = min(2 * high, len(word)) if high < len(word) else high
    while low < high:  # a binary search: a width only grows with the text
        middle = (low + high + 1) // 2
        if width_of(word[:middle]) <= max_width:
            low = middle
        else:
            high = middle - 1
    n = low
    while 1 < n < len(word) and (word[n] in NO_LINE_START or _inside_cluster(word, n)):
        n -= 1
    return n


def _inside_cluster(word: str, n: int) -> bool:
    """Whether a break before ``word[n]`` would split what is drawn as one letter: a mark from its letter (a
    Hebrew point, an Arabic vowel, a Devanagari vowel sign), or the two sides of a virama or a joiner."""
    after, before = word[n], word[n - 1]
    return (
        unicodedata.category(after) in ("Mn", "Mc", "Me")
        or "\u200c" <= after <= "\u200d"
        or "\u200c" <= before <= "\u200d"
        or unicodedata.combining(before) == 9  # a virama joins the consonants either side of it
    )


def _hyphenates(char: str) -> bool:
    """Letters of the scripts whose words break with a hyphen: Latin, Greek, Cyrillic (not CJK, Hebrew, Arabic
    or Indic scripts)."""
    return char.isalpha() and char < "\u0590"


def _hyphenated(piece: str, max_width: float, width_of: Measure) -> str | None:
    """``piece`` shortened until it fits with a hyphen, hyphen included; None when not even one
    letter and the hyphen fit (the piece then breaks without one)."""
    while len(piece) > 1 and (width_of(piece + "-") > max_width or _inside_cluster(piece + "-", len(piece))):
        piece = piece[:-1]
    if piece.endswith("-"):  # shortened to the word's own hyphen: no second one
        return piece
    return piece + "-" if width_of(piece + "-") <= max_width else None


def _breaks_anywhere(char: str) -> bool:
    """Han and kana break between any two characters (Hangul words use spaces instead)."""
    o = ord(char)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3FFFF


def _tokens(paragraph: str) -> Iterator[tuple[str, bool]]:
    """Break units of a paragraph as (token, preceded by a space), one at a time: a wrap that has all the
    lines its box holds stops reading."""
    for w, match in enumerate(_WORD.finditer(paragraph)):
        word, spaced = match.group(), w > 0
        if max(word) < "\u3040":  # no kana or Han in it: one token, without a look at each character
            yield word, spaced
            continue
        current: list[str] = []
        for char in word:
            if current and (_breaks_anywhere(char) or _breaks_anywhere(current[-1])) and char not in NO_LINE_START:
                yield "".join(current), spaced
                spaced = False
                current = [char]
            else:
                current.append(char)
        if current:
            yield "".join(current), spaced
