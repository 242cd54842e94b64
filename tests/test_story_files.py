"""Story files (storydiffusion/story/files.py, mapping.py): YAML and JSON, line numbers, every file error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from story_helpers import assert_message, error

from storydiffusion.errors import StoryError
from storydiffusion.resources import data_path
from storydiffusion.story import STORY_KEYS, DialogueLine, Story, load_story, story_from_text

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


@pytest.mark.parametrize(
    "item, rest",
    [('"[Bob] walks" away', "'away'"), ("'[Bob] it''s' fine", "'fine'"), ('"[Bob] \\" walks" on', "'on'")],
)
def test_a_panel_line_quoted_only_in_part_is_told_what_follows_its_quotes(tmp_path, item, rest):
    text = f"title: x\ncharacters:\n  Bob: a man\npanels:\n  - {item}\n"
    err = error(load_story, write(tmp_path, "bad.yaml", text))
    assert_message(err, "not valid YAML", f"close before its end: {rest} follows them", "whole line in quotes", line=5)
    assert "especially when" not in str(err)


@pytest.mark.parametrize(
    "text, words",
    [
        ("title: x\ncharacters:\n\tBob: a man\n", ["found character '\\t'"]),  # a tab as indent
        ("title: x\n---\ntitle: y\n", ["expected a single document in the stream, but found another document"]),
    ],
)
def test_a_yaml_error_far_from_any_panel_line_says_no_word_of_quoting_panels(tmp_path, text, words):
    err = error(load_story, write(tmp_path, "bad.yaml", text))
    assert_message(err, "not valid YAML", *words)
    assert "quotes" not in str(err)


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


@pytest.mark.parametrize(
    ("body", "words", "line"),
    [
        (
            'characters:\n  Bob: a\npanels:\n  - "[Bob] x"\n  - "[Bob] y"\nidentity_panels:\n  Bob: [5]\n',
            ["identity_panels.Bob: panel 5 does not exist", "2 panels"],
            6,
        ),
        (
            'characters: {Bob: a}\npanels:\n  - "[NC] x"\n  - "[Bob] y"\nidentity_panels: {Bob: 1}\n',
            ["panel 1 does not show Bob"],
            5,
        ),
        (
            'characters: {Bob: a, Ann: b}\npanels:\n  - "[Bob] x"\n  - prompt: "[Bob] and [Ann] y"\n'
            "    regions: {Bob: left, Ann: [0, 0, 2, 1]}\n",
            ["panel 2: regions.Ann is [0, 0, 2, 1]", "a box is"],
            4,
        ),
        (
            'characters: {Bob: a, Ann: b}\npanels:\n  - "[Bob] and [Ann] x"\nidentity_panels:\n  Bob: 1\n  Ann: 1\n',
            ["identity_panels: panel 1 is listed for both Bob and Ann"],
            4,
        ),
    ],
)
def test_checks_of_the_whole_story_point_at_the_line_they_name(tmp_path, body, words, line):
    assert_message(error(load_story, write(tmp_path, "s.yaml", body)), *words, line=line)


def test_json_errors_point_into_the_file_like_yaml_ones(tmp_path):
    """Panels, settings and a key given twice are found on their line, tabs and escapes included."""
    text = '{\n\t"characters": {"Bob": "a \\u00e9 man"},\n\t"panels": [\n\t\t"[Bob] ok",\n\t\t"[Carol] sings"\n\t]\n}\n'
    assert_message(error(load_story, write(tmp_path, "p.json", text)), "panel 2", "[Carol]", line=5)
    text = '{\n  "characters": {"Bob": "a"},\n  "panels": ["[Bob] ok"],\n  "settings": {\n    "steps": 0\n  }\n}\n'
    assert_message(error(load_story, write(tmp_path, "s.json", text)), "settings.steps", line=5)
    text = '{\n  "characters": {"Bob": "a", "x\\"": {}},\n  "panels": [{"seed": 1}, {"seed": 2}],\n  "panels": []\n}\n'
    assert_message(error(load_story, write(tmp_path, "d.json", text)), "'panels' twice", line=4)


def test_file_problems(tmp_path):
    assert "does not exist" in str(error(load_story, tmp_path / "missing.yaml"))
    assert ".yaml, .yml or .json" in str(error(load_story, write(tmp_path, "s.txt", "x")))
    assert "has a suffix but no name" in str(error(load_story, write(tmp_path, ".yaml", "title: x\n")))
    assert "is empty" in str(error(load_story, write(tmp_path, "e.yaml", "# nothing\n")))
    assert "must be a mapping" in str(error(load_story, write(tmp_path, "l.yaml", "- a\n- b\n")))
    bad = tmp_path / "latin.yaml"
    bad.write_bytes("title: caf\xe9\n".encode("latin-1"))
    assert "UTF-8" in str(error(load_story, bad))
    assert "cannot read" in str(error(load_story, tmp_path.joinpath("dir.yaml").mkdir() or tmp_path / "dir.yaml"))
    assert str(error(load_story, "")).startswith("the story file's name is empty: give the path of a .yaml")
    assert (
        str(error(load_story, tmp_path))
        == f"{tmp_path.name} is a folder, not a story file: give a .yaml, .yml or .json file in it"
    )


def test_file_no_panels(tmp_path):
    assert "no panels" in str(error(load_story, write(tmp_path, "s.yaml", "characters: {Bob: a}\n")))
    assert "no panels" in str(error(load_story, write(tmp_path, "t.yaml", "characters: {Bob: a}\npanels: []\n")))


@pytest.mark.parametrize(
    "body, words",
    [
        ("characters: [a, b]\npanels: [x]", ["character 1 must be a mapping"]),
        ("characters: [{name: Bob, description: a, age: 3}]\npanels: [x]", ["unknown key", "age"]),
        ("characters: [{description: a man}]\npanels: [x]", ["character 1 has no 'name'", "name: Bob"]),
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
        (
            "characters: {Bob: a}\npanels: [x]\nsettings: {sampling_rate: '1:0.5,2:0.3'}",
            ["settings.sampling_rate must be a number or a mapping", "sampling_rate: {1: 0.5, 2: 0.3}"],
        ),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: hi}]", ["dialogue must be a list"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [hi]}]", ["'speaker' and 'text'"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: Al, text: hi}]}]", ["@Al", "Bob"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: Bob, text: ' '}]}]", ["empty speech"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, caption: '[Al] hi'}]", ["panel 1: caption names", "[Al]"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, caption: 'a [Bob'}]", ["panel 1: caption has an unbalanced"]),
        (
            "characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: Bob, text: 'see [Al]'}]}]",
            ["panel 1: dialogue 1: text names unknown character [Al]"],
        ),
        ("characters: {Bob: a}\npanels: [{prompt: x, caption: [1]}]", ["caption must be text"]),
        ("title: [1]\ncharacters: {Bob: a}\npanels: [x]", ["title must be text"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: [1]", ["identity_panels must be a mapping"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Al: [1]}", ["unknown character", "Bob"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: [0]}", ["starting at 1"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: one}", ["list of panel numbers"]),
        (
            "characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: [2]}",
            ["panel 2 does not exist", "the story has 1 panel"],
        ),
        ("characters: {Bob: a}\npanels: ['[NC] x']\nidentity_panels: {Bob: [1]}", ["panel 1 does not show Bob"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: []}", ["is empty"]),
        ("characters: {Bob: a}\npanels: [x, y]\nidentity_panels: {Bob: [1, 1]}", ["twice"]),
        (
            "characters: {Bob: a}\npanels: [x, y]\nidentity_panels: {Bob: [1], bob: [2]}",
            ["names Bob twice", "keep one"],
        ),
        ('characters: {José: a}\npanels: [x, y]\nidentity_panels: {"Jos\\u00e9": [1], "Jose\\u0301": [2]}', ["twice"]),
        ("characters: {Bob: a}\npanels: [x, y]\nsettings: {max_panels: 1}", ["2 panels but max_panels is 1"]),
    ],
)
def test_file_errors(tmp_path, body, words):
    err = error(load_story, write(tmp_path, "s.yaml", body + "\n"))
    assert_message(err, *words)


def test_identity_panels_single_number(tmp_path):
    story = load_story(write(tmp_path, "s.yaml", "characters: {Bob: a}\npanels: [x, y]\nidentity_panels: {bob: 2}\n"))
    assert story.identity_panels == {"Bob": [1]}


# ------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "name",
    [
        "lighthouse.yaml",
        "two_friends.yaml",
        "korean.yaml",
        "arabic.yaml",
        "market_day.yaml",
        "from_a_photo.yaml",
        "from_a_face.yaml",
        "posed.yaml",
    ],
)
def test_examples_load(name):
    story = load_story(data_path("examples", name))
    assert story.panels
    for i in range(len(story.panels)):
        assert "[" not in story.panel_prompt(i)
        caption = story.panel_caption(i)
        assert caption is None or "[" not in caption


def test_example_details():
    lighthouse = load_story(data_path("examples", "lighthouse.yaml"))
    assert len(lighthouse.characters) == 1 and len(lighthouse.panels) == 6
    assert lighthouse.settings.style == "comic"
    assert any(p.characters == () for p in lighthouse.panels)
    assert any(p.dialogue for p in lighthouse.panels)
    friends = load_story(data_path("examples", "two_friends.yaml"))
    assert len(friends.characters) == 2 and len(friends.panels) == 6
    assert any(len(p.characters) == 2 for p in friends.panels)
    assert friends.identity_panels == {"Mia": [0], "Leo": [1]}
    korean = load_story(data_path("examples", "korean.yaml"))
    assert any(any("\uac00" <= ch <= "\ud7a3" for ch in name) for name in korean.characters)
    assert any(p.dialogue for p in korean.panels)


def test_a_panel_mapping_reads_its_prompt_as_a_panel_line(tmp_path):
    """A caption, speech and places written in a mapping's prompt are the page's, never words for the model
    (examples/posed.yaml lost its caption and bubble this way)."""
    head = "characters:\n  Ada: a sailor\n  Ben: a cook\npanels:\n"
    story = load_story(
        write(tmp_path, "s.yaml", head + '  - prompt: "[Ada@left] and [Ben] wave # Evening. @Ada: Bye!"\n    seed: 3\n')
    )
    panel = story.panels[0]
    assert panel.prompt == "[Ada] and [Ben] wave" and panel.caption == "Evening." and panel.seed == 3
    assert panel.dialogue == [DialogueLine("Ada", "Bye!")] and set(panel.regions) == {"Ada"}
    posed = load_story(data_path("examples", "posed.yaml"))
    assert posed.panels[1].dialogue and posed.panels[2].caption == "Evening."
    assert not any("#" in p.prompt or "@" in p.prompt for p in posed.panels)
    twice = head + '  - prompt: "[Ada] waves # Evening."\n    caption: Night.\n'
    with pytest.raises(StoryError, match=r"line 5: panel 1 gives its caption twice.*keep one of them"):
        load_story(write(tmp_path, "twice.yaml", twice))
    spoken = head + '  - prompt: "[Ada] waves @Ada: Bye!"\n'
    with pytest.raises(StoryError, match=r"speech '@Ada:' before '#'"):
        load_story(write(tmp_path, "spoken.yaml", spoken))


def test_nc_takes_no_place(tmp_path):
    """[NC@left] was a KeyError, a traceback, in every command and the studio."""
    with pytest.raises(StoryError, match=r"gives \[NC\] a place.*write \[NC\] alone"):
        story_from_text("[Ann] a woman", "[NC@left] an empty field # Nobody came.")
    mapping = "characters:\n  Ann: a woman\npanels:\n  - prompt: '[nc@0,0,1,1] sky'\n"
    with pytest.raises(StoryError, match=r"line 4: .*gives \[NC\] a place"):
        load_story(write(tmp_path, "s.yaml", mapping))


# ------------------------------------------------------------------ key paths and values in messages


@pytest.mark.parametrize(
    "body, words, line",
    [
        ("settings: {guidance: abc}", ["settings.guidance must be", "'abc'", "not a number"], 3),
        ("settings: {sampling_rate: {12: 2}}", ["settings.sampling_rate.12 must be between 0 and 1, got 2"], 3),
        ("seed: '7'", ["seed must be 0..9223372036854775807, got '7'"], 3),
        ("negative_prompt: [ugly]", ["negative_prompt must be text, not a list (['ugly'])"], 3),
        ("settings: []", ["settings must be a mapping", "[]"], 3),
        ("title: {a: 1}", ["title must be text, not a mapping ({'a': 1})"], 3),
        ("settings:\n  steps: 4\n  guidance: 5\n  width: 65", ["settings.width must be a multiple of 8"], 6),
        ("settings:\n  steps: 4\n  sampling_rate: {12: 2}", ["settings.sampling_rate.12 must be between"], 5),
        ("settings:\n  steps: 4\n  colour: red", ["settings: unknown setting(s) colour"], 5),
        ("settings:\n  seed: 4\n  seeds: -1", ["settings: unknown setting(s) seeds"], 5),
    ],
)
def test_top_level_values_name_their_key_path_value_and_line(tmp_path, body, words, line):
    text = "characters: {Bob: a}\npanels: [x]\n" + body + "\n"
    assert_message(error(load_story, write(tmp_path, "s.yaml", text)), *words, line=line)


@pytest.mark.parametrize(
    "body, words",
    [
        ("characters: [1, 2]\npanels: [x]", ["characters: character 1 must be a mapping", "(1)"]),
        ("characters: {Bob: [tall]}\npanels: [x]", ["characters.Bob.description must be text", "(['tall'])"]),
        ("characters: [{name: Bob, description: 3}]\npanels: [x]", ["characters.Bob.description", "(3)"]),
        ("characters: {Bob: a}\npanels: {a: 1}", ["panels must be a list of panels, not a mapping ({'a': 1})"]),
        ("characters: {Bob: a}\npanels: [x, 5]", ["panels: panel 2 must be text or a mapping", "(5)"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, seed: '7'}]", ["panel 1: seed must be a whole number", "'7'"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, seed: true}]", ["panel 1: seed", "True"]),
        ("characters: {Bob: a}\npanels: [{prompt: [x]}]", ["panel 1: prompt must be text", "(['x'])"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: Bob, text: 1}]}]", ["dialogue 1: text"]),
        ("characters: {Bob: a}\npanels: [{prompt: x, dialogue: [{speaker: 1}]}]", ["panel 1: dialogue 1: speaker"]),
        ("characters: {Bob: a}\npanels: [x]\nidentity_panels: {Bob: [x]}", ["identity_panels.Bob has 'x'"]),
    ],
)
def test_values_inside_characters_and_panels_name_their_place(tmp_path, body, words):
    assert_message(error(load_story, write(tmp_path, "s.yaml", body + "\n")), *words)


def test_json_story_values_name_their_key_path(tmp_path):
    data = {"characters": {"Bob": "a"}, "panels": ["x"], "settings": {"width": 1e9, "steps": 3}}
    err = error(load_story, write(tmp_path, "s.json", json.dumps(data)))
    assert_message(err, "settings.width must be a multiple of 8 between 64 and 4096, got 1000000000.0")


@pytest.mark.parametrize(
    ("name", "text", "where", "line"),
    [
        ("s.json", '{"characters": {"Bob": "a tall\\u0000man"}, "panels": ["[Bob] walks"]}', "characters: Bob", 1),
        ("s.json", '{"characters": {"Bob": "a man"},\n\t"title": "x\\u001b[31m", "panels": ["x"]}', "title", 2),
        ("s.yaml", 'characters:\n  Bob: a man\npanels:\n  - "[Bob] walks\\x7f"\n', "panels, item 1", 4),
    ],
)
def test_a_control_character_let_in_by_an_escape_is_refused_where_it_is(tmp_path, name, text, where, line):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StoryError, match=rf"^line {line}: {name}: {where} holds the control character U\+00"):
        load_story(path)


def test_tabs_and_line_breaks_in_a_story_text_stay_allowed(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"characters": {"Bob": "a man\\tin a coat"}, "panels": ["[Bob] walks # Line one.\\nTwo."]}')
    assert load_story(path).panels[0].caption


@pytest.mark.parametrize("key", ["caption", "prompt"])
def test_a_control_character_beside_a_bracket_in_a_dict_story_is_named_as_such(key):
    """A story.json edited by hand is read as a dict (no file scan first): the control character is what is
    wrong, not the '[' of its colour escape."""
    from storydiffusion.story import Story

    panel = {"prompt": "[Bob] walks", key: "[Bob] a\x00b\x1b[31mred" if key == "prompt" else "a\x00b\x1b[31mred"}
    with pytest.raises(StoryError, match=r"holds the control character U\+0000"):
        Story.from_dict({"characters": {"Bob": "a man"}, "panels": [panel]})


@pytest.mark.parametrize(
    ("rest", "says"),
    [
        ("    reference: faces/nora.png\n", "line 4: characters.Nora.reference: 'faces/nora.png' does not exist"),
        ("    reference: faces\n", "line 4: characters.Nora.reference: 'faces' is a folder, not an image"),
        (
            "  - prompt: '[Nora] waves'\n    control: {type: canny, image: ../poses/x.png}\n",
            "line 10: panel 2: control.image: '../poses/x.png' does not",
        ),
    ],
)
def test_a_missing_picture_is_named_as_the_file_writes_it_with_its_line(tmp_path, rest, says):
    """It was found only when the run reached it, then named by its full path without a line."""
    (tmp_path / "faces").mkdir()
    head = "characters:\n  Nora:\n    description: a woman\n"
    text = head + rest if "reference" in rest else head + "panels:\n  - '[Nora] walks'\n" + rest
    if "reference" in rest:
        text += "panels:\n  - '[Nora] walks'\n"
    else:
        text = text.replace("panels:\n  - '[Nora] walks'\n", "panels:\n  - '[Nora] walks'\n\n\n\n", 1)
    (tmp_path / "s.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(StoryError) as refused:
        load_story(tmp_path / "s.yaml")
    assert str(refused.value).startswith(says) and str(tmp_path) not in str(refused.value)
    assert "a relative path is read from the folder of s.yaml" in str(refused.value)
