"""Poses and compositions: a panel's control image through diffusers' ControlNet pipelines, per image
of a batch, on tiny random-weight ControlNets."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from storydiffusion.cli import main
from storydiffusion.controlnets import canny_map
from storydiffusion.errors import BankError, ModelError, StoryError
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.story import Story, load_story


def drawing(path, box=(10, 10, 60, 70)):
    picture = Image.new("RGB", (80, 80), "white")
    ImageDraw.Draw(picture).rectangle(box, outline="black", width=3)
    picture.save(path)
    return path


def story_with(controls, mode="identity"):
    panels = ["[Bob] walks", "[Bob] sits", "[Bob] sleeps"]
    for index, control in controls.items():
        panels[index] = {"prompt": panels[index], "control": control}
    settings = {"steps": 3, "id_images": 1, "style": "none", "window": 3, "mode": mode}
    return Story.from_dict({"characters": {"Bob": "a man"}, "panels": panels, "settings": settings})


def same(first, second):
    return [a.image.tobytes() == b.image.tobytes() for a, b in zip(first.panels, second.panels)]


# -------------------------------------------------------------------------------------- the file


def test_a_control_is_read_from_the_file_beside_it_and_round_trips(tmp_path):
    drawing(tmp_path / "pose.png")
    (tmp_path / "s.yaml").write_text(
        "characters: {Bob: a man}\n"
        "panels:\n  - prompt: '[Bob] waves'\n    control: {type: openpose, image: pose.png, scale: 0.5}\n",
        encoding="utf-8",
    )
    story = load_story(tmp_path / "s.yaml")
    control = story.panels[0].control
    assert (control.kind, control.image, control.scale) == ("openpose", str(tmp_path / "pose.png"), 0.5)
    assert Story.from_dict(story.to_dict()).panels[0].control == control
    assert story.to_dict()["panels"][0]["control"] == {"type": "openpose", "image": control.image, "scale": 0.5}


@pytest.mark.parametrize(
    "control,expected",
    [
        ({"type": "pose", "image": "x.png"}, "panel 1: control.type is 'pose': use one of openpose, canny, depth"),
        ({"type": "canny"}, "panel 1: control.image must be the path of an image file"),
        ({"image": "x.png"}, "panel 1: control.type is missing: give one of openpose, canny, depth"),
        ({"type": "canny", "image": "x.png", "scale": 2.5}, "panel 1: control.scale must be between 0 and 2"),
        ({"type": "canny", "image": "x.png", "strength": 1}, "unknown key(s) strength; known keys: type, image, scale"),
        ("x.png", "panel 1: control must be a mapping {type, image, scale}"),
    ],
)
def test_a_bad_control_is_refused_by_panel_and_key(control, expected):
    with pytest.raises(StoryError) as info:
        story_with({0: control})
    assert expected in str(info.value)


def test_canny_maps_are_white_edges_on_black_from_any_picture(tmp_path):
    edges = np.asarray(canny_map(Image.open(drawing(tmp_path / "d.png"))))
    assert edges.shape == (80, 80, 3) and set(np.unique(edges)) == {0, 255}
    assert edges[40, 10].max() == 255 or edges[40, 9].max() == 255 or edges[40, 11].max() == 255  # the left side
    assert edges[40, 35].max() == 0 and edges[2, 2].max() == 0  # inside the box, the background


# -------------------------------------------------------------------------------------- drawing


@pytest.fixture(scope="module")
def union_pipeline():
    return StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", control_union=True)


@pytest.mark.parametrize("family", ["sdxl", "union", pytest.param("sd15", marks=pytest.mark.slow)])
def test_a_control_image_changes_its_panel_only_and_the_run_stays_reproducible(
    family, tiny_sdxl, tiny_sd15, union_pipeline, tmp_path
):
    pipeline = {"sdxl": tiny_sdxl, "sd15": tiny_sd15, "union": union_pipeline}[family]
    control = {"type": "canny", "image": str(drawing(tmp_path / "edges.png")), "scale": 1.0}
    plain = pipeline.generate(story_with({}))
    posed = pipeline.generate(story_with({2: control}))
    again = pipeline.generate(story_with({2: control}))
    off = pipeline.generate(story_with({2: {**control, "scale": 0.0}}))
    # Panel 3 reads Bob's identity image (panel 1) beside panel 2 in one batch: only panel 3 changes.
    assert same(plain, posed) == [True, True, False]
    assert all(same(posed, again))
    assert all(same(plain, off))  # scale 0: the ControlNet adds exactly nothing


def test_two_kinds_in_one_batch_each_steer_their_own_panel(tiny_sdxl, tmp_path):
    canny = {"type": "canny", "image": str(drawing(tmp_path / "a.png")), "scale": 1.0}
    pose = {"type": "openpose", "image": str(drawing(tmp_path / "b.png", (20, 5, 50, 75))), "scale": 1.0}
    plain = tiny_sdxl.generate(story_with({}))
    both = tiny_sdxl.generate(story_with({1: pose, 2: canny}))
    only_canny = tiny_sdxl.generate(story_with({2: canny}))
    assert same(plain, both) == [True, False, False]
    assert both.panel(2).image.tobytes() == only_canny.panel(2).image.tobytes()  # the pose does not reach panel 3
    assert set(tiny_sdxl.controlnets) >= {"canny", "openpose"}


def test_a_bank_records_the_control_of_identity_panels(tiny_sdxl, tmp_path):
    first = {"type": "canny", "image": str(drawing(tmp_path / "a.png")), "scale": 1.0}
    drawn = tiny_sdxl.generate(story_with({0: first}))
    assert drawn.bank.signature["controls"]["1"][0] == "canny"
    other = {**first, "image": str(drawing(tmp_path / "b.png", (30, 30, 70, 70)))}
    with pytest.raises(BankError, match="controls"):
        tiny_sdxl.generate(story_with({0: other}), panels=[2], bank=drawn.bank)


def test_a_bank_of_posed_identity_panels_reads_for_any_later_panel(tiny_sdxl, tmp_path):
    """The signature holds every identity panel's map, whichever panels a later run draws."""
    pose = {"type": "openpose", "image": str(drawing(tmp_path / "a.png")), "scale": 1.0}
    panels = ["[Bob] walks", "[Ann] reads", "[Bob] and [Ann] talk"]
    story = Story.from_dict(
        {
            "characters": {"Bob": "a man", "Ann": "a woman"},
            "panels": [{"prompt": panels[0], "control": pose}, {"prompt": panels[1], "control": pose}, panels[2]],
            "settings": {"steps": 2, "id_images": 1, "style": "none"},
        }
    )
    full = tiny_sdxl.generate(story)
    assert set(full.bank.signature["controls"]) == {"1", "2"}
    tiny_sdxl.check_bank(full.bank, story, panels=[0])
    again = tiny_sdxl.generate(story, panels=[0], bank=full.bank)
    assert again.panel(0).image.size == (64, 64)


def test_the_union_controlnet_is_for_sdxl_only():
    with pytest.raises(ModelError, match="union ControlNet is for SDXL"):
        StoryPipeline.from_pretrained("tiny-sd15", device="cpu", control_union=True)


# ---------------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "content,expected",
    [
        (None, "'pose.png' does not exist: check the name; a relative path is read from the folder of s.json"),
        (b"GIF89a but not really", "not an image this tool reads"),
        ("wide", "a long side more than 8 times the short one"),
    ],
)
def test_a_bad_control_image_exits_2_before_the_folder_changes(tmp_path, capsys, content, expected):
    image = tmp_path / "pose.png"
    if isinstance(content, bytes):
        image.write_bytes(content)
    elif content == "wide":
        Image.new("RGB", (900, 100)).save(image)
    story = tmp_path / "s.json"
    control = {"type": "openpose", "image": "pose.png"}
    story.write_text(json.dumps({"characters": {"Bob": "a"}, "panels": [{"prompt": "[Bob] x", "control": control}]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code = main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet", "--overwrite"])
    error = capsys.readouterr().err
    assert code == 2 and "panel 1: control.image" in error and expected in error, error
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_a_posed_story_runs_from_the_command_line(tmp_path):
    drawing(tmp_path / "pose.png")
    story = tmp_path / "s.yaml"
    story.write_text(
        "characters: {Bob: a man}\npanels:\n  - '[Bob] walks'\n"
        "  - prompt: '[Bob] waves'\n    control: {type: depth, image: pose.png}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet", "--control-union"]) == 0
    manifest = json.loads((out / "story.json").read_text(encoding="utf-8"))
    assert manifest["story"]["panels"][1]["control"]["type"] == "depth"
    assert len(list((out / "panels").glob("*.png"))) == 2


def test_the_command_line_decodes_each_control_image_once_and_draws_the_librarys_pixels(
    tmp_path, monkeypatch, tiny_sdxl
):
    import storydiffusion.controlnets as controlnets
    from storydiffusion.bank import IdentityBank

    drawing(tmp_path / "pose.png")
    drawing(tmp_path / "edges.png", box=(20, 5, 70, 40))
    story = tmp_path / "s.yaml"
    story.write_text(
        "characters: {Bob: a man}\nsettings: {steps: 2, id_images: 1, window: 3, style: none}\npanels:\n"
        "  - prompt: '[Bob] walks'\n    control: {type: canny, image: edges.png}\n"
        "  - prompt: '[Bob] waves'\n    control: {type: depth, image: pose.png}\n  - '[Bob] sleeps'\n",
        encoding="utf-8",
    )
    bank_file = tmp_path / "bank.safetensors"
    assert (
        main(
            ["generate", str(story), "--out", str(tmp_path / "first"), "--model", "tiny-sdxl", "--quiet", "--save-bank"]
        )
        == 0
    )
    IdentityBank.load(tmp_path / "first" / "identity_bank.safetensors").save(bank_file)
    reads = []
    original = controlnets.read_image
    monkeypatch.setattr(
        controlnets, "read_image", lambda path, *a, **k: (reads.append(path), original(path, *a, **k))[1]
    )
    out = tmp_path / "out"
    assert (
        main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet", "--bank", str(bank_file)])
        == 0
    )
    assert sorted(reads) == sorted(
        [str(tmp_path / "edges.png"), str(tmp_path / "pose.png")]
    )  # once each, bank check included
    library = tiny_sdxl.generate(load_story(story), bank=IdentityBank.load(bank_file))  # files read there
    assert [np.asarray(Image.open(out / "panels" / f"panel_00{i + 1}.png")).tobytes() for i in range(3)] == [
        np.asarray(panel.image).tobytes() for panel in library.panels
    ]
