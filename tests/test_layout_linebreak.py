"""Line breaking: lines fit their width with real metrics, and break where each script allows."""

from __future__ import annotations

import pytest

from storydiffusion.layout.lettering.fonts import FontChain, default_font_chain
from storydiffusion.layout.lettering.linebreak import NO_LINE_START, wrap_text

HANGUL = "안녕하세요, 세상!"
SPANISH = "¡Qué sorpresa, señor Muñoz!"
RUSSIAN = "Привет, мир"
LONG = "Meanwhile, far across the sleeping city, the old clock tower struck midnight once more."


@pytest.fixture(scope="module")
def chain() -> FontChain:
    return default_font_chain("bold")


def _monospace(text: str) -> float:
    """Every character one unit wide, except the hyphen, three."""
    return sum(3 if c == "-" else 1 for c in text)


def test_wrap_respects_width_with_real_metrics(chain: FontChain) -> None:
    for text in (LONG, HANGUL * 4, SPANISH * 3, RUSSIAN * 5):
        for width in (60, 120, 300):
            lines = chain.wrap(text, 20, width)
            assert lines
            assert all(chain.text_width(line, 20) <= width for line in lines), (text, width, lines)
    assert chain.wrap("one two", 20, 1000) == ["one two"]
    assert chain.wrap("one\ntwo", 20, 1000) == ["one", "two"]


def test_long_words_break_hangul_between_syllables_latin_with_hyphen(chain: FontChain) -> None:
    hangul = chain.wrap("가나다라마바사아자차카타파하", 20, 70)
    assert len(hangul) > 1 and "".join(hangul) == "가나다라마바사아자차카타파하"
    latin = chain.wrap("Supercalifragilisticexpialidocious", 20, 90)
    assert len(latin) > 1 and all(line.endswith("-") for line in latin[:-1])
    assert "".join(line.rstrip("-") for line in latin) == "Supercalifragilisticexpialidocious"


def test_words_wrap_at_spaces_and_keep_every_word() -> None:
    assert wrap_text("aa bb cc dd", 5, _monospace) == ["aa bb", "cc dd"]
    assert wrap_text("  aa   bb  ", 10, _monospace) == ["aa bb"]
    assert wrap_text("\n\naa\n\nbb\n", 10, _monospace) == ["aa", "", "bb"]
    assert wrap_text("", 10, _monospace) == []


def test_han_and_kana_break_between_characters_but_not_before_closing_punctuation() -> None:
    lines = wrap_text("今日は晴れです。明日も", 4, _monospace)
    assert "".join(lines) == "今日は晴れです。明日も"
    assert all(_monospace(line) <= 4 for line in lines)
    assert not any(line[0] in NO_LINE_START for line in lines)


def test_hangul_words_wrap_at_spaces_before_breaking_inside() -> None:
    assert wrap_text("안녕 하세요", 4, _monospace) == ["안녕", "하세요"]


def test_no_letter_is_lost_when_a_hyphen_does_not_fit() -> None:
    """Two letters fit a line but one letter and a (wide) hyphen do not: break without a hyphen."""
    assert wrap_text("abcd", 2, _monospace) == ["ab", "cd"]
    assert wrap_text("abcdef", 4, _monospace) == ["a-", "b-", "cdef"]  # one letter and the hyphen fit
    assert "".join(p.rstrip("-") for p in wrap_text("abcdefghij", 4, _monospace)) == "abcdefghij"


def test_a_word_breaks_after_its_own_hyphen_and_never_gets_a_second_one() -> None:
    """ "and-more" became "and--" / "more": a break at the word's own hyphen adds none."""
    assert wrap_text("and-more", 6, len) == ["and-", "more"]
    assert wrap_text("well-known-thing", 7, len) == ["well-", "known-", "thing"]
    lines = wrap_text("I-guess-so-well", 5, len)
    assert "".join(lines) == "I-guess-so-well" and not any("--" in line for line in lines)


def test_without_a_hyphen_glyph_words_break_bare() -> None:
    assert wrap_text("abcdef", 4, _monospace, hyphen=False) == ["abcd", "ef"]


def test_a_character_wider_than_the_line_still_gets_a_line() -> None:
    assert wrap_text("W", 0.5, _monospace) == ["W"]


@pytest.mark.parametrize(
    "text", ["x" * 20_000, "字" * 20_000, ("word " * 4_000).strip()], ids=["latin", "han", "words"]
)
def test_a_long_text_is_measured_about_once_and_a_box_full_of_lines_stops_the_wrap(text: str) -> None:
    """A 20,000-letter word was measured whole for each of its lines (minutes per page): now each line costs
    about its own length, and with ``max_lines`` the rest is never read."""
    measured: list[int] = []

    def width_of(part: str) -> float:
        measured.append(len(part))
        return float(len(part))

    lines = wrap_text(text, 50, width_of)
    assert "".join(line.rstrip("-") for line in lines).replace(" ", "") == text.replace(" ", "")
    assert all(len(line) <= 50 for line in lines) and len(lines) >= len(text) // 50
    assert sum(measured) < 40 * len(text)  # about log2(50) measures of a line per line, plus a few
    measured.clear()
    assert wrap_text(text, 50, width_of, max_lines=3) == lines[:3]
    assert sum(measured) < 10_000  # three lines' worth, whatever the length of the text


@pytest.mark.parametrize("text", ["Hello\n\n", "\n \nA\n\nB\n \n", "", "A\nB\nC"])
def test_a_wrap_cut_at_max_lines_is_the_start_of_the_whole_wrap(text: str) -> None:
    """A caption whose last glyph no font has ends in a newline: cut at two lines it kept a blank last line,
    which read as text cut short."""
    whole = wrap_text(text, 20, len)
    assert all(wrap_text(text, 20, len, max_lines=n) == whole[:n] for n in (1, 2, 3))
