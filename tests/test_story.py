"""Story parsing, loading and validation: every syntax element and every error message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storydiffusion.errors import StoryError
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import (
    STORY_KEYS,
    Character,
    DialogueLine,
    Panel,
    Story,
    load_story,
    parse_characters,
    parse_panels,
    story_from_text,
    validate_story,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CHARACTERS = """\
[Bob] a tall man with red hair
[Alice] a young woman in a blue coat
"""


@pytest.fixture
def cast():
    return parse_characters(CHARACTERS)


def error(fn, *args, **kwargs) -> StoryError:
    with pytest.raises(StoryError) as info:
        fn(*args, **kwargs)
    return info.value


def assert_message(err: StoryError, *words: str, line: int | None = None) -> None:
    text = str(err)
    if line is not None:
        assert err.line == line
        assert f"line {line}" in text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"


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


# --------------------------------------------------------------------------------------- files


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


FULL_YAML = """\
title: A walk
style: comic
negative_prompt: blurry
seed: 42
characters:
  Bob: a tall man with red hair
  Alice: a young woman in a blue coat
panels:
  - "[Bob] walks to the park # Sunday. @Bob: Nice day."
  - prompt: "[Alice] and [bob] sit on a bench"
    caption: "[Alice] listens."
    dialogue:
      - {speaker: alice, text: "Really?"}
      - {speaker: Bob, text: "Really."}
    seed: 5
  - "[NC] a pond with ducks"
settings:
  steps: 20
  sampling_rate: {1: 0.3, 2: 0.6}
identity_panels:
  alice: [2]
  Bob: 1
"""


def test_load_yaml_full(tmp_path):
    story = load_story(write(tmp_path, "story.yaml", FULL_YAML))
    assert story.title == "A walk"
    assert story.settings.style == "comic"
    assert story.settings.negative_prompt == "blurry"
    assert story.settings.seed == 42
    assert story.settings.steps == 20
    assert story.settings.sampling_rate == {1: 0.3, 2: 0.6}
    assert list(story.characters) == ["Bob", "Alice"]
    p0, p1, p2 = story.panels
    assert p0.characters == ("Bob",) and p0.caption == "Sunday." and p0.dialogue == [DialogueLine("Bob", "Nice day.")]
    assert p1.characters == ("Alice", "Bob") and p1.seed == 5 and p1.caption == "[Alice] listens."
    assert p1.dialogue == [DialogueLine("Alice", "Really?"), DialogueLine("Bob", "Really.")]
    assert p2.characters == ()
    assert story.identity_panels == {"Alice": [1], "Bob": [0]}  # stored 0-based
    assert story.panel_caption(1) == "Alice listens."


def test_load_yml_suffix_and_character_list(tmp_path):
    text = """\
characters:
  - {name: Bob, description: a tall man}
  - name: 지민
    description: a young woman
panels:
  - "[지민] and [Bob] wave # 안녕!"
"""
    story = load_story(write(tmp_path, "s.yml", text))
    assert list(story.characters) == ["Bob", "지민"]
    assert story.title == "Untitled story"


def test_load_json(tmp_path):
    data = {
        "title": "Json story",
        "characters": {"Bob": "a tall man"},
        "panels": ["walks # Hello", {"prompt": "[Bob] sits", "dialogue": [{"speaker": "Bob", "text": "Ah."}]}],
        "settings": {"steps": 10},
    }
    story = load_story(write(tmp_path, "s.json", json.dumps(data, ensure_ascii=False)))
    assert story.panels[0].characters == ("Bob",)
    assert story.panels[1].dialogue == [DialogueLine("Bob", "Ah.")]
    assert story.settings.steps == 10


def test_load_path_as_str(tmp_path):
    story = load_story(str(write(tmp_path, "s.yaml", "characters: {Bob: a man}\npanels: [walks]\n")))
    assert story.panels[0].characters == ("Bob",)


def test_round_trip_to_dict_from_dict(tmp_path):
    story = load_story(write(tmp_path, "story.yaml", FULL_YAML))
    data = json.loads(json.dumps(story.to_dict(), ensure_ascii=False))
    assert data["identity_panels"] == {"Alice": [2], "Bob": [1]}  # 1-based, as in files
    assert data["panels"][1] == {
        "prompt": "[Alice] and [bob] sit on a bench",
        "caption": "[Alice] listens.",
        "dialogue": [{"speaker": "Alice", "text": "Really?"}, {"speaker": "Bob", "text": "Really."}],
        "seed": 5,
    }
    assert data["characters"] == {"Bob": "a tall man with red hair", "Alice": "a young woman in a blue coat"}
    again = Story.from_dict(data)
    assert again == story
    # and the dict is a valid story file
    assert load_story(write(tmp_path, "again.json", json.dumps(data))) == story


def test_round_trip_text_story():
    story = story_from_text("[지민] a woman", "walks # 안녕\n[NC] rain")
    assert Story.from_dict(json.loads(json.dumps(story.to_dict()))) == story


def test_from_dict_not_mapping():
    assert "mapping" in str(error(Story.from_dict, ["x"]))


def test_unknown_top_level_keys(tmp_path):
    err = error(load_story, write(tmp_path, "s.yaml", "title: x\ncharacterz: {}\npanels: [x]\n"))
    assert_message(err, "unknown key", "characterz", "known keys", *STORY_KEYS, line=2)


def test_settings_error_becomes_story_error(tmp_path):
    err = error(load_story, write(tmp_path, "s.yaml", "characters: {Bob: a}\npanels: [x]\nsettings: {stepz: 3}\n"))
    assert isinstance(err, StoryError)
    assert_message(err, "stepz", "known settings")
    err = error(load_story, write(tmp_path, "t.yaml", "characters: {Bob: a}\npanels: [x]\nsettings: {steps: 0}\n"))
    assert "steps must be 1..1000" in str(err)
    err = error(load_story, write(tmp_path, "u.yaml", "characters: {Bob: a}\npanels: [x]\nseed: -1\n"))
    assert "seed must be" in str(err)
    err = error(load_story, write(tmp_path, "v.yaml", "characters: {Bob: a}\npanels: [x]\nsettings: 3\n"))
    assert "settings must be a mapping" in str(err)


def test_top_level_and_settings_conflict(tmp_path):
    text = "characters: {Bob: a}\npanels: [x]\nstyle: comic\nsettings: {style: manga}\n"
    assert_message(error(load_story, write(tmp_path, "s.yaml", text)), "style", "keep only one", line=3)


def test_yaml_syntax_error(tmp_path):
    text = "title: x\ncharacters:\n  Bob: a man\npanels:\n  - [Bob] walks away\n"
    err = error(load_story, write(tmp_path, "bad.yaml", text))
    assert_message(err, "not valid YAML", "quotes", line=5)


def test_unquoted_tag_only_panel_is_a_list(tmp_path):
    text = 'characters:\n  Bob: a man\n  Al: b\npanels:\n  - "[Bob] ok"\n  - [Bob]\n'
    assert_message(error(load_story, write(tmp_path, "s.yaml", text)), "panel 2 is a list", "quotes", line=6)


def test_panel_errors_point_into_yaml_file(tmp_path):
    text = 'characters:\n  Bob: a man\n  Al: b\npanels:\n  - "[Bob] ok"\n\n  - "[Carol] sings"\n'
    assert_message(error(load_story, write(tmp_path, "s.yaml", text)), "panel 2", "[Carol]", "Bob, Al", line=7)
    text = 'characters:\n  Bob: a man\n  Al: b\npanels:\n  - "[Bob] ok"\n  - an empty room\n'
    assert_message(error(load_story, write(tmp_path, "t.yaml", text)), "panel 2 names no character", line=6)


def test_json_syntax_error(tmp_path):
    err = error(load_story, write(tmp_path, "bad.json", '{\n  "title": "x",\n}\n'))
    assert_message(err, "not valid JSON", line=3)


def test_file_problems(tmp_path):
    assert "does not exist" in str(error(load_story, tmp_path / "missing.yaml"))
    assert ".yaml, .yml or .json" in str(error(load_story, write(tmp_path, "s.txt", "x")))
    assert "is empty" in str(error(load_story, write(tmp_path, "e.yaml", "# nothing\n")))
    assert "must be a mapping" in str(error(load_story, write(tmp_path, "l.yaml", "- a\n- b\n")))
    bad = tmp_path / "latin.yaml"
    bad.write_bytes("title: caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in str(error(load_story, bad))
    assert "cannot read" in str(error(load_story, tmp_path.joinpath("dir.yaml").mkdir() or tmp_path / "dir.yaml"))


def test_file_no_panels(tmp_path):
    assert "no panels" in str(error(load_story, write(tmp_path, "s.yaml", "characters: {Bob: a}\n")))
    assert "no panels" in str(error(load_story, write(tmp_path, "t.yaml", "characters: {Bob: a}\npanels: []\n")))


@pytest.mark.parametrize(
    "body, words",
    [
        ("characters: [a, b]\npanels: [x]", ["character 1 must be a mapping"]),
        ("characters: [{name: Bob, description: a, age: 3}]\npanels: [x]", ["unknown key", "age"]),
        ("characters: Bob\npanels: [x]", ["characters must be a mapping"]),
        ("characters: {Bob: }\npanels: [x]", ["Bob has no description"]),
        ("characters: {Bob: a, BOB: b}\npanels: [x]", ["defined twice"]),
        ("characters: {NC: a}\npanels: ['[NC] x']", ["NC is reserved"]),
        ("characters: {7: a}\npanels: [x]", ["must be text", "quotes"]),
        ("characters: {Bob: a}\npanels: x", ["panels must be a list"]),
        ("characters: {Bob: a}\npanels: [3]", ["panel 1 must be text or a mapping"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, captoin: y}]", ["unknown key", "captoin", "prompt"]),
        ("characters: {Bob: a}\npanels: [{caption: y}]", ["panel 1 needs a 'prompt'"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, seed: 1.5}]", ["seed must be a whole number"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: hi}]", ["dialogue must be a list"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [hi]}]", ["'speaker' and 'text'"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: Al, text: hi}]}]", ["@Al", "Bob"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: Bob, text: ' '}]}]", ["empty speech"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, caption: '[Al] hi'}]", ["[Al]"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, caption: [1]}]", ["caption must be text"]),
        ("title: [1]\ncharacters: {Bob: a}\npanels: [x]", ["title must be text"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: [1]", ["identity_panels must be a mapping"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Al: [1]}", ["unknown character", "Bob"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: [0]}", ["starting at 1"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: one}", ["list of panel numbers"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: [2]}", ["panel 2 does not exist", "1 panels"]),
        ("characters: {Bob: a}\npanels: ['[NC] x']\nidentity_panels: {Bob: [1]}", ["panel 1 does not show Bob"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: []}", ["is empty"]),
        ("characters: {Bob: a}\npanels: [x, y]\nidentity_panels: {Bob: [1, 1]}", ["twice"]),
        ("characters: {Bob: a}\npanels: [x, y]\nsettings: {max_panels: 1}", ["2 panels but max_panels is 1"]),
    ],
)
def test_file_errors(tmp_path, body, words):
    err = error(load_story, write(tmp_path, "s.yaml", body + "\n"))
    assert_message(err, *words)


def test_identity_panels_single_number(tmp_path):
    story = load_story(write(tmp_path, "s.yaml", "characters: {Bob: a}\npanels: [x, y]\nidentity_panels: {bob: 2}\n"))
    assert story.identity_panels == {"Bob": [1]}


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


def test_panels_of_many_characters():
    names = [f"P{i}" for i in range(12)]
    chars = parse_characters("\n".join(f"[{n}] person {n}" for n in names))
    (panel,) = parse_panels(" ".join(f"[{n}]" for n in names) + " stand in a row", chars)
    assert panel.characters == tuple(names)


# ------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["lighthouse.yaml", "two_friends.yaml", "korean.yaml"])
def test_examples_load(name):
    story = load_story(EXAMPLES / name)
    assert story.panels
    for i in range(len(story.panels)):
        assert "[" not in story.panel_prompt(i)
        caption = story.panel_caption(i)
        assert caption is None or "[" not in caption


def test_example_details():
    lighthouse = load_story(EXAMPLES / "lighthouse.yaml")
    assert len(lighthouse.characters) == 1 and len(lighthouse.panels) == 6
    assert lighthouse.settings.style == "comic"
    assert any(p.characters == () for p in lighthouse.panels)
    assert any(p.dialogue for p in lighthouse.panels)
    friends = load_story(EXAMPLES / "two_friends.yaml")
    assert len(friends.characters) == 2 and len(friends.panels) == 6
    assert any(len(p.characters) == 2 for p in friends.panels)
    assert friends.identity_panels == {"Mia": [0], "Leo": [1]}
    korean = load_story(EXAMPLES / "korean.yaml")
    assert any(any("\uac00" <= ch <= "\ud7a3" for ch in name) for name in korean.characters)
    assert any(p.dialogue for p in korean.panels)


@pytest.mark.parametrize("name", ["lighthouse.yaml", "two_friends.yaml", "korean.yaml"])
def test_story_to_text_reads_back_as_the_same_story(name):
    from storydiffusion.story import story_to_text

    story = load_story(Path(__file__).resolve().parent.parent / "examples" / name)
    again = story_from_text(*story_to_text(story), title=story.title, settings=story.settings)
    assert [(p.prompt, p.caption, p.dialogue, p.characters) for p in again.panels] == [
        (p.prompt, p.caption, p.dialogue, p.characters) for p in story.panels
    ]
    assert again.characters == story.characters
