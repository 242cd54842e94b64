"""A character from the face in a photo: IP-Adapter FaceID through diffusers' loader, steered by a face
embedding (InsightFace for real models; a tiny random stand-in for the tiny ones), per image of a batch."""

import json

import pytest
from diffusers.models.embeddings import IPAdapterFaceIDImageProjection
from PIL import Image, ImageDraw

from storydiffusion.cli import main
from storydiffusion.errors import BankError, ModelError, SettingsError, StoryError
from storydiffusion.faces import face_embedder
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.reference_adapter import loaded_reference_adapter
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import Story


def portrait(path, colour="orange"):
    image = Image.new("RGB", (48, 64), "white")
    ImageDraw.Draw(image).ellipse((8, 8, 40, 56), fill=colour)
    image.save(path)
    return path


def story_with_face(photo, scale=0.6, adapter="face"):
    alice = {"description": "a woman with blue hair", "reference": str(photo), "reference_scale": scale}
    settings = {"steps": 3, "id_images": 1, "first_consistent_step": 1, "style": "none", "reference_adapter": adapter}
    return Story.from_dict(
        {
            "characters": {"Bob": "a man with a red coat", "Alice": alice if photo else alice["description"]},
            "panels": ["[Bob] walks", "[Alice] reads", "[Alice] sits", "[Bob] sleeps", "[Bob] and [Alice] talk"],
            "settings": settings,
        }
    )


@pytest.fixture(scope="module")
def with_faceid():
    pipeline = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")
    pipeline.attach_references("face")
    return pipeline


def images(result):
    return [panel.image.tobytes() for panel in result.panels]


def test_faceid_loads_through_diffusers_own_loader(with_faceid):
    assert loaded_reference_adapter(with_faceid.pipe) == "face"
    projection = with_faceid.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert isinstance(projection, IPAdapterFaceIDImageProjection)


def test_a_face_changes_its_characters_identity_and_what_reads_it_and_nothing_else(with_faceid, tiny_sdxl, tmp_path):
    photo = portrait(tmp_path / "alice.png")
    without = tiny_sdxl.generate(story_with_face(None))  # no adapter loaded at all
    zero = with_faceid.generate(story_with_face(photo, 0.0))
    conditioned = with_faceid.generate(story_with_face(photo, 0.8))
    assert images(zero) == images(without)  # scale 0: the adapter changes nothing
    changed = [a != b for a, b in zip(images(without), images(conditioned))]
    # Alice's identity image (panel 2) and the panels that read it (3, 5); Bob's panels (1, 4) untouched.
    assert changed == [False, True, True, False, True]
    assert conditioned.bank.signature["reference_adapter"] == "face"


def test_the_face_and_the_whole_photo_steer_differently_and_one_pipeline_switches_between_them(tmp_path):
    photo = portrait(tmp_path / "alice.png")
    pipeline = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")
    whole = pipeline.generate(story_with_face(photo, 0.8, adapter="image"))
    face = pipeline.generate(story_with_face(photo, 0.8))  # FaceID replaces the IP-Adapter
    assert loaded_reference_adapter(pipeline.pipe) == "face"
    again = pipeline.generate(story_with_face(photo, 0.8, adapter="image"))  # and back
    assert images(again) == images(whole) and images(face)[1] != images(whole)[1]
    assert "reference_adapter" not in whole.bank.signature  # banks made before FaceID existed still fit


def test_a_bank_made_with_faceid_is_refused_by_a_run_with_the_whole_photo(with_faceid, tmp_path):
    photo = portrait(tmp_path / "alice.png")
    first = with_faceid.generate(story_with_face(photo))
    with pytest.raises(BankError, match="reference_adapter"):
        with_faceid.generate(story_with_face(photo, adapter="image"), panels=[2], bank=first.bank)


def test_a_photo_without_a_face_is_refused_naming_the_character(with_faceid, tmp_path, monkeypatch):
    class NoFaces:
        name, width = "none", 32

        def embed_faces(self, pictures):
            return [None for _ in pictures]

    monkeypatch.setattr(with_faceid, "_faces", NoFaces())
    with pytest.raises(StoryError, match=r"characters\.Alice\.reference: no face found in the photo"):
        with_faceid.generate(story_with_face(portrait(tmp_path / "alice.png")))


def test_a_real_model_needs_the_operators_face_model(tmp_path):
    with pytest.raises(ModelError, match="pass --face-model DIR"):
        face_embedder(None, tiny=False)
    with pytest.raises(ModelError, match="not a folder of InsightFace .onnx models"):
        face_embedder(tmp_path, tiny=False)


def test_reference_adapter_is_checked_like_every_setting():
    with pytest.raises(SettingsError, match=r"settings\.reference_adapter must be one of image, face, got 'faces'"):
        GenerationSettings.from_dict({"reference_adapter": "faces"}, "settings")


def test_the_command_line_draws_with_faceid_and_refuses_a_face_model_that_is_not_one(tmp_path, capsys):
    portrait(tmp_path / "alice.png")
    story = tmp_path / "s.yaml"
    story.write_text(
        "characters:\n  Alice: {description: a woman, reference: alice.png}\n"
        "settings: {steps: 2, id_images: 1}\npanels: ['[Alice] reads', '[Alice] sits']\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    command = ["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet"]
    assert main([*command, "--reference-adapter", "face", "--face-model", str(tmp_path / "nowhere")]) == 2
    assert "--face-model" in capsys.readouterr().err and not out.exists()
    assert main([*command, "--reference-adapter", "face"]) == 0
    manifest = json.loads((out / "story.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["reference_adapter"] == "face" and len(manifest["panels"]) == 2
