"""The text syntax (storydiffusion/story/text.py): character lines, panel lines, story_from_text, story_to_text."""

from __future__ import annotations

import json

import pytest
from story_helpers import CHARACTERS, assert_message, error

from storydiffusion.resources import data_path
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import (
    Character,
    DialogueLine,
    Story,
    load_story,
    parse_characters,
    parse_panels,
    story_from_text,
    story_to_text,
)

# ------------------------------------------------------------------------------------ characters


def test_parse_characters_basic_comments_blank_lines():
    chars = parse_characters("# the cast\n\n[Bob]   a tall   man \n   \n[Mary Jane] a woman\n# end\n")
    assert list(chars) == ["Bob", "Mary Jane"]
    assert chars["Bob"] == Character("Bob", "a tall man")
    assert chars["Mary Jane"].description == "a woman"


def test_parse_characters_empty_text_is_no_characters():
    assert parse_characters("") == {}
    assert parse_characters("# only a comment\n\n") == {}


def test_parse_characters_name_characters_allowed():
    chars = parse_characters("[ Dr. O'Neil-Smith_2 ] a doctor\n[지민] a young woman\n[Zoë] a girl\n")
    assert list(chars) == ["Dr. O'Neil-Smith_2", "지민", "Zoë"]


def test_character_line_malformed():
    assert_message(error(parse_characters, "[Bob] a man\nAlice a woman\n"), "[Name]", "e.g.", line=2)
    assert_message(error(parse_characters, "[Bob a man\n"), "[Name]", line=1)


def test_character_empty_description():
    assert_message(error(parse_characters, "\n[Bob]   \n"), "Bob", "no description", "[Bob]", line=2)


def test_character_duplicate_case_insensitive():
    assert_message(error(parse_characters, "[Bob] a man\n[bob] another man\n"), "defined twice", "once", line=2)


def test_character_reserved_nc():
    assert_message(error(parse_characters, "[nc] nobody\n"), "NC is reserved", "another", line=1)


def test_character_empty_and_invalid_names():
    assert_message(error(parse_characters, "[ ] someone\n"), "name is empty", line=1)
    assert_message(error(parse_characters, "[Bob!] someone\n"), "'!'", "letters, digits", line=1)


def test_character_description_without_brackets():
    assert_message(error(parse_characters, "[Bob] a man [tall]\n"), "may not contain", line=1)


# ---------------------------------------------------------------------------------------- panels


def test_tags_multiple_and_order(cast):
    panels = parse_panels("[Alice] waits, [Bob] opens the door, [Alice] smiles\n", cast)
    assert panels[0].characters == ("Alice", "Bob")
    assert panels[0].prompt == "[Alice] waits, [Bob] opens the door, [Alice] smiles"
    assert panels[0].caption is None and panels[0].dialogue == [] and panels[0].seed is None


def test_tags_case_insensitive_stored_canonical(cast):
    (panel,) = parse_panels("[bOB] walks with [ALICE]", cast)
    assert panel.characters == ("Bob", "Alice")


def test_tag_anywhere_in_prompt(cast):
    (panel,) = parse_panels("a rainy street where [Bob] runs", cast)
    assert panel.characters == ("Bob",)


def test_nc_panel(cast):
    (panel,) = parse_panels("[NC] an empty street at night", cast)
    assert panel.characters == ()
    story = Story(characters=cast, panels=[panel])
    assert story.panel_prompt(0) == "an empty street at night"
    (lower,) = parse_panels("[nc] rain", cast)
    assert lower.characters == ()


def test_nc_with_other_tags_is_error(cast):
    assert_message(error(parse_panels, "ok [Bob]\n[NC] [Bob] rain\n", cast), "[NC]", "remove", line=2)


def test_caption_and_dialogue_several_speakers(cast):
    line = "[Bob] opens the door, [Alice] waits outside # Late again. @Bob: Sorry! @Alice: Come in."
    (panel,) = parse_panels(line, cast)
    assert panel.prompt == "[Bob] opens the door, [Alice] waits outside"
    assert panel.caption == "Late again."
    assert panel.dialogue == [DialogueLine("Bob", "Sorry!"), DialogueLine("Alice", "Come in.")]


def test_dialogue_only_caption_is_none(cast):
    (panel,) = parse_panels("[Bob] waves #@bob: Hi there, it's 5:30! @Alice: Hello", cast)
    assert panel.caption is None
    assert panel.dialogue == [DialogueLine("Bob", "Hi there, it's 5:30!"), DialogueLine("Alice", "Hello")]


def test_empty_caption_is_none_and_hash_in_caption(cast):
    (a, b) = parse_panels("[Bob] waves #   \n[Bob] waves # track #2, mail bob@example.com: ok", cast)
    assert a.caption is None
    assert b.caption == "track #2, mail bob@example.com: ok"
    assert b.dialogue == []


def test_speaker_with_spaces():
    chars = parse_characters("[Mary Jane] a woman\n[Bob] a man")
    (panel,) = parse_panels("[mary jane] and [Bob] talk # @Mary Jane: Hi. @bob: Hey.", chars)
    assert panel.dialogue == [DialogueLine("Mary Jane", "Hi."), DialogueLine("Bob", "Hey.")]


def test_unknown_speaker(cast):
    err = error(parse_panels, "[Bob] waves # @Carol: Hello", cast)
    assert_message(err, "@Carol", "Bob, Alice", "add it to the characters", line=1)


def test_speech_typed_before_the_caption_mark_is_refused_not_drawn(cast):
    err = error(parse_panels, "\n[Bob] waves @alice: Hi! # A wave.", cast)
    assert_message(err, "'@Alice:' before '#'", "# A caption. @Alice: Hello!", line=2)
    (panel,) = parse_panels("[Bob] mails bob@home: a letter # @Bob: Sent.", cast)  # not a character: prompt text
    assert panel.prompt == "[Bob] mails bob@home: a letter" and panel.dialogue == [DialogueLine("Bob", "Sent.")]


def test_empty_speech(cast):
    err = error(parse_panels, "[Bob] waves # Hi. @Bob:   @Alice: Hello", cast)
    assert_message(err, "empty speech", "@Bob", line=1)


def test_caption_tags_become_names(cast):
    (panel,) = parse_panels("[Bob] waves # [bob] waves at [Alice]. @Alice: Hi [BOB]!", cast)
    story = Story(characters=cast, panels=[panel])
    assert panel.caption == "[bob] waves at [Alice]."
    assert story.panel_caption(0) == "Bob waves at Alice."
    assert story.panel_dialogue(0) == [DialogueLine("Alice", "Hi Bob!")]


def test_unknown_tag_in_caption_is_error(cast):
    assert_message(error(parse_panels, "[Bob] waves # [Carol] watches", cast), "[Carol]", line=1)


def test_implicit_single_character():
    chars = parse_characters("[Keeper] an old man with a beard")
    panels = parse_panels("climbs the stairs\n[NC] the sea", chars)
    assert panels[0].characters == ("Keeper",)
    assert panels[1].characters == ()
    story = Story(characters=chars, panels=panels)
    assert story.panel_prompt(0) == "an old man with a beard, climbs the stairs"


def test_no_character_named_in_multi_character_story(cast):
    err = error(parse_panels, "[Bob] walks\n\nan empty room", cast)
    assert_message(err, "names no character", "add a [Name] tag", "[NC]", line=3)


def test_no_character_named_in_story_without_characters():
    assert_message(error(parse_panels, "an empty room", {}), "names no character", line=1)
    (panel,) = parse_panels("[NC] an empty room", {})
    assert panel.characters == ()


def test_unknown_character_tag(cast):
    err = error(parse_panels, "[Bob] walks\n[Carol] sings", cast)
    assert_message(err, "[Carol]", "Bob, Alice", "Add it to the characters", "[Carol] a short description", line=2)


def test_a_tag_no_name_could_be_is_not_offered_as_a_new_character(cast):
    """ "[Bob: hi]" was answered "add it to the characters (e.g. '[Bob: hi] a short description')"."""
    err = error(parse_panels, "[Bob: hi] waves", cast)
    assert_message(err, "[Bob: hi]", "no character name", "':'", "e.g. [Bob]", line=1)
    assert "Add it to the characters" not in str(err)
    long_name = error(parse_panels, "[" + "B" * 80 + "] waves", cast)  # shown cut short, judged whole
    assert_message(long_name, "unknown character", "Add it to the characters", line=1)


def test_empty_tag(cast):
    assert_message(error(parse_panels, "[] sings", cast), "empty tag", "[NC]", line=1)


def test_empty_prompt(cast):
    assert_message(error(parse_panels, "[Bob] walks\n[Bob] # just a caption", cast), "empty prompt", "describe", line=2)
    assert_message(error(parse_panels, "# only caption", cast), "empty prompt", line=1)
    assert_message(error(parse_panels, "[Bob] , [Alice]", cast), "empty prompt", line=1)


@pytest.mark.parametrize(
    "line, column",
    [("[Bob walks", 1), ("Bob] walks", 4), ("[Bob [Alice] walk", 1), ("[Bob] walks # [Alice hi", 15)],
)
def test_unbalanced_brackets(cast, line, column):
    err = error(parse_panels, "[Bob] ok\n" + line, cast)
    assert_message(err, "unbalanced", f"column {column}", line=2)


def test_no_panels(cast):
    err = error(parse_panels, "\n   \n", cast)
    assert "no panels" in str(err) and "one panel per line" in str(err)
    assert err.line is None


def test_korean_names_and_text():
    chars = parse_characters("[지민] a young woman with a short bob\n[민수] a tall man in a suit")
    (panel,) = parse_panels("[지민] and [민수] drink coffee # 아침이다. @지민: 안녕! @민수: 좋은 아침.", chars)
    assert panel.characters == ("지민", "민수")
    assert panel.caption == "아침이다."
    assert panel.dialogue == [DialogueLine("지민", "안녕!"), DialogueLine("민수", "좋은 아침.")]
    story = Story(characters=chars, panels=[panel])
    assert story.panel_prompt(0) == "a young woman with a short bob and a tall man in a suit drink coffee"
    assert_message(error(parse_panels, "[영희] walks", chars), "[영희]", "지민, 민수", line=1)


def test_windows_line_endings(cast):
    panels = parse_panels("[Bob] a\r\n\r\n[Alice] b\r\n", cast)
    assert [p.characters for p in panels] == [("Bob",), ("Alice",)]


# ------------------------------------------------------------------------------ story_from_text


def test_story_from_text():
    settings = GenerationSettings(steps=20, style="comic")
    story = story_from_text(CHARACTERS, "[Bob] walks # Hi", title="  My  story ", settings=settings)
    assert story.title == "My story"
    assert story.settings is settings
    assert story.identity_panels == {}
    default = story_from_text(CHARACTERS, "[Bob] walks")
    assert default.title == "Untitled story"
    assert default.settings == GenerationSettings()


def test_story_from_text_max_panels():
    err = error(story_from_text, CHARACTERS, "[Bob] a\n[Bob] b\n[Bob] c", settings=GenerationSettings(max_panels=2))
    assert_message(err, "3 panels", "max_panels is 2", "split it", "raise max_panels")


def test_story_from_text_settings_error():
    err = error(story_from_text, CHARACTERS, "[Bob] a", settings=GenerationSettings(steps=0))
    assert "steps must be 1..1000" in str(err)


def test_panels_of_many_characters():
    names = [f"P{i}" for i in range(12)]
    chars = parse_characters("\n".join(f"[{n}] person {n}" for n in names))
    (panel,) = parse_panels(" ".join(f"[{n}]" for n in names) + " stand in a row", chars)
    assert panel.characters == tuple(names)


# ------------------------------------------------------------------------------------- story_to_text


@pytest.mark.parametrize("name", ["lighthouse.yaml", "two_friends.yaml", "korean.yaml", "market_day.yaml"])
def test_story_to_text_reads_back_as_the_same_story(name):
    story = load_story(data_path("examples", name))
    again = story_from_text(*story_to_text(story), title=story.title, settings=story.settings)
    assert [(p.prompt, p.caption, p.dialogue, p.characters) for p in again.panels] == [
        (p.prompt, p.caption, p.dialogue, p.characters) for p in story.panels
    ]
    assert again.characters == story.characters


# ------------------------------------------------------------------------------------ what a box holds


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
def test_a_line_separator_pasted_into_a_panel_line_keeps_one_panel_as_a_json_story_does(tmp_path, separator):
    line = f"[Mia] runs{separator}[Mia] sits # cap{separator}more @Mia: hi"
    boxed = story_from_text("[Mia] a girl", line)
    story_file = tmp_path / "s.json"
    story_file.write_text(
        json.dumps({"characters": {"Mia": "a girl"}, "panels": [line]}, ensure_ascii=True), encoding="utf-8"
    )
    filed = load_story(story_file)
    assert len(boxed.panels) == len(filed.panels) == 1
    assert boxed.panel_prompt(0) == filed.panel_prompt(0) == "a girl runs a girl sits"
    assert boxed.panels[0].caption == filed.panels[0].caption == "cap more"
    assert story_from_text(*story_to_text(boxed)).panels == boxed.panels  # the box's text reads back the same


def test_crlf_and_lone_cr_still_end_lines():
    story = story_from_text("[Mia] a girl\r\n[Leo] a boy", "[Mia] runs\r[Leo] sits\r\n[Mia] waves")
    assert list(story.characters) == ["Mia", "Leo"] and len(story.panels) == 3


def test_a_byte_order_mark_pasted_at_the_start_of_a_box_is_no_character():
    story = story_from_text("\ufeff[Bob] a man", "\ufeff[Bob] runs")
    assert story.panel_prompt(0) == "a man runs"


@pytest.mark.parametrize("said", ["\u200b", "\u00ad", "\u200b \u200d", "\ufe0f"])
def test_speech_of_only_invisible_characters_is_an_empty_speech_line(tmp_path, said):
    assert_message(error(story_from_text, "[Mia] a girl", f"[Mia] runs # cap @Mia: {said}"), "empty speech line")
    story_file = tmp_path / "s.yaml"
    story_file.write_text(
        json.dumps(
            {
                "characters": {"Mia": "a girl"},
                "panels": [{"prompt": "[Mia] runs", "dialogue": [{"speaker": "Mia", "text": said}]}],
            }
        ),
        encoding="utf-8",
    )
    assert_message(error(load_story, story_file), "empty speech line")


def test_a_caption_of_only_invisible_characters_is_no_caption():
    assert story_from_text("[Mia] a girl", "[Mia] runs # \u200b\u200d").panels[0].caption is None
    assert story_from_text("[Mia] a girl", "[Mia] runs # cap\u200b").panels[0].caption == "cap\u200b"


@pytest.mark.parametrize(
    "line, prompt",
    [
        ("[Bob]runs", "a man runs"),
        ("walks [Mia][Bob] twice", "walks a girl a man twice"),
        ("[Bob]'s hat, by[Mia]", "a man's hat, by a girl"),
        ("[Bob] runs", "a man runs"),
    ],
)
def test_a_tag_written_against_a_word_never_glues_words_in_the_prompt(line, prompt):
    assert story_from_text("[Bob] a man\n[Mia] a girl", line).panel_prompt(0) == prompt
