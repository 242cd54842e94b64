"""Structured input files: size, depth, alias expansion, duplicate keys, tags, non-finite numbers, text, file kinds."""

from __future__ import annotations

import os

import pytest

from storydiffusion import structured
from storydiffusion.structured import (
    MAX_DEPTH,
    MAX_NODES,
    InputFileError,
    check_regular_file,
    parse_json,
    parse_yaml,
    read_text,
)

LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcde", "bcdef")]
    + ["g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]"]
)


def refused(parse, text: str) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        parse(text, "story.yaml")
    return info.value


def test_plain_yaml_and_json_read_as_before():
    assert parse_yaml("title: T\npanels: ['[Bob] walks']\n", "s.yaml") == {"title": "T", "panels": ["[Bob] walks"]}
    assert parse_json('{"a": [1, {"b": "[[[{{{"}]}', "s.json") == {"a": [1, {"b": "[[[{{{"}]}
    assert parse_yaml("", "s.yaml") is None


def test_yaml_anchors_and_merges_within_the_budget_still_work():
    assert parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "s.yaml")["other"] == {"x": 1, "y": 2}


def test_a_second_merge_key_in_one_mapping_is_refused_with_the_list_form():
    """PyYAML merged both, silently: YAML allows one ``<<`` per mapping and a list of anchors in it."""
    text = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n"
    with pytest.raises(
        InputFileError, match=r"key '<<' twice in one mapping: merge several in one: <<: \[\*a, \*b\]"
    ) as error:
        parse_yaml(text, "s.yaml")
    assert error.value.line == 5
    listed = "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: [*a, *b]\n"
    assert parse_yaml(listed, "s.yaml")["c"] == {"x": 1, "y": 2}


@pytest.mark.parametrize("text", ["characters: &c\n  Mia: a girl\n  self: *c\n", "characters: {Mia: &c [a, *c]}\n"])
def test_an_alias_inside_its_own_anchor_is_refused_at_once_not_followed_forever(text):
    assert "holds itself through a YAML alias" in str(refused(parse_yaml, text))
    assert parse_yaml("a: &x [1]\nb: [*x, *x]\nc: &y {k: *x}\nd: *y\n", "s.yaml")["d"] == {"k": [1]}  # repeats are fine


def test_billion_laughs_is_refused_without_expanding():
    error = refused(parse_yaml, LAUGHS)
    assert f"more than {MAX_NODES:,} values" in str(error) and "alias" in str(error)


def test_a_long_list_without_aliases_is_refused_without_blaming_aliases(monkeypatch):
    def composed(loader):
        raise AssertionError("the file was composed: too many values are refused while it is scanned, much faster")

    monkeypatch.setattr(structured._CoreSchemaLoader, "get_single_node", composed)
    error = refused(parse_yaml, "panels: [" + ",".join("x" for _ in range(MAX_NODES + 1)) + "]\n")
    assert f"holds more than {MAX_NODES:,} values" in str(error) and "alias" not in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5),
        "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * (MAX_DEPTH + 5) + "x: 1\n",
        "a: " + "[" * 100_000,
    ],
    ids=["flow", "block", "unclosed"],
)
def test_deep_yaml_is_an_input_error_not_a_recursion_error(text):
    assert "nested more than" in str(refused(parse_yaml, text))


def test_deep_json_is_an_input_error_with_its_line():
    error = refused(parse_json, '{\n"a":\n' + "[" * 100_000)
    assert "nested more than" in str(error) and error.line == 3


def test_brackets_inside_json_strings_do_not_count_as_depth():
    assert parse_json('{"a": "' + "[" * 100 + '"}', "s.json") == {"a": "[" * 100}


@pytest.mark.parametrize("tag", ["!!python/object:os.system", "!!str", "!custom", "!!binary"])
def test_yaml_tags_are_refused_with_their_line(tag):
    error = refused(parse_yaml, f"title: T\nseed: {tag} 5\n")
    assert tag in str(error) and error.line == 2


def test_duplicate_keys_are_refused_in_yaml_and_json():
    error = refused(parse_yaml, "title: A\npanels: [x]\ntitle: B\n")
    assert "'title' twice" in str(error) and error.line == 3
    assert "'title' twice" in str(refused(parse_json, '{"title": "A", "title": "B"}'))
    error = refused(parse_json, '{"title": "A",\n "panels": [{"x": 1}, {"x": 2}],\n "title": "B"}')
    assert "'title' twice" in str(error) and error.line == 3


def test_a_key_longer_than_yaml_allows_is_named_not_left_to_pyyaml():
    error = refused(parse_yaml, "title: A\n" + '"' + "k" * 1100 + '": 1\n')
    assert error.line == 2 and "longer than the 1024 characters YAML allows a key" in str(error)
    assert "longer than" not in str(refused(parse_yaml, "a: b: c\n"))  # a short key's error stays PyYAML's


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_nan_and_infinity_are_refused(constant):
    assert constant in str(refused(parse_json, f'{{"settings": {{"guidance": {constant}}}}}'))


def test_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" * 100)
    with pytest.raises(InputFileError, match=r"big.yaml is 500 bytes, more than the 10 bytes allowed"):
        read_text(path, "story file", max_bytes=10)
    assert read_text(path, "story file", max_bytes=10_000).startswith("a: 1")


def test_read_text_names_missing_folders_and_bad_encodings(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_text(tmp_path / "nope.yaml", "story file")
    with pytest.raises(InputFileError, match="is a folder"):
        read_text(tmp_path, "story file")
    (tmp_path / "latin.yaml").write_bytes("title: caf\xe9".encode("latin-1"))
    with pytest.raises(InputFileError, match="not UTF-8"):
        read_text(tmp_path / "latin.yaml", "story file")
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbftitle: T")
    assert read_text(tmp_path / "bom.yaml", "story file") == "title: T"


@pytest.mark.parametrize(
    "text, where",
    [
        ('{"settings": {"guidance": Infinity}}', "settings.guidance is Infinity"),
        ('{"panels": [{"seed": -Infinity}]}', "panels[0].seed is -Infinity"),
        ('{"a": 1e999}', "a is Infinity"),
        ("NaN", "the file is NaN"),
    ],
)
def test_json_non_finite_numbers_are_named_by_their_key_path(text, where):
    assert where in str(refused(parse_json, text)) and "not a number" in str(refused(parse_json, text))


@pytest.mark.parametrize("parse", [parse_json, parse_yaml])
def test_lone_surrogates_are_refused_by_key_path_in_yaml_and_json(parse):
    error = refused(parse, '{"title": "bad \\ud800"}')
    assert "title holds a lone surrogate \\ud800" in str(error) and "not text" in str(error)
    assert "a key holds a lone surrogate" in str(refused(parse, '{"\\udc80": 1}'))


def test_non_finite_numbers_and_lone_surrogates_point_at_their_line():
    """The parsed data no longer knows its lines: they are found again from the text, only for a file that fails."""
    text = '{\n\t"title": "NaN",\n\t"settings": {"steps": 3,\n\t\t"guidance": NaN}}'
    assert refused(parse_json, text).line == 4  # the quoted "NaN" on line 2 is text
    assert refused(parse_json, '{"a": [1,\n 2,\n 1e999]}').line == 3
    assert refused(parse_json, '{"a": 1,\n"b": "x\\ud800"}').line == 2
    assert refused(parse_yaml, 'a: 1\nb:\n  - "x\\ud800"\n').line == 3


def test_paired_surrogates_are_text():
    assert parse_json('{"title": "\\ud83d\\ude00"}', "s.json") == {"title": "\U0001f600"}


def test_only_regular_files_are_read_and_a_pipe_is_never_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(InputFileError, match="pipe.yaml: it is not a regular file"):
        read_text(tmp_path / "pipe.yaml", "story file")
    with pytest.raises(InputFileError, match="it is a folder"):
        check_regular_file(tmp_path, "story file")
    (tmp_path / "s.yaml").write_text("a: 1")
    assert check_regular_file(tmp_path / "s.yaml", "story file") == 4


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("1:30", "1:30"),  # YAML 1.1: the number 90
        ("no", "no"),  # YAML 1.1: false (the "Norway problem")
        ("On", "On"),
        ("2024-05-01", "2024-05-01"),  # YAML 1.1: a date
        ("1_000", "1_000"),
        ("=", "="),  # YAML 1.1's value tag, which PyYAML cannot even construct
        ("<<", "<<"),
        ("0777", 777),  # YAML 1.2 has no 0-prefixed octal
        ("0o17", 15),
        ("0x1F", 31),
        ("1e5", "1e5"),  # as in YAML 1.1: a fraction has a decimal point, so a message quotes it as written
        ("1.5e3", 1500.0),
        ("-.5", -0.5),
        ("true", True),
        ("FALSE", False),
        ("~", None),
        ("12", 12),
    ],
)
def test_yaml_plain_scalars_follow_the_yaml_1_2_core_schema(written, read):
    value = parse_yaml(f"a: {written}\n", "s.yaml")["a"]
    assert value == read and type(value) is type(read)


def test_a_story_keeps_words_and_clock_times_yaml_1_1_would_turn_into_booleans_and_numbers(tmp_path):
    from storydiffusion.story import load_story

    path = tmp_path / "s.yaml"
    path.write_text(
        "title: 2024-05-01\ncharacters:\n  No: a girl in a red dress\n"
        "panels:\n  - prompt: '[No] waits'\n    caption: 1:30\n  - prompt: '[No] sleeps'\n    caption: off\n",
        encoding="utf-8",
    )
    story = load_story(path)
    assert story.title == "2024-05-01" and list(story.characters) == ["No"]
    assert [panel.caption for panel in story.panels] == ["1:30", "off"]


def test_a_tab_indent_and_a_control_character_are_told_with_their_line_and_fix():
    error = refused(parse_yaml, "characters:\n\tBob: a man\n")
    assert error.line == 2 and "replace the tabs at the start of the line with spaces" in str(error)
    error = refused(parse_yaml, 'panels:\n  - "[Bob] walks\x07"\n')  # YAML's reader refused it with a position
    assert error.line == 2 and "control character U+0007: remove it" in str(error)
    assert "position" not in str(error) and "\n" not in str(error)
