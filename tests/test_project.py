"""Project files: round trip, and refusal of anything that is not one."""

import dataclasses
import json
import pickle
import zipfile

import pytest
import torch
from PIL import Image

from storydiffusion.atomic import TEMPORARY_MARK
from storydiffusion.bank import IdentityBank
from storydiffusion.errors import ProjectError
from storydiffusion.project import Project, ProjectLimits, load_project, save_project
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import Story, story_from_text


def make_project(with_bank=True):
    story = story_from_text(
        "[Bob] a man in a red coat",
        "[Bob] walks # Off he goes.\n[NC] a street",
        settings=GenerationSettings(seed=4, steps=3),
    )
    bank = None
    if with_bank:
        bank = IdentityBank({"model": "tiny-sdxl", "steps": 3})
        bank.put(0, 1, 2, torch.arange(24, dtype=torch.float32).reshape(2, 3, 4))
        bank.characters = {"Bob": [0]}
    panels = {0: Image.new("RGB", (64, 64), (200, 10, 10)), 1: Image.new("RGB", (64, 64), (10, 200, 10))}
    return Project(story, story.settings, "tiny-sdxl", panels, {0: 11, 1: 12}, bank, "classic")


def test_project_round_trip(tmp_path):
    original = make_project()
    path = save_project(original, tmp_path / "story.zip", include_bank=True)
    loaded = load_project(path)
    assert loaded.story.to_dict() == original.story.to_dict()
    assert loaded.settings == original.settings and loaded.model == "tiny-sdxl" and loaded.layout == "classic"
    assert loaded.seeds == {0: 11, 1: 12}
    assert loaded.panels[1].getpixel((5, 5)) == (10, 200, 10)
    assert loaded.bank.characters == {"Bob": [0]}
    assert torch.equal(
        loaded.bank.get(0, 1, 2, torch.device("cpu")), torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    )
    assert not [p for p in tmp_path.rglob("*") if TEMPORARY_MARK in p.name]


def test_a_reading_direction_other_than_the_layouts_is_kept_and_none_by_default(tmp_path):
    plain = load_project(save_project(make_project(with_bank=False), tmp_path / "plain.zip"))
    assert plain.direction is None  # as the layout reads
    right_to_left = dataclasses.replace(make_project(with_bank=False), direction="rtl")
    assert load_project(save_project(right_to_left, tmp_path / "rtl.zip")).direction == "rtl"


def test_project_without_bank(tmp_path):
    loaded = load_project(save_project(make_project(with_bank=False), tmp_path / "p.zip"))
    assert loaded.bank is None and len(loaded.panels) == 2


def members_of(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezipped(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_by_default_a_project_leaves_its_bank_out_and_weighs_a_fraction_of_one_with_it(tmp_path):
    project = make_project()
    project.bank.put(0, 1, 2, torch.rand(2, 256, 256))  # a bank is large next to the PNGs, as a real one is
    bankless = save_project(project, tmp_path / "small.zip")
    with_bank = save_project(project, tmp_path / "big.zip", include_bank=True)
    assert not [name for name in members_of(bankless) if name.endswith(".safetensors")]
    assert json.loads(members_of(bankless)["project.json"])["identity_bank"] is None
    assert load_project(bankless).bank is None
    assert bankless.stat().st_size * 10 < with_bank.stat().st_size
    assert torch.equal(load_project(with_bank).bank.get(0, 1, 2, torch.device("cpu")), project.bank.get(0, 1, 2, "cpu"))


def test_every_setting_the_studio_shows_is_restored(tmp_path):
    settings = GenerationSettings(
        style="manga",
        negative_prompt="blurry, extra fingers",
        steps=7,
        guidance=3.5,
        width=128,
        height=192,
        seed=2**40 + 3,
        sampling_rate={1: 0.3, 2: 0.6},
        id_images=2,
        window=3,
        mode="window",
        consistency="subject",
        reference_adapter="face",
        subject_threshold=0.3,
        first_consistent_step=1,
        random_skip_early=0.2,
        random_skip_late=0.1,
        scheduler="euler",
        max_panels=50,
    )
    defaults = GenerationSettings()
    assert all(getattr(settings, f.name) != getattr(defaults, f.name) for f in dataclasses.fields(settings))
    project = make_project(with_bank=False)
    project.settings = settings
    project.panels = {index: image.resize((128, 192)) for index, image in project.panels.items()}  # drawn at its size
    loaded = load_project(save_project(project, tmp_path / "p.zip"))
    assert loaded.settings == settings and loaded.story.settings == settings
    assert loaded.settings.sampling_rate == {1: 0.3, 2: 0.6}  # factors come back as numbers, not JSON's text keys
    assert (loaded.model, loaded.layout, loaded.seeds, loaded.story.title) == (
        "tiny-sdxl",
        "classic",
        {0: 11, 1: 12},
        "Untitled story",
    )


def test_the_story_the_bank_is_drawn_from_is_kept(tmp_path):
    project = make_project(with_bank=False)
    project.bank_story = Story.from_dict(project.story.to_dict())
    project.story.panels[0].seed = 77  # redrawn after the run: the bank still holds the run's panel
    loaded = load_project(save_project(project, tmp_path / "p.zip"))
    assert loaded.story.panels[0].seed == 77 and loaded.bank_story.panels[0].seed is None
    assert loaded.bank_story.settings == loaded.settings


def test_a_project_from_before_bank_stories_loads_with_its_bank(tmp_path):
    members = members_of(save_project(make_project(), tmp_path / "new.zip", include_bank=True))
    document = json.loads(members["project.json"])
    del document["bank_story"]
    loaded = load_project(rezipped(tmp_path / "old.zip", {**members, "project.json": json.dumps(document)}))
    assert loaded.bank_story is None and loaded.bank.characters == {"Bob": [0]}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda story: story.update(characters={"Bob": "a man in a blue coat"}), "does not match the story"),
        (lambda story: story["characters"].update(Eve="a woman"), "does not match the story"),
        (lambda story: story["panels"].pop(), "does not match the story"),
        (lambda story: story.update(panels="many"), "project.json: bank_story: "),
    ],
)
def test_a_bank_story_that_is_not_the_projects_is_refused(change, expected, tmp_path):
    project = make_project(with_bank=False)
    project.bank_story = project.story
    members = members_of(save_project(project, tmp_path / "good.zip"))
    document = json.loads(members["project.json"])
    change(document["bank_story"])
    path = rezipped(tmp_path / "bad.zip", {**members, "project.json": json.dumps(document)})
    with pytest.raises(ProjectError, match=rf"^bad\.zip: .*{expected}"):
        load_project(path)


def test_a_project_file_that_is_not_there_or_not_a_file_is_named_so(tmp_path):
    import os

    with pytest.raises(ProjectError, match="^nonexist.zip does not exist: check the project file's name"):
        load_project(tmp_path / "nonexist.zip")  # it said "is not a project file"
    (tmp_path / "folder.zip").mkdir()
    with pytest.raises(ProjectError, match="^folder.zip is not a file"):
        load_project(tmp_path / "folder.zip")
    os.mkfifo(tmp_path / "pipe.zip")  # reading it for the ZIP test would wait for a writer for ever
    with pytest.raises(ProjectError, match="^pipe.zip is not a file"):
        load_project(tmp_path / "pipe.zip")


def test_a_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.zip"
    path.write_bytes(pickle.dumps({"story": 1}))
    with pytest.raises(ProjectError, match="not a project file"):
        load_project(path)


def test_a_zip_without_project_json_is_refused(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps([1, 2]))
    with pytest.raises(ProjectError, match="project.json"):
        load_project(path)


def test_wrong_format_and_broken_members_are_refused(tmp_path):
    good = save_project(make_project(), tmp_path / "good.zip", include_bank=True)
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}

    def rewrite(name, **changes):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in {**members, **changes}.items():
                if data is not None:
                    archive.writestr(member, data)
        return path

    document = json.loads(members["project.json"])
    with pytest.raises(ProjectError, match="not a StoryDiffusion project"):
        load_project(rewrite("a.zip", **{"project.json": json.dumps({**document, "format": "other/1"})}))
    with pytest.raises(ProjectError, match="not valid JSON"):
        load_project(rewrite("b.zip", **{"project.json": "{broken"}))
    with pytest.raises(ProjectError, match="PNG"):
        load_project(rewrite("c.zip", **{"panels/panel_001.png": b"GIF89a not a png"}))
    with pytest.raises(ProjectError, match="does not match"):
        load_project(rewrite("d.zip", **{"panels/panel_002.png": None}))
    with pytest.raises(ProjectError, match="identity_bank.safetensors is not a usable identity bank") as bank:
        load_project(rewrite("e.zip", **{"identity_bank.safetensors": b"junk"}))
    assert "e.zip" in str(bank.value) and "/tmp" not in str(bank.value) and "deserializ" not in str(bank.value)
    text = members["project.json"].decode()
    with pytest.raises(ProjectError, match=r"project.json is not UTF-8 text \(it is UTF-16\): save it as UTF-8$"):
        load_project(rewrite("f.zip", **{"project.json": text.encode("utf-16")}))
    assert load_project(rewrite("g.zip", **{"project.json": "\ufeff" + text})).story.title  # a BOM is fine


@pytest.mark.parametrize("size", [(1, 10_000), (48, 64), (64, 48)])
def test_a_panel_of_another_size_than_the_projects_is_refused_naming_it(tmp_path, size):
    project = make_project(with_bank=False)
    project.settings = dataclasses.replace(project.settings, width=64, height=64)
    project.panels[1] = Image.new("RGB", size, "blue")
    with pytest.raises(ProjectError) as refused:
        load_project(save_project(project, tmp_path / "p.zip"))
    assert f"panel 2 is {size[0]} x {size[1]} pixels, but this project's panels are 64 x 64" in str(refused.value)


def test_a_project_rezipped_with_a_folder_entry_still_loads(tmp_path):
    good = save_project(make_project(with_bank=False), tmp_path / "good.zip")
    path = tmp_path / "rezipped.zip"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        target.writestr(zipfile.ZipInfo("panels/"), b"")
        for name in source.namelist():
            target.writestr(name, source.read(name))
    assert sorted(load_project(path).panels) == [0, 1]


def test_smaller_limits_can_be_passed_for_a_shared_server(tmp_path):
    path = save_project(make_project(), tmp_path / "p.zip")
    assert load_project(path, ProjectLimits()).seeds == {0: 11, 1: 12}
    with pytest.raises(ProjectError, match=r"p\.zip: panels/panel_001\.png: the image is 64 x 64 pixels"):
        load_project(path, ProjectLimits(max_image_pixels=64 * 63))
    with pytest.raises(ProjectError, match=r"^p\.zip unpacks to .* more than the 1,000 bytes"):
        load_project(path, ProjectLimits(max_total_bytes=1000))
    with pytest.raises(ProjectError, match="2 panels, more than the 1"):
        load_project(path, ProjectLimits(max_panels=1))


@pytest.mark.parametrize(
    "entries, expected",
    [
        ([{"panel": True, "file": "panels/panel_001.png"}], "does not match"),
        ([{"panel": "1", "file": "panels/panel_001.png"}], "does not match"),
        (["panels/panel_001.png"], "does not match"),
        ([{"panel": 1, "file": "panels/panel_001.png"}] * 2, "does not match"),
        ([{"panel": 1, "file": "panels/panel_001.png", "seed": -1}], "seed -1"),
        ([{"panel": 1, "file": "panels/panel_001.png", "seed": "7"}], "seed '7'"),
        ({"panel": 1}, "'panels' must be a list"),
    ],
)
def test_malformed_panel_entries_are_refused(entries, expected, tmp_path):
    good = save_project(make_project(with_bank=False), tmp_path / "good.zip")
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = {**json.loads(members["project.json"]), "panels": entries}
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**members, "project.json": json.dumps(document)}.items():
            archive.writestr(name, data)
    with pytest.raises(ProjectError, match=expected):
        load_project(path)


def test_a_broken_story_inside_names_the_upload_and_project_json(tmp_path):
    good = save_project(make_project(with_bank=False), tmp_path / "good.zip")
    with zipfile.ZipFile(good) as archive:
        document = json.loads(archive.read("project.json"))
    for key, value in (("story", None), ("settings", {"steps": "many"})):
        path = tmp_path / f"no_{key}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("project.json", json.dumps({**document, key: value}))
        with pytest.raises(ProjectError, match=rf"^no_{key}\.zip: project\.json: "):
            load_project(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("layout", "/etc/passwd"),
        ("layout", "/missing/x.yaml"),
        ("layout", "../layouts/classic.yaml"),
        ("layout", ["classic"]),
        ("model", {"name": "x"}),
        ("direction", "up"),
        ("direction", ["rtl"]),
    ],
)
def test_a_project_names_its_layout_and_model_by_name_only(key, value, tmp_path):
    """A layout is one of this tool's names, never a path: a project cannot make a server read a file,
    and the answer is the same whether that path exists or not."""
    good = save_project(make_project(with_bank=False), tmp_path / "good.zip")
    with zipfile.ZipFile(good) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = {**json.loads(members["project.json"]), key: value}
    path = tmp_path / "edited.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**members, "project.json": json.dumps(document)}.items():
            archive.writestr(name, data)
    with pytest.raises(ProjectError) as refused:
        load_project(path)
    message = str(refused.value)
    assert message.startswith("edited.zip: project.json:") and key in message
    assert "exist" not in message and "not found" not in message and "template must" not in message
