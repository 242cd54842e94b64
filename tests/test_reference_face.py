"""A character from the face in a photo: IP-Adapter FaceID through diffusers' loader, steered by a face
embedding (InsightFace for real models; a tiny random stand-in for the tiny ones), per image of a batch."""

import json

import pytest
from diffusers.models.embeddings import IPAdapterFaceIDImageProjection
from test_reference import portrait

from storydiffusion.cli import main
from storydiffusion.errors import BankError, ModelError, SettingsError, StoryError
from storydiffusion.faces import face_embedder
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.reference_adapter import loaded_reference_adapter
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import Story
from storydiffusion.story_references import FACE_WITHOUT_PHOTOS


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
    assert FACE_WITHOUT_PHOTOS in without.warnings and FACE_WITHOUT_PHOTOS not in conditioned.warnings


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


def test_only_a_face_model_or_the_tiny_stand_in_can_steer_by_face(tiny_sdxl, tmp_path):
    tiny_sdxl.pipe.save_pretrained(tmp_path / "model")
    folder = StoryPipeline.from_pretrained(str(tmp_path / "model"), device="cpu")
    assert tiny_sdxl.can_steer_by_face() and not folder.can_steer_by_face()
    folder.face_model = str(tmp_path / "pack")
    assert folder.can_steer_by_face()


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


def test_faceids_own_lora_goes_when_the_whole_photo_adapter_comes_back(tmp_path, monkeypatch):
    """The public FaceID checkpoints carry a LoRA for every attention layer, which diffusers turns on with
    the adapter: after a switch back, runs are again exactly those of the whole-photo adapter."""
    import torch

    from storydiffusion.models import tiny_adapters

    faceid_state = tiny_adapters.tiny_faceid_state

    def with_lora(unet, seed=0, face_width=None):
        state, generator = faceid_state(unet, seed, face_width), torch.Generator().manual_seed(5)
        modules = dict(unet.named_modules())
        for number, name in enumerate(unet.attn_processors):
            attn = modules[name.removesuffix(".processor")]
            for part, layer in (
                ("to_q", attn.to_q),
                ("to_k", attn.to_k),
                ("to_v", attn.to_v),
                ("to_out", attn.to_out[0]),
            ):
                down, up = (
                    torch.randn(4, layer.in_features, generator=generator),
                    torch.randn(layer.out_features, 4, generator=generator),
                )
                state["ip_adapter"][f"{number}.{part}_lora.down.weight"] = down * 0.5
                state["ip_adapter"][f"{number}.{part}_lora.up.weight"] = up * 0.5
        return state

    monkeypatch.setattr(tiny_adapters, "tiny_faceid_state", with_lora)
    photo = portrait(tmp_path / "alice.png")
    pipeline = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")
    plain = images(pipeline.generate(story_with_face(None)))
    whole = images(pipeline.generate(story_with_face(photo, 0.8, adapter="image")))
    pipeline.generate(story_with_face(photo, 0.8))
    assert any(name.startswith("faceid_") for name in pipeline.pipe.unet.peft_config)  # loaded with FaceID
    assert images(pipeline.generate(story_with_face(photo, 0.8, adapter="image"))) == whole
    assert not any(name.startswith("faceid_") for name in getattr(pipeline.pipe.unet, "peft_config", {}))
    assert images(pipeline.generate(story_with_face(None))) == plain


def test_the_command_line_refuses_a_face_story_it_cannot_steer_before_loading_or_writing(tmp_path, capsys, monkeypatch):
    from storydiffusion.faces import TinyFaceEmbedder

    portrait(tmp_path / "alice.png")
    story = tmp_path / "s.yaml"
    story.write_text(
        "characters:\n  Alice: {description: a woman, reference: alice.png}\n"
        "settings: {steps: 2, id_images: 1, reference_adapter: face}\npanels: ['[Alice] reads']\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    loading = StoryPipeline.from_pretrained

    def never_for_a_real_model(name, **options):
        assert name.startswith("tiny"), "a real model was loaded before the face model was checked"
        return loading(name, **options)

    monkeypatch.setattr(StoryPipeline, "from_pretrained", never_for_a_real_model)
    assert main(["generate", str(story), "--out", str(out), "--model", "sdxl-base", "--quiet"]) == 2
    assert "pass --face-model DIR" in capsys.readouterr().err and not out.exists()
    monkeypatch.setattr(TinyFaceEmbedder, "embed_faces", lambda self, pictures: [None for _ in pictures])
    assert main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet"]) == 2
    assert "characters.Alice.reference: no face found" in capsys.readouterr().err and not out.exists()


def test_the_bank_check_signs_the_face_model_on_a_fresh_pipeline(with_faceid, tmp_path):
    photo = portrait(tmp_path / "alice.png")
    bank = with_faceid.generate(story_with_face(photo)).bank
    StoryPipeline.from_pretrained("tiny-sdxl", device="cpu").check_bank(bank, story_with_face(photo), panels=[2])
