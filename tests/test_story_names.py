"""Names and tags (storydiffusion/story/names.py): how every reader of a story matches and shows names."""

from __future__ import annotations

import re

import pytest

from storydiffusion.errors import StoryError, kind_of
from storydiffusion.story import Character, story_from_text
from storydiffusion.story.names import (
    is_no_character,
    name_index,
    name_key,
    names_for_tags,
    norm,
    tidy_prompt,
)

CAST = {"Bob": Character("Bob", "a man"), "Mary Jane": Character("Mary Jane", "a woman")}


def test_norm_trims_and_collapses_whitespace():
    assert norm("  a \t tall\n\nman  ") == "a tall man"


def test_names_match_ignoring_case_and_extra_spaces():
    assert name_key("  MARY   jane ") == name_key("Mary Jane")
    assert name_index(CAST) == {"bob": "Bob", "mary jane": "Mary Jane"}


def test_turkish_names_match_in_either_case():
    assert name_key("İpek") == name_key("ipek") == name_key("IPEK")
    assert name_key("IŞIK") == name_key("ışık") and name_key("Işık") == name_key("ışık")
    assert name_key("İpek") != name_key("Ipel")


@pytest.mark.parametrize("tag, expected", [("NC", True), (" nc ", True), ("Nc", True), ("NCO", False), ("", False)])
def test_no_character_tag(tag, expected):
    assert is_no_character(tag) is expected


@pytest.mark.parametrize(
    "value, kind",
    [(None, "nothing"), ("x", "text"), (True, "true/false"), (3, "a number"), (1.5, "a number"), ([], "a list")],
)
def test_kind_of_uses_words_a_user_knows(value, kind):
    assert kind_of(value) == kind
    assert kind_of({}) == "a mapping"


def test_tidy_prompt_removes_empty_comma_runs():
    assert tidy_prompt(" ,  a man ,, , walks  ,") == "a man, walks"
    assert tidy_prompt(" , , ") == ""


def test_names_for_tags_shows_canonical_names_and_drops_nc():
    assert names_for_tags("[bob] waves at [MARY  JANE] [NC]", CAST) == "Bob waves at Mary Jane"
    assert names_for_tags("[Carol] waits", CAST) == "Carol waits"  # unknown: shown as written


def test_a_story_keys_each_character_name_once_however_many_tags_name_them(monkeypatch):
    import storydiffusion.story.names as names

    keyed = []
    monkeypatch.setattr(names, "name_key", lambda name: keyed.append(name) or name.casefold())
    table = names.CharacterTable()
    for number in range(300):
        assert f"c{number}" not in names.name_index(table)
        table[f"C{number}"] = "someone"
    for _ in range(2000):
        assert names.name_index(table)["c7"] == "C7"
    assert len(keyed) == 300  # once per name: not once per name per lookup
    del table["C7"]
    assert "c7" not in names.name_index(table) and names.name_index(table)["c8"] == "C8"
    with pytest.raises(TypeError):
        names.name_index(table)["x"] = "X"  # read-only: no caller can spoil the kept index


def test_a_persian_name_keeps_its_zero_width_non_joiner_and_matches_without_it():
    """Persian spelling joins parts of a name with U+200C; some keyboards type it and others do not."""
    story = story_from_text("[مهر\u200cناز] a person", "[مهرناز] waves # @مهر\u200cناز: hi")
    assert story.panels[0].characters == ("مهر\u200cناز",) and story.panels[0].dialogue[0].speaker == "مهر\u200cناز"
    for bad, shown in (("[\u200cA] x", "U+200C (an invisible character)"), ("[A\u200bB] x", "U+200B")):
        with pytest.raises(StoryError, match=re.escape(shown)):
            story_from_text(bad, "[A] z")
