"""The data model (storydiffusion/story/model.py): the prompts, captions and character lists built from a story."""

from __future__ import annotations

from pathlib import Path

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


def test_a_saved_story_names_its_pictures_relative_to_its_folder_and_loads_back(tmp_path):
    """to_dict() of a loaded story held the absolute paths of its photos and poses: a saved file named the
    folders of the machine it was made on and broke when moved."""
    import json
    import shutil

    from storydiffusion.resources import data_path
    from storydiffusion.story import load_story

    folder = tmp_path / "project"
    shutil.copytree(data_path("examples"), folder)
    story = load_story(folder / "posed.yaml")
    photo = load_story(folder / "from_a_photo.yaml")
    for loaded in (story, photo):
        saved = json.dumps(loaded.to_dict(base=folder))
        assert str(tmp_path) not in saved
        moved = tmp_path / "moved"
        if moved.exists():
            shutil.rmtree(moved)
        shutil.copytree(folder, moved)
        again = Story.from_dict(json.loads(saved), base=moved)
        assert [p.control and Path(p.control.image) for p in again.panels] == [
            p.control and moved / Path(p.control.image).relative_to(folder) for p in loaded.panels
        ]
        assert {n: c.reference and Path(c.reference) for n, c in again.characters.items()} == {
            n: c.reference and moved / Path(c.reference).relative_to(folder) for n, c in loaded.characters.items()
        }
    outside = story.to_dict(base=tmp_path / "elsewhere")  # pictures outside the folder keep their full path
    assert any(str(folder) in (p.get("control") or {}).get("image", "") for p in outside["panels"])


def test_the_story_error_is_importable_where_the_story_format_says():
    from storydiffusion import errors, story

    assert story.StoryError is errors.StoryError and issubclass(story.StoryError, errors.StoryDiffusionError)
