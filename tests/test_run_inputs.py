"""A run folder keeps its own copies of the pictures its story names (reference photos, control images):
its record names no folder of the machine it ran on, and moved elsewhere it still continues, draws again
and is scored against its photos."""

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from storydiffusion.cli import main

SETTINGS = "settings: {steps: 2, id_images: 1, window: 3, style: none}\n"


def picture(path, colour="orange", box=(8, 8, 40, 56)):
    image = Image.new("RGB", (48, 64), "white")
    ImageDraw.Draw(image).ellipse(box, fill=colour)
    image.save(path)
    return path


def write_story(folder, photo="photos/nora.png", edges="poses/edges.png"):
    (folder / "photos").mkdir(exist_ok=True)
    (folder / "poses").mkdir(exist_ok=True)
    picture(folder / "photos" / "nora.png")
    picture(folder / "poses" / "edges.png", "black", (4, 20, 44, 30))
    story = folder / "story.yaml"
    story.write_text(
        f"characters:\n  Nora: {{description: a woman, reference: {photo}}}\n{SETTINGS}panels:\n"
        "  - '[Nora] waves'\n"
        f"  - prompt: '[Nora] sits'\n    control: {{type: canny, image: {edges}}}\n"
        "  - '[Nora] sleeps'\n",
        encoding="utf-8",
    )
    return story


def generate(*args):
    return main(["generate", *map(str, args), "--model", "tiny-sdxl", "--quiet"])


def manifest(run):
    return json.loads((run / "story.json").read_text(encoding="utf-8"))


def files(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A finished run of a story with a photo and a control image, and the folder of its story."""
    home = tmp_path_factory.mktemp("home")
    story = write_story(home)
    assert generate(story, "--out", home / "run") == 0
    return home, story, home / "run"


def test_the_run_copies_each_picture_and_records_it_by_the_copy_never_by_a_path_of_the_machine(drawn):
    home, _, run = drawn
    record = manifest(run)
    reference = record["story"]["characters"]["Nora"]["reference"]
    control = record["story"]["panels"][1]["control"]["image"]
    assert (run / reference).read_bytes() == (home / "photos" / "nora.png").read_bytes()
    assert (run / control).read_bytes() == (home / "poses" / "edges.png").read_bytes()
    assert sorted(record["inputs"]) == sorted([reference, control]) and all(
        name.startswith("inputs/") for name in record["inputs"]
    )
    assert str(home) not in (run / "story.json").read_text(encoding="utf-8")


def test_a_moved_project_continues_and_draws_again_from_its_own_record(drawn, tmp_path, monkeypatch):
    home, _, _ = drawn
    elsewhere = tmp_path / "elsewhere"  # the story, its pictures and its run, moved together
    shutil.copytree(home, elsewhere)
    moved = elsewhere / "run"
    expected = (moved / "panels" / "panel_002.png").read_bytes()
    (moved / "panels" / "panel_002.png").unlink()
    kept = {name: data for name, data in files(moved).items() if name != "story.json"}
    hidden = home.rename(tmp_path / "hidden")  # nothing is read where the run first was
    try:
        assert generate(elsewhere / "story.yaml", "--out", moved) == 0  # the same pictures: continued
        assert (moved / "panels" / "panel_002.png").read_bytes() == expected
        assert all(files(moved)[name] == data for name, data in kept.items())
        monkeypatch.chdir(tmp_path)  # the record's pictures are found beside it, not in the working folder
        shutil.rmtree(elsewhere / "photos")
        shutil.rmtree(elsewhere / "poses")
        assert generate(moved / "story.json", "--out", tmp_path / "again") == 0
    finally:
        hidden.rename(home)
    assert files(tmp_path / "again")["panels/panel_002.png"] == expected


def test_a_photo_with_other_bytes_at_the_same_path_is_another_drawing(drawn, tmp_path, capsys):
    home, story, run = drawn
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "panels" / "panel_003.png").unlink()
    before = files(copy)
    picture(home / "photos" / "nora.png", "green")  # the same file, another face
    try:
        assert generate(story, "--out", copy) == 2
    finally:
        write_story(home)
    assert "another reference photo of Nora" in capsys.readouterr().err
    assert files(copy) == before


def test_a_redrawn_panel_with_another_control_image_leaves_no_stale_copy_and_no_user_file_touched(drawn, tmp_path):
    home, story, run = drawn
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "inputs" / "notes.txt").write_text("mine", encoding="utf-8")
    old = manifest(copy)["story"]["panels"][1]["control"]["image"]
    picture(home / "poses" / "other.png", "black", (20, 4, 30, 60))
    other = home / "other.yaml"
    other.write_text(story.read_text(encoding="utf-8").replace("edges.png", "other.png"), encoding="utf-8")
    assert generate(other, "--out", copy, "--panels", "2") == 0
    record = manifest(copy)
    new = record["story"]["panels"][1]["control"]["image"]
    assert new != old and not (copy / old).exists() and (copy / new).is_file()
    assert sorted(record["inputs"]) == sorted([record["story"]["characters"]["Nora"]["reference"], new])
    assert (copy / "inputs" / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_a_file_of_the_users_where_a_copy_goes_is_refused_before_the_folder_changes(drawn, tmp_path, capsys):
    home, story, run = drawn
    name = manifest(run)["story"]["characters"]["Nora"]["reference"]
    out = tmp_path / "out"
    (out / "inputs").mkdir(parents=True)
    (out / name).write_bytes(b"my own file")
    assert generate(story, "--out", out, "--overwrite") == 2
    assert "has no record of writing" in capsys.readouterr().err
    assert files(out) == {name: b"my own file"}


def test_a_moved_run_is_scored_against_its_own_copy_of_the_photo(drawn, tmp_path):
    from storydiffusion.evaluation import evaluate_run, tiny_clip

    home, _, run = drawn
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(home / "photos")  # the story's own photo is gone: the run's copy is what counts
    try:
        scores = evaluate_run(moved, tiny_clip())
    finally:
        write_story(home)
    assert not any("reference photo" in note for note in scores.notes)
    assert scores.characters["Nora"].clip_i_reference is not None


def test_a_run_stopped_while_copying_its_pictures_is_finished_by_the_same_command(drawn, tmp_path, monkeypatch):
    import storydiffusion.run_inputs as run_inputs

    home, story, run = drawn
    out = tmp_path / "out"
    real = run_inputs.atomic_write_bytes

    def stopped(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_inputs, "atomic_write_bytes", stopped)
    assert generate(story, "--out", out) == 130
    recorded = manifest(out)["inputs"]  # recorded first, so a copy is never unrecorded
    assert len(recorded) == 2 and not any((out / name).exists() for name in recorded)
    monkeypatch.setattr(run_inputs, "atomic_write_bytes", real)
    assert generate(story, "--out", out) == 0
    assert files(out)["panels/panel_001.png"] == files(run)["panels/panel_001.png"]
    assert all((out / name).is_file() for name in manifest(out)["inputs"])


@pytest.mark.parametrize("state", ["changed", "missing"])
def test_a_runs_copy_changed_or_gone_is_refused_as_a_story_and_left_out_of_the_scores(drawn, tmp_path, capsys, state):
    from storydiffusion.evaluation import evaluate_run, tiny_clip

    home, _, run = drawn
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    name = manifest(copy)["story"]["characters"]["Nora"]["reference"]
    if state == "changed":
        picture(copy / name, "green")  # another face under the run's name for its photo
    else:
        (copy / name).unlink()
    assert generate(copy / "story.json", "--out", tmp_path / "again") == 2
    error = capsys.readouterr().err
    expected = "is not the picture this run was drawn from" if state == "changed" else "is missing from its folder"
    assert f"characters.Nora.reference: {'' if state == 'changed' else 'the run' + chr(39) + 's copy '}{name}" in error
    assert expected in error and not (tmp_path / "again").exists()
    scores = evaluate_run(copy, tiny_clip())
    assert scores.characters["Nora"].clip_i_reference is None
    assert any(name in note and "no similarity to it" in note for note in scores.notes)


def test_a_benchmark_draws_again_a_run_whose_photo_was_edited_in_place_or_whose_panel_is_gone(tmp_path, tiny_sdxl):
    from storydiffusion.evaluation import tiny_clip
    from storydiffusion.evaluation.benchmark import run_benchmark, variants_from
    from storydiffusion.evaluation.prompt_sets import read_prompt_set

    story, drawn = write_story(tmp_path), []

    def benchmark():
        stories = read_prompt_set(story)  # read again each time, as each command reads it
        run_benchmark(stories, variants_from(["uniform"]), tiny_sdxl, tmp_path / "bench", tiny_clip(),
                      overrides={"steps": 2}, on_run=lambda name, again: drawn.append(again))  # fmt: skip

    benchmark()
    benchmark()  # nothing changed: the run is reused
    picture(tmp_path / "photos" / "nora.png", "green")
    benchmark()  # the same file, another face: drawn again
    panel = next((tmp_path / "bench").rglob("panel_002.png"))
    panel.unlink()
    benchmark()  # a panel gone: drawn again, not scored on the others alone
    assert drawn == [True, False, True, True] and panel.is_file()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_story_naming_a_device_or_a_pipe_is_never_read_for_its_digest(drawn, tmp_path, capsys):
    """A hand-edited story.json may name /dev/zero, whose reading never ends: it has no digest, so the run is
    another drawing, said at once."""
    import threading

    home, story, run = drawn
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = manifest(copy)
    record["story"]["characters"]["Nora"]["reference"] = "/dev/zero"
    (copy / "story.json").write_text(json.dumps(record), encoding="utf-8")
    (copy / "panels" / "panel_003.png").unlink()
    codes = []
    worker = threading.Thread(target=lambda: codes.append(generate(story, "--out", copy)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert codes == [2] and "another reference photo of Nora" in capsys.readouterr().err
