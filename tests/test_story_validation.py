"""validate_story (storydiffusion/story/validation.py): stories built in code are checked like parsed ones."""

from __future__ import annotations

import pytest
from story_helpers import CHARACTERS, assert_message, error

from storydiffusion.errors import StoryError
from storydiffusion.settings import MAX_TEXT_CHARS
from storydiffusion.story import Character, DialogueLine, Panel, Story, story_from_text, validate_story

# ------------------------------------------------------------------------------ validate_story


def good_story() -> Story:
    return story_from_text(CHARACTERS, "[Bob] walks # @Bob: Hi\n[Alice] runs\n[NC] rain")


def test_validate_good_story():
    validate_story(good_story())


def test_validate_no_panels():
    story = good_story()
    story.panels = []
    assert "no panels" in str(error(validate_story, story))


def test_validate_max_panels():
    story = good_story()
    story.settings.max_panels = 2
    assert_message(error(validate_story, story), "3 panels", "max_panels is 2", "split it")


def test_validate_settings():
    story = good_story()
    story.settings.mode = "sideways"
    assert "mode must be one of" in str(error(validate_story, story))
    story = good_story()
    story.settings.style = 3
    assert "style" in str(error(validate_story, story))


def test_validate_identity_panels():
    story = good_story()
    story.identity_panels = {"Carol": [0]}
    assert_message(error(validate_story, story), "Carol", "unknown character", "Bob, Alice")
    story.identity_panels = {"Bob": [5]}
    assert_message(error(validate_story, story), "panel 6 does not exist", "3 panels")
    story.identity_panels = {"Bob": [1]}
    assert_message(error(validate_story, story), "panel 2 does not show Bob", "[Bob]")
    story.identity_panels = {"Bob": [0], "Alice": [1]}
    validate_story(story)
    shared = story_from_text(CHARACTERS, "[Bob] [Alice] a\n[Bob] b")
    shared.identity_panels = {"Bob": [0], "Alice": [0]}
    assert_message(error(validate_story, shared), "panel 1", "both Bob and Alice", "its own identity panels")


def test_validate_code_built_unknown_tag_and_characters():
    chars = {"Bob": Character("Bob", "a man"), "Alice": Character("Alice", "a woman")}
    story = Story(characters=chars, panels=[Panel("[Carol] sings", characters=("Carol",))])
    assert_message(error(validate_story, story), "panel 1", "[Carol]", "Bob, Alice")
    story = Story(characters=chars, panels=[Panel("[Bob] sings", characters=("Bob", "Alice"))])
    assert_message(error(validate_story, story), "panel 1 lists characters", "[Name] tags")
    story = Story(characters=chars, panels=[Panel("rain")])
    assert_message(error(validate_story, story), "names no character", "[NC]")
    story = Story(
        characters=chars, panels=[Panel("[Bob] sings", characters=("Bob",), dialogue=[DialogueLine("Eve", "x")])]
    )
    assert_message(error(validate_story, story), "@Eve", "Bob, Alice")
    story = Story(characters=chars, panels=[Panel("[Bob] sings", characters=("Bob",), seed=-3)])
    assert "seed must be" in str(error(validate_story, story))
    story = Story(characters={"Bob": Character("Robert", "a man")}, panels=[Panel("[NC] x")])
    assert "Character('Bob'" in str(error(validate_story, story))


def test_text_longer_than_a_prompt_can_use_is_refused_with_its_place_and_length():
    long = "x" * (MAX_TEXT_CHARS + 1)
    err = error(story_from_text, CHARACTERS, "[Bob] " + long)
    assert_message(err, "panel 1: prompt is 20,007 characters long", f"at most {MAX_TEXT_CHARS:,}")
    assert len(str(err)) < 200
    assert_message(error(story_from_text, "[Bob] " + long, "[Bob] x"), "characters.Bob.description is 20,001")
    assert_message(error(story_from_text, CHARACTERS, "[Bob] x # " + long), "panel 1: caption is 20,001")
    assert_message(error(story_from_text, CHARACTERS, "[Bob] x # @Bob: " + long), "panel 1: dialogue 1: text")
    assert_message(error(story_from_text, CHARACTERS, "[Bob] x", title=long), "title is 20,001")
    story_from_text(CHARACTERS, "[Bob] " + "x" * (MAX_TEXT_CHARS - 6))


def test_long_names_are_refused_and_cut_short_in_messages():
    name = "B" * 101
    assert_message(error(story_from_text, f"[{name}] a man", "x"), "is 101 characters long; at most 100")
    err = error(story_from_text, CHARACTERS, f"[{'C' * 5000}] sings")
    assert "unknown character" in str(err) and len(str(err)) < 400


@pytest.mark.parametrize(("first", "second"), [("José", "Jose\u0301"), ("Mia", "Ｍｉａ"), ("Straße", "STRASSE")])
def test_names_that_differ_only_in_unicode_form_or_case_are_one_character(first, second):
    with pytest.raises(StoryError, match="is defined twice"):
        Story.from_dict({"characters": {first: "a", second: "b"}, "panels": [f"[{first}] waves"]})
    story = Story.from_dict({"characters": {first: "a person"}, "panels": [f"[{second}] waves"]})
    assert tuple(story.panels[0].characters) == (first,)


@pytest.mark.parametrize("name", ["NC", "nc", "ＮＣ"])
def test_the_no_character_tag_is_no_name_in_any_form(name):
    with pytest.raises(StoryError, match="NC is reserved"):
        Story.from_dict({"characters": {name: "a robot"}, "panels": [f"[{name}] waves"]})


@pytest.mark.parametrize("name", ["\u0301", "\u0301Bob", "\u0308"])
def test_a_name_never_starts_with_a_combining_mark(name):
    """A lone combining accent would be an invisible name."""
    from storydiffusion.story import story_from_text

    with pytest.raises(StoryError, match="starts with a combining mark"):
        story_from_text(f"[{name}] a man", f"[{name}] walks")
    assert list(story_from_text("[Zoe\u0308] a girl", "[Zoe\u0308] runs").characters) == ["Zoe\u0308"]  # after a letter
