"""The data model (storydiffusion/story/model.py): the prompts, captions and character lists built from a story."""

from __future__ import annotations

import pytest
from story_helpers import CHARACTERS

from storydiffusion.errors import StoryError
from storydiffusion.story import DialogueLine, Panel, Story, parse_panels, story_from_text

# ------------------------------------------------------------------------------------ prompts


def test_panel_prompt_tidies_spaces_and_commas(cast):
    panels = parse_panels(
        "[Bob] ,  [Alice]  walk ,, together ,\n[NC] , an empty street ,\n[Alice],[Bob] sit",
        cast,
    )
    story = Story(characters=cast, panels=panels)
    assert story.panel_prompt(0) == "a tall man with red hair, a young woman in a blue coat walk, together"
    assert story.panel_prompt(1) == "an empty street"
    assert story.panel_prompt(2) == "a young woman in a blue coat, a tall man with red hair sit"
    for i in range(3):
        prompt = story.panel_prompt(i)
        assert "  " not in prompt and not prompt.startswith((",", " ")) and not prompt.endswith((",", " "))


def test_panel_caption_none(cast):
    story = Story(characters=cast, panels=parse_panels("[Bob] walks", cast))
    assert story.panel_caption(0) is None


def test_character_panels(cast):
    story = story_from_text(CHARACTERS, "[Bob] a\n[Alice] b\n[Bob] [Alice] c\n[NC] d")
    assert story.character_panels() == {"Bob": [0, 2], "Alice": [1, 2]}


def test_panel_dialogue_shows_tags_as_names(cast):
    story = Story(characters=cast, panels=parse_panels("[Bob] waves # @Bob: Hi [alice]! [NC]", cast))
    assert story.panel_dialogue(0) == [DialogueLine("Bob", "Hi Alice!")]
    assert story.panels[0].dialogue == [DialogueLine("Bob", "Hi [alice]! [NC]")]  # kept as written


def test_panel_prompt_of_a_code_built_story_refuses_unknown_tags(cast):
    story = Story(characters=cast, panels=[Panel("[Carol] sings", characters=("Carol",))])
    with pytest.raises(StoryError) as info:
        story.panel_prompt(0)
    assert "panel 1 names unknown character [Carol]; known characters: Bob, Alice" in str(info.value)


# ------------------------------------------------------------------------------------ to_dict


def test_to_dict_writes_the_file_format_with_identity_panels_numbered_from_1(cast):
    story = story_from_text(CHARACTERS, "[Bob] walks # Hi. @Bob: Hello\n[Alice] runs", title="Run")
    story.identity_panels = {"Bob": [0], "Alice": [1]}
    data = story.to_dict()
    assert set(data) == {"title", "characters", "panels", "settings", "identity_panels"}
    assert data["title"] == "Run"
    assert data["characters"] == {"Bob": "a tall man with red hair", "Alice": "a young woman in a blue coat"}
    assert data["panels"][0] == {
        "prompt": "[Bob] walks",
        "caption": "Hi.",
        "dialogue": [{"speaker": "Bob", "text": "Hello"}],
        "seed": None,
    }
    assert data["identity_panels"] == {"Bob": [1], "Alice": [2]}
    assert data["settings"] == story.settings.to_dict()
