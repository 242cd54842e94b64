"""validate_story (storydiffusion/story/validation.py): stories built in code are checked like parsed ones."""

from __future__ import annotations

from story_helpers import CHARACTERS, assert_message, error

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
