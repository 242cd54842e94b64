"""The library's door: what a Python caller passes is checked there and named in the library's words, a run
keeps its own copy of what it was given, and what it records reads back as what it drew."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from storydiffusion.call_checks import check_generate_call
from storydiffusion.controlnets import given_controls
from storydiffusion.errors import ProjectError, SettingsError, StoryDiffusionError, StoryError
from storydiffusion.evaluation.story_metrics import score_story
from storydiffusion.models.devices import select_dtype
from storydiffusion.motion.animate import animate_images
from storydiffusion.project import Project, load_project, save_project
from storydiffusion.run_manifest import read_manifest, story_from_manifest
from storydiffusion.rundir import prepare_output_dir, save_result
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import Character, Panel, Story, story_from_text, validate_story
from storydiffusion.story.control import PanelControl
from storydiffusion.story_references import story_photos

SETTINGS = GenerationSettings(style="none", steps=2, id_images=1, width=64, height=64)


def bob_story(text="[Bob] runs\n[Bob] sits"):
    return story_from_text("[Bob] a man in a red coat", text, settings=SETTINGS)


@pytest.mark.parametrize(
    ("prompt", "refused"),
    [("[Bob] wears a shirt with #7 on it", "'#'"), ("[Bob] shouts @Bob: hi", "'@Bob:'")],
)
def test_a_prompt_built_in_code_that_would_read_back_otherwise_is_refused(prompt, refused):
    """story.json holds the prompt as written and is read with the file syntax: there '#' starts the caption
    and '@Bob:' a speech, so the run folder would describe another story (or none compose can read)."""
    story = Story(characters={"Bob": Character("Bob", "a man")}, panels=[Panel(prompt, characters=("Bob",))])
    with pytest.raises(StoryError, match=f"panel 1.*{refused}"):
        validate_story(story)
    assert Story.from_dict(bob_story().to_dict()).to_dict() == bob_story().to_dict()


def test_a_result_keeps_the_story_and_settings_it_was_drawn_with(tiny_sdxl):
    """The README's redraw edits the caller's story after a run: the earlier result must not change with it."""
    story = bob_story()
    story.settings = dataclasses.replace(SETTINGS, sampling_rate={1: 0.5})
    result = tiny_sdxl.generate(story)
    story.panels[1].seed = 99
    story.settings.sampling_rate[1] = 0.1
    assert result.story is not story and result.story.panels[1].seed is None
    assert result.settings.sampling_rate == {1: 0.5}


def test_sampling_rate_keys_written_as_text_in_code_are_refused():
    """``from_dict`` reads a file's "1" as 1; settings built in code with "1" would run at 0.5 and record 0.1."""
    with pytest.raises(SettingsError, match=r"sampling_rate keys must be whole numbers.*'1'.*without quotes"):
        GenerationSettings(sampling_rate={"1": 0.1}).validate()
    for key in (True, -1, 1.5):
        with pytest.raises(SettingsError, match="sampling_rate"):
            GenerationSettings(sampling_rate={key: 0.1}).validate()
    GenerationSettings(sampling_rate={1: 0.1, 0: 0.3}).validate()


def test_a_photo_in_memory_steers_as_the_same_file_does(tmp_path):
    """Alpha over white and 16-bit greys scaled, as the image gate does for a file, and the same shape limit."""
    story = Story.from_dict(
        {"characters": {"Nora": {"description": "a woman", "reference": "nora.png"}}, "panels": ["[Nora] walks"]},
        base=tmp_path,
    )
    pixels = np.zeros((64, 64, 4), np.uint8)
    pixels[16:48, 16:48] = (200, 30, 30, 255)
    Image.fromarray(pixels, "RGBA").save(tmp_path / "nora.png")
    from_file = story_photos(story)["Nora"]
    in_memory = story_photos(story, {"nora": Image.open(tmp_path / "nora.png")})["Nora"]  # any case, as tags
    assert in_memory.mode == "RGB" and in_memory.tobytes() == from_file.tobytes()
    assert from_file.getpixel((0, 0)) == (255, 255, 255)
    grey = Image.fromarray(np.full((8, 8), 40000, np.uint16)).convert("I;16")
    assert story_photos(story, {"Nora": grey})["Nora"].getpixel((0, 0))[0] == round(40000 * 255 / 65535)
    with pytest.raises(StoryDiffusionError, match=r"references\['Nora'\].*800 x 10.*8 times"):
        story_photos(story, {"Nora": Image.new("RGB", (800, 10))})


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"Zed": Image.new("RGB", (8, 8))}, r"'Zed' is not a character of this story \(its characters: Bob\)"),
        ({"Bob": "bob.png"}, r"references\['Bob'\] must be a PIL image, not str"),
        (["Bob"], "references must map character names"),
    ],
)
def test_photos_in_memory_for_no_character_or_not_images_are_refused(given, message):
    with pytest.raises(StoryDiffusionError, match=message):
        story_photos(bob_story(), given)


@pytest.mark.parametrize("index", [9, -1, True, "1", 0])
def test_control_images_in_memory_for_no_panel_with_a_control_are_refused(index, tmp_path):
    story = bob_story()
    story.panels[1].control = PanelControl("canny", str(tmp_path / "pose.png"), 0.8)
    with pytest.raises(
        StoryError, match=r"control_images: .* not the 0-based index of a panel with a control \(.*: 1\)"
    ):
        given_controls(story, {index: Image.new("RGB", (8, 8))})
    assert 1 in given_controls(story, {1: Image.new("RGB", (8, 8))})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"panels": ["1"]}, r"panels: '1' is not a 0-based index of the story's 2 panels \(0\.\.1\)"),
        ({"panels": [2]}, "panels: 2 is not a 0-based index"),
        ({"panels": [True]}, "panels: True is not"),
        ({"panels": 1}, "panels must be a list"),
        ({"settings": {"steps": 2}}, "settings must be GenerationSettings"),
        ({"bank": "bank.safetensors"}, "bank must be an IdentityBank"),
        ({"bank_storage": "gpu"}, "bank_storage must be one of auto, device, cpu, not 'gpu'"),
        ({"bank_memory": "4GB"}, "bank_memory is a number of bytes"),
        ({"callbacks": {"callback": 1}}, "callback must be a function"),
        ({"story": "story.yaml"}, "story must be a Story"),
    ],
)
def test_generate_names_an_argument_of_the_wrong_kind(changes, message):
    arguments = {"story": bob_story(), "settings": None, "panels": None, "bank": None, "bank_storage": "auto"}
    arguments.update(bank_memory=None, callbacks={})
    with pytest.raises(StoryDiffusionError, match=message):
        check_generate_call(**{**arguments, **changes})
    assert check_generate_call(**{**arguments, "panels": [np.int64(1)]}) == [1]  # numpy's ints are ints


def test_generate_refuses_a_panel_past_the_end_instead_of_drawing_nothing(tiny_sdxl):
    with pytest.raises(StoryDiffusionError, match="panels: 5 is not"):
        tiny_sdxl.generate(bob_story(), panels=[5])


def project(**changes):
    story = bob_story("[Bob] walks\n[NC] a street")
    panels = {0: Image.new("RGB", (64, 64), (200, 10, 10)), 1: Image.new("RGB", (64, 64))}
    return dataclasses.replace(Project(story, story.settings, "tiny-sdxl", panels, {0: 11, 1: 12}), **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seeds": {0: -1}}, "panel 1 has the seed -1"),
        ({"layout": "/home/me/my_layout.yaml"}, "layout '/home/me/my_layout.yaml' is not one of classic"),
        ({"direction": "up"}, "direction 'up' is not one of ltr, rtl"),
        ({"photos": {"Zed": Image.new("RGB", (8, 8))}}, "photos: 'Zed' is not one of the story's characters"),
        ({"controls": {0: Image.new("RGB", (8, 8))}}, "controls: 0 is not the 0-based index of a panel with a control"),
        ({"panels": {0: Image.new("RGB", (64, 64)), 5: Image.new("RGB", (64, 64))}}, "panels: 5 is not"),
        ({"panels": {0: Image.new("RGB", (64, 64)), 1: Image.new("RGB", (32, 64))}}, "panel 2 is 32 x 64 pixels"),
    ],
)
def test_a_project_load_project_would_refuse_is_not_written(changes, message, tmp_path):
    (tmp_path / "story.zip").write_bytes(b"the user's earlier file")
    with pytest.raises(ProjectError, match=message):
        save_project(project(**changes), tmp_path / "story.zip")
    assert (tmp_path / "story.zip").read_bytes() == b"the user's earlier file"
    assert [path.name for path in tmp_path.iterdir()] == ["story.zip"]


def test_a_project_of_cmyk_panels_and_numpy_seeds_saves_and_loads(tmp_path):
    panels = {0: Image.new("CMYK", (64, 64), (0, 255, 255, 0)), 1: Image.new("RGB", (64, 64))}
    loaded = load_project(save_project(project(panels=panels, seeds={0: np.int64(11)}), tmp_path / "p.zip"))
    assert loaded.seeds == {0: 11} and type(loaded.seeds[0]) is int and loaded.panels[0].mode == "RGB"
    with pytest.raises(ProjectError, match="is a folder: give the name of the .zip"):
        save_project(project(), tmp_path)


@pytest.mark.parametrize("name", ["../outside", "/tmp/clip", "a/b", "", "..", "clip\n"])
def test_a_clip_is_written_only_inside_its_folder(name, tmp_path):
    red, blue = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    with pytest.raises(StoryDiffusionError, match="name must be a plain file name"):
        animate_images(None, red, blue, "a walk", tmp_path / "clips", frames=4, name=name)
    with pytest.raises(StoryDiffusionError, match="prompt must be text"):
        animate_images(None, red, blue, None, tmp_path / "clips", frames=4)
    with pytest.raises(StoryDiffusionError, match="seed"):
        animate_images(None, red, blue, "a walk", tmp_path / "clips", frames=4, seed=-5)
    assert not list(tmp_path.parent.glob("outside*")) and not (tmp_path / "clips").exists()


@pytest.mark.parametrize(("images", "message"), [({-1: None}, "images: -1 is not"), ({0: "a.png"}, r"images\[0\]")])
def test_scores_are_of_the_storys_own_panels(images, message):
    """-1 is not the last panel: the score would be filed under 'panel 0' against another panel's prompt."""
    with pytest.raises(StoryError, match=message):
        score_story(bob_story(), images, encoder=None)


def test_a_dtype_may_be_given_as_torch_names_it():
    assert select_dtype("cpu", torch.float16) is torch.float16 and select_dtype("cpu", "bfloat16") is torch.bfloat16
    with pytest.raises(StoryDiffusionError, match="Unknown dtype"):
        select_dtype("cpu", 16)


def test_a_result_of_some_panels_is_not_saved_over_a_run_of_more(tiny_sdxl, tmp_path):
    """Its record would list only its panels: the run's others, this tool's files, would be on no record and
    kept by every later overwrite as if they were the user's."""
    story = bob_story("[Bob] runs\n[Bob] sits\n[Bob] eats")
    result = tiny_sdxl.generate(story)
    out = prepare_output_dir(tmp_path / "run")
    save_result(result, out)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    again = tiny_sdxl.generate(story, panels=[2], bank=result.bank)
    with pytest.raises(StoryDiffusionError, match=r"run holds a run whose panels 1, 2 this result does not hold"):
        save_result(again, out)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before
    save_result(result, out)  # the whole story again: its own record, replaced


def test_a_photo_and_a_control_image_given_in_memory_are_kept_with_the_run_that_drew_from_them(tiny_sdxl, tmp_path):
    """The run's folder holds what it was drawn from: a photo passed as a PIL image (the character names no
    file) is copied into inputs/ and named there, so story.json draws the same pixels again."""
    story = bob_story("[Bob] runs\n[Bob] sits")
    story.panels[1].control = PanelControl("canny", "pose-never-written.png", 0.8)
    photo = Image.new("RGBA", (64, 64), (30, 120, 200, 255))
    pose = Image.new("RGB", (64, 64), "white")
    pose.paste((0, 0, 0), (20, 10, 44, 60))
    result = tiny_sdxl.generate(story, references={"Bob": photo}, control_images={1: pose})
    assert set(result.pictures) == {"characters.Bob.reference", "panels[2].control.image"}
    out = prepare_output_dir(tmp_path / "run")
    save_result(result, out)
    recorded = read_manifest(out / "story.json")
    again = tiny_sdxl.generate(story_from_manifest(recorded, base=out))
    assert [p.image.tobytes() for p in again.panels] == [p.image.tobytes() for p in result.panels]
    assert recorded["story"]["characters"]["Bob"]["reference"].startswith("inputs/")
    assert recorded["story"]["panels"][1]["control"]["image"].startswith("inputs/")
    assert all((out / name).is_file() for name in recorded["inputs"])
    story.panels[1].control = None
    without = tiny_sdxl.generate(story)  # the photo steers: a record without it would draw another picture
    assert without.panels[0].image.tobytes() != result.panels[0].image.tobytes()


@pytest.mark.parametrize(
    ("identity_panels", "message"),
    [
        ({"Bob": 0}, r"identity_panels.Bob must be a list of 0-based panel indexes"),
        ({"Bob": [np.int64(0)]}, r"np.int64\(0\) is not a panel index: give Python ints"),
        ({"Bob": ["1"]}, "'1' is not a panel index"),
    ],
)
def test_identity_panels_of_the_wrong_kind_are_named_so(identity_panels, message):
    story = bob_story()
    story.identity_panels = identity_panels
    with pytest.raises(StoryError, match=message):
        validate_story(story)


def test_a_numpy_number_in_settings_is_named_as_one():
    with pytest.raises(SettingsError, match=r"a numpy int64: give a Python number"):
        GenerationSettings(steps=np.int64(4)).validate()


def test_compose_options_of_the_wrong_kind_are_refused_not_read_as_others(tmp_path):
    """str(None) is "none", the layout of no layout; a title of 5 was dropped in silence."""
    from storydiffusion.layout import LayoutError
    from storydiffusion.layout.compose import compose_run

    with pytest.raises(LayoutError, match="layout must be a name"):
        compose_run(tmp_path, layout=None)
    with pytest.raises(LayoutError, match="title must be text"):
        compose_run(tmp_path, title=5)


def test_an_unknown_scheduler_is_refused_before_the_model_loads(monkeypatch):
    from storydiffusion import pipeline

    monkeypatch.setattr(pipeline, "load_diffusers_pipeline", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(SettingsError, match="unknown scheduler 'bogus'"):
        pipeline.StoryPipeline.from_pretrained("tiny-sdxl", scheduler="bogus")
