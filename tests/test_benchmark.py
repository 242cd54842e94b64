"""`benchmark`: prompt sets read in their published shapes (our own words), variants drawn and compared,
the comparison's statistics, and the output folder's safety."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storydiffusion.cli import main
from storydiffusion.errors import SettingsError, StoryError
from storydiffusion.evaluation import evaluate_run, tiny_clip
from storydiffusion.evaluation.benchmark import variants_from
from storydiffusion.evaluation.comparison import bootstrap, compare
from storydiffusion.evaluation.prompt_sets import read_prompt_set

FAST = ["--model", "tiny-sdxl", "--steps", "2", "--height", "64", "--width", "64", "--device", "cpu", "--quiet"]

CONSISTORY = """\
animals:
- concept_token: fox
  style: A watercolor painting of
  subject: A small red fox with a white-tipped tail
  settings:
  - sleeping under a pine tree
  - "crossing a frozen [river] # at dawn"
objects:
- concept_token: lamp
  style: A studio photo of
  subject: An old brass oil lamp
  settings: [on a wooden desk, in a dark cellar]
"""


def vistory_folder(root: Path) -> Path:
    """Two stories in ViStoryBench's layout: numbered folders, story.json (with a BOM), reference pictures."""
    stories = {
        "01": {
            "Characters": {
                "Old Sailor": {
                    "name_en": "Old Sailor",
                    "prompt_en": "an old sailor with a grey beard",
                    "tag": "realistic_human",
                },
                "Gull": {"name_en": "Gull", "prompt_en": "a white seagull", "tag": "non_human"},
                "../escape": {"name_en": "x", "prompt_en": "a ghost"},
            },
            "Shots": [
                {
                    "index": 1,
                    "Plot Correspondence": {"en": "The sailor mends a net."},
                    "Setting Description": {"en": "A harbour at dawn."},
                    "Shot Perspective Design": {"en": "Medium shot"},
                    "Characters Appearing": {"en": ["Old Sailor"]},
                    "Static Shot Description": {"en": "He sits on a crate."},
                },
                {
                    "index": 2,
                    "Plot Correspondence": {"en": "A gull lands beside him."},
                    "Setting Description": {"en": "The same quay."},
                    "Shot Perspective Design": {"en": "Wide shot"},
                    "Characters Appearing": {"en": ["Old Sailor", "Gull"]},
                    "Static Shot Description": {"en": "The gull looks at the net."},
                },
                {
                    "index": 3,
                    "Plot Correspondence": {"en": "Night falls."},
                    "Setting Description": {"en": "Empty harbour."},
                    "Shot Perspective Design": {"en": "Long shot"},
                    "Characters Appearing": {"en": []},
                    "Static Shot Description": {"en": "Boats under the moon."},
                },
            ],
        },
        "02": {
            "Characters": {"Gull": {"prompt_en": "a white seagull"}},
            "Shots": [
                {"Plot Correspondence": {"en": "It flies."}, "Characters Appearing": {"en": ["Gull"]}},
                {"Plot Correspondence": {"en": "It dives."}, "Characters Appearing": {"en": ["Gull"]}},
            ],
        },
    }
    for number, story in stories.items():
        folder = root / number
        (folder / "image" / "Old Sailor").mkdir(parents=True)
        (folder / "story.json").write_text("\ufeff" + json.dumps(story), encoding="utf-8")
        Image.new("RGB", (48, 48), (90, 60, 30)).save(folder / "image" / "Old Sailor" / "00.png")
    (root / "notes").mkdir()  # not a numbered story folder: skipped
    return root


# ------------------------------------------------------------------------------------ prompt sets


def test_a_consistory_set_becomes_one_story_per_subject(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text(CONSISTORY, encoding="utf-8")
    stories = read_prompt_set(path)
    assert [s.name for s in stories] == ["animals_0", "objects_0"]
    fox = stories[0]
    assert fox.text_prefix == "A photo depicts "
    assert [fox.story.panel_prompt(i) for i in range(2)] == [
        "A watercolor painting of A small red fox with a white-tipped tail sleeping under a pine tree",
        "A watercolor painting of A small red fox with a white-tipped tail crossing a frozen (river) at dawn",
    ]
    assert fox.story.character_panels() == {"Subject": [0, 1]}
    assert fox.story.settings.style == "none"


def test_a_vistorybench_folder_is_read_with_its_characters_and_reference_pictures(tmp_path):
    stories = read_prompt_set(vistory_folder(tmp_path))
    assert [s.name for s in stories] == ["01", "02"]
    first = stories[0].story
    assert [list(p.characters) for p in first.panels] == [["Old Sailor"], ["Old Sailor", "Gull"], []]
    assert first.panel_prompt(0) == (
        "an old sailor with a grey beard Medium shot; The sailor mends a net.; He sits on a crate.; A harbour at dawn."
    )
    assert set(stories[0].references) == {"Old Sailor"}  # '../escape' names no folder outside the story's
    assert stories[0].references["Old Sailor"].parent.name == "Old Sailor"


def test_story_files_and_bad_sets_are_named_in_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("characters: {Bob: a man}\npanels: ['[Bob] walks']\n", encoding="utf-8")
    assert [s.name for s in read_prompt_set(tmp_path)] == ["a"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("animals:\n- subject: a fox\n  settings: []\n", encoding="utf-8")
    with pytest.raises(StoryError, match=r"bad.yaml: animals\[0\].settings is empty: give at least one scene"):
        read_prompt_set(bad, "consistory")
    bad.write_text("animals:\n- subject: a fox\n  settings: a wood\n", encoding="utf-8")
    with pytest.raises(StoryError, match=r"animals\[0\].settings must be a list of scene prompts, got 'a wood'"):
        read_prompt_set(bad)
    bad.write_text("people: 5\n", encoding="utf-8")  # no key of a story: a set whose domain is not a list
    with pytest.raises(StoryError, match=r"a mapping of domains to lists of entries: people is 5"):
        read_prompt_set(bad)
    bad.write_text("7\n", encoding="utf-8")
    with pytest.raises(StoryError, match=r"lists of entries, not 7"):
        read_prompt_set(bad, "consistory")
    with pytest.raises(StoryError, match="no such file or folder"):
        read_prompt_set(tmp_path / "missing")


def test_stories_named_in_any_script_get_folders_of_their_own(tmp_path):
    (tmp_path / "猫.yaml").write_text("characters: {Tama: a cat}\npanels: ['[Tama] sleeps']\n", encoding="utf-8")
    (tmp_path / "犬.yaml").write_text("characters: {Pochi: a dog}\npanels: ['[Pochi] runs']\n", encoding="utf-8")
    assert [s.name for s in read_prompt_set(tmp_path)] == ["犬", "猫"]
    domains = tmp_path / "set.yaml"
    domains.write_text(
        "動物:\n- {subject: a cat, settings: [on a roof]}\n人物:\n- {subject: a baker, settings: [at dawn]}\n"
    )
    assert [s.name for s in read_prompt_set(domains)] == ["動物_0", "人物_0"]
    (tmp_path / "Fox.yaml").write_text("characters: {Rua: a fox}\npanels: ['[Rua] naps']\n", encoding="utf-8")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "fox.yml").write_text("characters: {Rua: a fox}\npanels: ['[Rua] naps']\n")
    (tmp_path / "more" / "FOX.yaml").write_text("characters: {Rua: a fox}\npanels: ['[Rua] naps']\n")
    with pytest.raises(StoryError, match="share the run folder 'FOX' \\('fox'\\): rename one"):
        read_prompt_set(tmp_path / "more")


def test_an_out_folder_that_cannot_be_made_is_refused_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import storydiffusion.cli_evaluation as cli_evaluation

    (tmp_path / "set.yaml").write_text(CONSISTORY, encoding="utf-8")
    (tmp_path / "userfile.txt").write_text("mine", encoding="utf-8")
    monkeypatch.setattr(cli_evaluation, "load_measures", lambda *a: pytest.fail("an encoder was loaded"))
    for out, words in [
        (tmp_path / "userfile.txt" / "sub", "is a file, not a folder"),
        (tmp_path / ("x" * 300), "a file system allows"),
        (Path("/proc/storydiffusion-bench"), "cannot write in /proc"),
    ]:
        assert main(["benchmark", str(tmp_path / "set.yaml"), "--out", str(out), *FAST, "--encoder", "tiny"]) == 2
        err = capsys.readouterr().err
        assert words in err and "--out" in err, err
    assert (tmp_path / "userfile.txt").read_text(encoding="utf-8") == "mine"


# ------------------------------------------------------------------------------------ statistics


def test_bootstrap_gives_the_mean_inside_a_seeded_interval():
    units = {(0, i): v for i, v in enumerate(np.linspace(0.2, 0.8, 25))}
    estimate = bootstrap(units)
    assert estimate.mean == pytest.approx(0.5) and estimate.low < 0.5 < estimate.high
    assert bootstrap(units) == estimate  # seeded
    assert bootstrap({(0, i): 0.3 for i in range(10)}).low == pytest.approx(0.3)
    assert bootstrap({}) is None
    single = bootstrap({(0, 1): 0.4})
    assert (single.mean, single.low, single.high) == (0.4, None, None) and single.shown() == "0.4000 (n=1)"


def test_with_several_stories_whole_stories_are_resampled():
    """Story 0's panels all score 0.2 and story 1's 0.8: the panels are not independent, so the interval
    spans the stories, not the narrow band twenty independent panels would give."""
    units = {(story, panel): 0.2 + 0.6 * story for story in (0, 1) for panel in range(10)}
    estimate = bootstrap(units)
    assert estimate.mean == pytest.approx(0.5)
    assert estimate.low == pytest.approx(0.2) and estimate.high == pytest.approx(0.8)


def test_identical_variants_differ_by_exactly_zero(tmp_path):
    from storydiffusion.evaluation import score_story
    from storydiffusion.story import Story

    story = Story.from_dict({"characters": {"Bob": "a man"}, "panels": ["[Bob] a", "[Bob] b"]})
    images = {0: Image.new("RGB", (32, 32), "red"), 1: Image.new("RGB", (32, 32), "blue")}
    scores = score_story(story, images, tiny_clip())
    comparison = compare({"one": [scores], "two": [scores]})
    for estimate in comparison.differences["two - one"].values():
        assert estimate.mean == 0.0 and estimate.low in (None, 0.0) and estimate.high in (None, 0.0)


@pytest.mark.parametrize(
    ("names", "vary", "message"),
    [
        (["nope"], [], "'nope' is not a variant"),
        (["off"], ["colour=1"], "write a setting and its values"),
        (["off"], ["window=abc"], "window"),
        (["off"], ["window=../x"], "is not a number or a word"),
        (["off", "off"], [], "named twice"),
        (["off"], ["mode=.."], "--vary 'mode=..': mode must be one of identity, window, off, got '..'"),
        (["off"], ["id_images=3.0"], "write it as 3, without a decimal point"),
    ],
)
def test_bad_variants_are_refused(names, vary, message):
    with pytest.raises(SettingsError, match=message):
        variants_from(names, vary)


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    prompt_set = vistory_folder(root / "set")
    out = root / "out"
    args = ["benchmark", str(prompt_set), "--out", str(out), *FAST, "--encoder", "tiny", "--variants", "off,uniform"]
    assert main(args) == 0
    return out, args


def test_the_benchmark_writes_run_folders_and_one_comparison_table(bench):
    out, _ = bench
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["off", "uniform"]
    assert sorted(p.name for p in (out / "runs" / "uniform").iterdir()) == ["01", "02"]
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    metrics = {(row["row"], row["metric"]) for row in rows}
    assert {
        ("off", "clip_t"),
        ("uniform", "clip_i"),
        ("uniform - off", "clip_i"),
        ("off", "clip_i_reference"),
    } <= metrics
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| uniform - off |" in markdown and "CLIP-I photo" in markdown


def test_the_table_holds_the_numbers_evaluate_gives_for_each_run(bench):
    out, _ = bench
    encoder = tiny_clip()
    clip_t = [p.clip_t for story in ("01", "02") for p in evaluate_run(out / "runs" / "off" / story, encoder).panels]
    rows = list(csv.DictReader((out / "results.csv").read_text(encoding="utf-8").splitlines()))
    mean = next(float(r["value"]) for r in rows if (r["row"], r["metric"]) == ("off", "clip_t"))
    assert mean == pytest.approx(float(np.mean(clip_t)), abs=1e-6)
    metrics = json.loads((out / "runs" / "off" / "01" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["characters"]["Old Sailor"]["clip_i_reference"] is not None


def test_a_second_run_draws_nothing_again(bench):
    out, args = bench
    panel = out / "runs" / "uniform" / "02" / "panels" / "panel_001.png"
    before = panel.stat().st_mtime_ns
    assert main(args) == 0
    assert panel.stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["edited", "folder", "record"])
def test_results_the_user_edited_or_a_damaged_record_stop_the_benchmark_untouched(bench, damage, tmp_path, capsys):
    import shutil

    out, args = bench
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    if damage == "edited":
        with open(copy / "results.md", "a", encoding="utf-8") as notes:
            notes.write("\nuniform wins on faces\n")
    elif damage == "folder":
        (copy / "results.csv").unlink()
        (copy / "results.csv").mkdir()
    else:
        (copy / "benchmark.json").write_text("{bad", encoding="utf-8")
    before = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    capsys.readouterr()
    assert main([*args[:3], str(copy), *args[4:]]) == 2
    expected = {
        "edited": "results.md was edited since the benchmark wrote it",
        "folder": "results.csv was not written by this tool",
        "record": "benchmark.json is not a benchmark record this tool can read (damaged or edited): restore it",
    }[damage]
    assert expected in capsys.readouterr().err
    assert {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()} == before


def test_a_folder_that_is_not_a_benchmarks_is_refused_untouched(tmp_path, capsys):
    (tmp_path / "set.yaml").write_text(CONSISTORY, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.txt").write_text("mine", encoding="utf-8")
    assert main(["benchmark", str(tmp_path / "set.yaml"), "--out", str(out), *FAST, "--encoder", "tiny"]) == 2
    assert "holds files that are not a benchmark's" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["thesis.txt"]


def test_a_users_file_in_a_run_to_redraw_stops_the_benchmark(bench, tmp_path, capsys):
    import shutil

    out, args = bench
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    run = copy / "runs" / "off" / "01"
    (run / "mine.txt").write_text("mine", encoding="utf-8")
    again = [a if a != str(out) else str(copy) for a in args] + ["--seed", "7"]  # new seeds: every run is redrawn
    assert main(again) == 2
    assert "runs/off/01/mine.txt in --out was not written by this tool" in capsys.readouterr().err
    assert (run / "mine.txt").read_text(encoding="utf-8") == "mine" and (run / "story.json").is_file()


# ------------------------------------------------------------------------------------ hostile prompt sets


def write_vistory(root: Path, story: dict) -> Path:
    folder = root / "01"
    folder.mkdir(parents=True)
    (folder / "story.json").write_text(json.dumps(story), encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("characters", "appearing", "message"),
    [
        ({"Jack": {"prompt_en": "a boy"}}, {"en": 5}, r"Shots\[0\].Characters Appearing.en must be a list"),
        ({"J": {"prompt_en": "a boy"}}, {"en": "Jack"}, r"Characters Appearing.en must be a list"),
        ({"Jack": {"prompt_en": "a boy"}}, {"en": ["Jill"]}, "names 'Jill', not one of the story's Characters"),
        ({"Jack!": {"prompt_en": "a"}, "Jack?": {"prompt_en": "b"}}, {"en": []}, "would both be named 'Jack'"),
        ({"Jack": {"prompt_en": ["a", "boy"]}}, {"en": []}, r"Characters.Jack.prompt_en must be text"),
    ],
)
def test_a_hostile_vistorybench_story_is_refused_naming_the_key(tmp_path, characters, appearing, message):
    shot = {"Plot Correspondence": {"en": "He runs."}, "Characters Appearing": appearing}
    root = write_vistory(tmp_path, {"Characters": characters, "Shots": [shot]})
    with pytest.raises(StoryError, match=message):
        read_prompt_set(root)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("subject: [a, b]\n  settings: [x]", r"animals\[0\].subject must be text"),
        ("subject: a fox\n  settings: [{x: 1}]", r"animals\[0\].settings\[0\] must be text"),
        ("subject: a fox\n  style: 5\n  settings: [x]", r"animals\[0\].style must be text"),
    ],
)
def test_a_hostile_consistory_entry_is_refused_naming_the_key(tmp_path, entry, message):
    path = tmp_path / "set.yaml"
    path.write_text(f"animals:\n- {entry}\n", encoding="utf-8")
    with pytest.raises(StoryError, match=message):
        read_prompt_set(path)


def test_a_run_folder_is_not_taken_for_a_vistorybench_story(bench):
    out, _ = bench
    with pytest.raises(StoryError):  # a run's story.json has no Shots: read as story files, of which there are none
        read_prompt_set(out / "runs" / "off" / "01")
    with pytest.raises(StoryError, match="--kind vistorybench: .* is a file"):
        read_prompt_set(out / "results.csv", "vistorybench")


# ------------------------------------------------------------------------------------ variants and safety


def test_vary_reads_numbers_and_words_as_the_settings_take_them():
    variants = variants_from([], ["mode=off", "sampling_rate=1e-1", "window=3"])
    assert [v.overrides for v in variants] == [{"mode": "off"}, {"sampling_rate": 0.1}, {"window": 3}]


def test_named_consistency_variants_turn_consistency_on_for_a_story_drawn_without(tmp_path):
    from storydiffusion.evaluation.benchmark import variant_settings
    from storydiffusion.evaluation.prompt_sets import BenchmarkStory
    from storydiffusion.story import Story

    story = Story.from_dict({"characters": {"Bob": "a man"}, "panels": ["[Bob] a"], "settings": {"mode": "off"}})
    item = BenchmarkStory("s", story)
    off, uniform, subject = variants_from(["off", "uniform", "subject"])
    assert variant_settings(item, off, {}).mode == "off"
    assert variant_settings(item, uniform, {}).mode == "identity"
    assert variant_settings(item, subject, {}).consistency == "subject"


def test_a_damaged_run_record_is_named_as_the_reason_not_its_files(bench, tmp_path, capsys):
    import shutil

    out, args = bench
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    record = copy / "runs" / "off" / "01" / "story.json"
    record.write_bytes(record.read_bytes()[:200])
    assert main([a if a != str(out) else str(copy) for a in args]) == 2
    err = capsys.readouterr().err
    assert "story.json" in err and "cannot be read as a run's record" in err and "delete runs/off/01" in err


def test_an_edited_record_is_refused_before_any_model_loads(bench, tmp_path, capsys):
    import shutil

    out, args = bench
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    (copy / "benchmark.json").write_text('{"format": "storydiffusion-benchmark/1", "runs": []}', encoding="utf-8")
    again = [a if a != str(out) else str(copy) for a in args]
    again[again.index("tiny-sdxl")] = "nobody/no-such-model"  # a hub id: it would fail only when loading
    assert main(again) == 2
    assert "'runs' must map each run to its key" in capsys.readouterr().err


def test_a_bad_reference_picture_or_a_users_file_stops_the_benchmark_before_drawing(tmp_path, capsys):
    prompt_set = vistory_folder(tmp_path / "set")
    picture = prompt_set / "01" / "image" / "Old Sailor" / "00.png"
    picture.write_bytes(b"not a png")
    out = tmp_path / "out"
    args = ["benchmark", str(prompt_set), "--out", str(out), *FAST, "--encoder", "tiny", "--variants", "off,uniform"]
    assert main(args) == 2
    assert "Old Sailor's reference picture 00.png" in capsys.readouterr().err
    assert not out.exists()
    Image.new("RGB", (48, 48)).save(picture)
    (out / "runs" / "uniform" / "02").mkdir(parents=True)
    (out / "runs" / "uniform" / "02" / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "benchmark.json").write_text('{"format": "storydiffusion-benchmark/1", "runs": {}}', encoding="utf-8")
    assert main(args) == 2
    assert "notes.txt in --out was not written by this tool" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["uniform"]  # nothing drawn


def test_an_interrupted_redraw_is_not_recorded_as_finished(bench, tmp_path, monkeypatch):
    import shutil

    import storydiffusion.evaluation.benchmark as benchmark

    out, args = bench
    copy = tmp_path / "out"
    shutil.copytree(out, copy)

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "evaluate_run", interrupted)
    again = [a if a != str(out) else str(copy) for a in args]
    assert main([*again, "--steps", "3"]) == 130  # the first run is redrawn with 3 steps, then interrupted
    record = json.loads((copy / "benchmark.json").read_text(encoding="utf-8"))
    assert "off/01" not in record["runs"]  # so the next benchmark with 2 steps draws it again


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "--steps must be 1..1000, got 0"),
        (["--seed", "-1"], "--seed must be"),
        (["--text-prefix", "a photo of " * 30], "--text-prefix is 330 characters long; at most 200"),
    ],
)
def test_a_benchmark_flag_is_refused_by_its_name_before_any_model_loads(flags, message, tmp_path, capsys, monkeypatch):
    import storydiffusion.cli_evaluation as cli_evaluation

    (tmp_path / "set.yaml").write_text(CONSISTORY, encoding="utf-8")
    monkeypatch.setattr(cli_evaluation, "load_measures", lambda *a: pytest.fail("an encoder was loaded"))
    argv = ["benchmark", str(tmp_path / "set.yaml"), "--out", str(tmp_path / "out"), *FAST, "--encoder", "tiny"]
    assert main([*argv, *flags]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_story_of_a_folder_is_named_by_its_file_and_so_are_two_that_would_share_a_run_folder(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "good.yaml").write_text('characters:\n  A: a man\npanels:\n  - "[A] walks"\n')
    (tmp_path / "set" / "zbad.yaml").write_text('characters:\n  A: a man\npanels:\n  - "[B] walks"\n')
    with pytest.raises(StoryError, match=r"^zbad\.yaml: line 4: panel 1 names unknown character \[B\]"):
        read_prompt_set(tmp_path / "set")
    (tmp_path / "set" / "zbad.yaml").unlink()
    (tmp_path / "set" / "Good.json").write_text('{"characters": {"A": "a man"}, "panels": ["[A] sits"]}')
    with pytest.raises(StoryError, match=r"two stories \(Good\.json and good\.yaml\) would share the run folder"):
        read_prompt_set(tmp_path / "set")


def test_a_vistorybench_story_file_is_not_read_as_a_consistory_set(tmp_path):
    story = vistory_folder(tmp_path) / "01" / "story.json"
    with pytest.raises(StoryError, match=r"is a ViStoryBench story: name its folder"):
        read_prompt_set(story)
