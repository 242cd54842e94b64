"""Measuring a story: the metrics' own properties on a fixed tiny encoder, and `evaluate` on run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from storydiffusion.cli import main
from storydiffusion.evaluation import (
    evaluate_run,
    mean_pair_similarity,
    pair_similarities,
    score_story,
    tiny_clip,
)
from storydiffusion.rundir import written_files
from storydiffusion.story import Story

FAST = ["--model", "tiny-sdxl", "--steps", "2", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def encoder():
    return tiny_clip()


def stripes(seed: int, vertical: bool) -> Image.Image:
    """Red vertical or blue horizontal stripes with a little noise: two looks a fixed encoder tells apart."""
    pixels = np.zeros((64, 64, 3), np.int64)
    for start in range(0, 64, 8):
        if vertical:
            pixels[:, start : start + 4] = (200, 40, 40)
        else:
            pixels[start : start + 4, :] = (40, 40, 200)
    pixels += np.random.default_rng(seed).integers(-30, 30, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def two_character_story() -> Story:
    panels = ["[Bob] walks", "[Alice] reads", "[Bob] eats", "[Alice] sings", "[Bob] sleeps", "[Alice] runs"]
    return Story.from_dict({"characters": {"Bob": "a man", "Alice": "a woman"}, "panels": panels})


# ------------------------------------------------------------------------------------ the metrics


def test_pair_similarities_are_every_pair_once(encoder):
    embeddings = encoder.encode_images([stripes(i, i % 2 == 0) for i in range(4)])
    naive = [float(embeddings[i] @ embeddings[j]) for i in range(4) for j in range(i + 1, 4)]
    assert pair_similarities(embeddings).tolist() == pytest.approx(naive, abs=1e-6)
    assert mean_pair_similarity(embeddings[:1]) is None


def test_identical_images_give_similarity_one(encoder):
    story = Story.from_dict({"characters": {"Bob": "a man"}, "panels": ["[Bob] walks", "[Bob] eats", "[Bob] naps"]})
    picture = stripes(0, True)
    scores = score_story(story, {0: picture, 1: picture.copy(), 2: picture.copy()}, encoder)
    assert scores.characters["Bob"].clip_i == pytest.approx(1.0, abs=1e-5)
    assert [p.clip_i["Bob"] for p in scores.panels] == pytest.approx([1.0] * 3, abs=1e-5)


def test_a_permuted_story_scores_lower_clip_i_than_the_original(encoder):
    """Bob's panels share a look and Alice's another; swapping pictures between them lowers CLIP-I."""
    story = two_character_story()
    original = {i: stripes(i, vertical=(i % 2 == 0)) for i in range(6)}  # Bob: panels 0, 2, 4
    permuted = dict(original)
    permuted[2], permuted[3] = original[3], original[2]
    kept, mixed = score_story(story, original, encoder), score_story(story, permuted, encoder)
    assert mixed.summary["clip_i"] < kept.summary["clip_i"] - 0.02
    for name in ("Bob", "Alice"):
        assert mixed.characters[name].clip_i < kept.characters[name].clip_i


def test_clip_t_is_the_cosine_of_each_panel_with_its_own_prompt(encoder):
    story = two_character_story()
    images = {i: stripes(i, i % 2 == 0) for i in range(6)}
    scores = score_story(story, images, encoder, text_prefix="A photo depicts ")
    for panel in scores.panels:
        image = encoder.encode_images([images[panel.panel - 1]])[0]
        text = encoder.encode_texts(["A photo depicts " + story.panel_prompt(panel.panel - 1)])[0]
        assert panel.clip_t == pytest.approx(float(image @ text), abs=1e-5)
        assert panel.clip_score == pytest.approx(2.5 * panel.clip_t)
    assert scores.panels[0].prompt == "a man walks"
    assert scores.summary["clip_t"] == pytest.approx(np.mean([p.clip_t for p in scores.panels]))


class StubFaces:
    """A face model that finds a face in every picture but the ones it is told are faceless."""

    name = "stub"

    def __init__(self, encoder, faceless: set[int]):
        self.encoder, self.faceless, self.seen = encoder, faceless, 0

    def embed_faces(self, images):
        found = []
        for image in images:
            found.append(None if self.seen in self.faceless else self.encoder.encode_images([image])[0] * 3)
            self.seen += 1
        return found


def test_dreamsim_and_faces_are_measured_over_the_same_pairs(encoder):
    story = Story.from_dict({"characters": {"Bob": "a man"}, "panels": ["[Bob] a", "[Bob] b", "[Bob] c"]})
    images = {i: stripes(i, i != 1) for i in range(3)}
    scores = score_story(story, images, encoder, dreamsim=encoder, faces=StubFaces(encoder, {1}))
    bob = scores.characters["Bob"]
    assert bob.dreamsim == pytest.approx(1 - bob.clip_i, abs=1e-6)  # the same embedder: distance = 1 - CLIP-I
    kept = encoder.encode_images([images[0], images[2]])
    assert bob.faces_found == 2 and bob.face == pytest.approx(float(kept[0] @ kept[1]), abs=1e-5)


def test_a_character_in_one_panel_has_no_clip_i_and_a_note(encoder):
    story = Story.from_dict({"characters": {"Bob": "a man"}, "panels": ["[Bob] walks", "[NC] a street"]})
    scores = score_story(story, {0: stripes(0, True), 1: stripes(1, True)}, encoder)
    assert scores.characters["Bob"].clip_i is None and scores.summary["clip_i"] is None
    assert "Bob shown in one" in scores.notes[0]


class Unscaled:
    """A plug-in encoder that forgets the unit length the Protocol asks for."""

    def __init__(self, encoder):
        self.encoder, self.name = encoder, "unscaled"

    def encode_images(self, images):
        return self.encoder.encode_images(images) * 7.0

    def encode_texts(self, texts):
        return self.encoder.encode_texts(texts) * 0.3


def test_a_plug_in_encoders_embeddings_of_any_length_still_give_cosines(encoder):
    story = two_character_story()
    images = {i: stripes(i, i % 2 == 0) for i in range(6)}
    unit, loose = score_story(story, images, encoder), score_story(story, images, Unscaled(encoder))
    for key in ("clip_t", "clip_i"):
        assert loose.summary[key] == pytest.approx(unit.summary[key], abs=1e-5) and -1 <= loose.summary[key] <= 1


# ------------------------------------------------------------------------------------ run folders


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Bob in three panels (placed on the left in one), Alice beside him in one, masks saved."""
    folder = tmp_path_factory.mktemp("evaluate")
    story = folder / "s.yaml"
    story.write_text(
        "characters:\n  Bob: a man in a red coat\n  Alice: a woman in a blue coat\n"
        "panels:\n  - '[Bob] walks'\n  - '[Bob] eats'\n  - '[Bob@left] and [Alice@right] talk'\n"
        "  - '[Alice] reads'\n",
        encoding="utf-8",
    )
    out = folder / "run"
    assert main(["generate", str(story), "--out", str(out), *FAST, "--consistency", "subject", "--save-masks"]) == 0
    return out


def test_the_cli_writes_the_same_numbers_as_the_library(run, encoder, capsys):
    assert main(["evaluate", str(run), "--encoder", "tiny"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert record["format"] == "storydiffusion-metrics/1" and record["encoder"] == "tiny"
    library = evaluate_run(run, encoder).to_dict()
    assert {key: record[key] for key in library} == library
    assert "Bob" in printed and "CLIP-T" in printed and "wrote" in printed
    assert run / "metrics.json" in written_files(run)


def test_crops_come_from_regions_and_then_from_saved_masks(run, encoder):
    scores = evaluate_run(run, encoder)
    crops = {p.panel: p.crops for p in scores.panels}
    assert crops[3] == {"Bob": "region", "Alice": "region"}
    assert crops[1] == {"Bob": "mask"} and crops[2] == {"Bob": "mask"}
    assert scores.characters["Bob"].clip_i_crop is not None
    assert scores.characters["Bob"].panels == [1, 2, 3]


def test_a_region_too_small_to_crop_is_noted_not_silently_dropped(tmp_path, encoder):
    story = tmp_path / "s.yaml"
    story.write_text(
        "characters:\n  Bob: a man\npanels:\n  - '[Bob@0,0,0.1,0.1] waves'\n  - '[Bob@left] sits'\n",
        encoding="utf-8",
    )
    assert main(["generate", str(story), "--out", str(tmp_path / "run"), *FAST]) == 0
    scores = evaluate_run(tmp_path / "run", encoder)
    assert [p.crops for p in scores.panels] == [{}, {"Bob": "region"}]
    assert "Bob's region in panel(s) 1 is under 16 px on a side: no crop of it is scored" in scores.notes


def test_a_metrics_json_that_is_not_ours_is_never_replaced(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "metrics.json").write_text('{"mine": true}', encoding="utf-8")
    before = {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()}
    assert main(["evaluate", str(copy), "--encoder", "tiny"]) == 2
    assert "was not written by storydiffusion evaluate" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in copy.rglob("*") if path.is_file()} == before
    assert main(["evaluate", str(copy), "--encoder", "tiny", "--no-write", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["clip_t"] is not None
    assert (copy / "metrics.json").read_text(encoding="utf-8") == '{"mine": true}'


def test_a_redraw_forgets_the_old_scores_and_keeps_the_users_files(run, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["evaluate", str(copy), "--encoder", "tiny"]) == 0
    (copy / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["generate", str(copy / "story.json"), "--out", str(copy), "--panels", "2", "--quiet"]) == 0
    assert not (copy / "metrics.json").exists()
    assert (copy / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_scores_the_user_edited_are_theirs_kept_by_evaluate_and_by_a_redraw(run, tmp_path, capsys):
    """metrics.json keeps the digest of its content: a note added by hand makes it the user's file, which no
    command replaces (evaluate refused to write over it as it refuses a file of theirs; a redraw deleted it)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["evaluate", str(copy), "--encoder", "tiny"]) == 0
    assert main(["evaluate", str(copy), "--encoder", "tiny"]) == 0  # its own, unedited: replaced
    scores = json.loads((copy / "metrics.json").read_text(encoding="utf-8"))
    scores["notes"].append("panel 2 looks best")
    (copy / "metrics.json").write_text(json.dumps(scores, indent=1), encoding="utf-8")
    edited = (copy / "metrics.json").read_bytes()
    capsys.readouterr()
    assert main(["evaluate", str(copy), "--encoder", "tiny"]) == 2
    assert "metrics.json was edited since storydiffusion evaluate wrote it" in capsys.readouterr().err
    assert main(["generate", str(copy / "story.json"), "--out", str(copy), "--panels", "2", "--quiet"]) == 0
    assert (copy / "metrics.json").read_bytes() == edited


def test_an_encoder_that_cannot_load_offline_is_one_line_naming_the_flag(run, capsys):
    assert main(["evaluate", str(run), "--encoder", "open_clip:ViT-B-32/openai", "--no-write"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --encoder: could not load the encoder") and err.count("\n") == 1  # no log line
    assert "the encoder 'tiny' offline" in err and " …);" in err  # a long reason is cut between words


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--encoder", "nonsense"], "--encoder: encoder 'nonsense' is not known: use one of tiny, open_clip:"),
        (["--encoder", "tiny", "--image-encoder", "bogus"], "error: --image-encoder: encoder 'bogus' is not known"),
        (["--encoder", "open_clip:ViT-B-32/weights.bin"], "must be .safetensors (no pickles)"),
        (["--dreamsim", "no-such-folder"], "--dreamsim no-such-folder: not a folder holding DreamSim's checkpoints"),
        (["--face-model", "no-such-folder"], "--face-model no-such-folder: not a folder of InsightFace .onnx"),
        (["--dreamsim", "docs"], "not a folder holding DreamSim's checkpoints (*.pth)"),
        (["--dreamsim", "{partial}"], "it holds no clip_vitb16_pretrain.pth.tar, which DreamSim reads"),
    ],
)
def test_bad_measures_exit_2_naming_the_flag(run, flags, message, capsys, tmp_path):
    (tmp_path / "dino_vitb16_pretrain.pth").write_bytes(b"")  # a cache that would make DreamSim download the rest
    flags = [flag.format(partial=tmp_path) for flag in flags]
    before = sorted(path.name for path in Path(run).iterdir())
    assert main(["evaluate", str(run), *flags]) == 2
    assert message in capsys.readouterr().err
    assert sorted(path.name for path in Path(run).iterdir()) == before


@pytest.mark.parametrize("command", [["evaluate"], ["compose"], ["animate", "--from", "1", "--to", "2"]])
def test_a_path_that_is_not_a_run_folder_is_refused_saying_what_it_is(command, tmp_path, capsys):
    story = tmp_path / "story.yaml"
    story.write_text("characters: {Bob: a man}\npanels: ['[Bob] walks']\n", encoding="utf-8")
    for path, said in ((tmp_path, "has no story.json"), (tmp_path / "nope", "does not exist"), (story, "is a file")):
        assert main([command[0], str(path), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert said in err and f"{command[0]} " in err.split(":", 2)[-1] and "Traceback" not in err, err


def test_the_encoder_is_deterministic_and_unit_length(encoder):
    first = encoder.encode_images([stripes(0, True)])
    again = tiny_clip().encode_images([stripes(0, True)])
    assert torch.equal(first, again)
    assert float(first.norm()) == pytest.approx(1.0, abs=1e-6)


def test_a_users_metrics_json_is_refused_before_any_encoder_loads(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "metrics.json").write_text("mine", encoding="utf-8")
    assert main(["evaluate", str(copy), "--encoder", "transformers:no-such/model"]) == 2
    assert "was not written by storydiffusion evaluate" in capsys.readouterr().err  # not the encoder's error


def test_a_face_model_folder_must_sit_in_insightfaces_models_folder(tmp_path):
    from storydiffusion.errors import ModelError
    from storydiffusion.evaluation.extra_models import face_folder

    loose = tmp_path / "buffalo_l"
    loose.mkdir()
    (loose / "det.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="inside a 'models' folder"):
        face_folder(loose)  # InsightFace would look for (and download into) ../models/buffalo_l instead
    packed = tmp_path / "models" / "buffalo_l"
    packed.mkdir(parents=True)
    (packed / "det.onnx").write_bytes(b"")
    assert face_folder(packed) == packed


def test_another_encoder_can_measure_the_similarities_between_pictures(encoder):
    story = two_character_story()
    images = {i: stripes(i, i % 2 == 0) for i in range(6)}
    other = tiny_clip(seed=1)
    mixed = score_story(story, images, encoder, image_encoder=other)
    alone, its_own = score_story(story, images, encoder), score_story(story, images, other)
    assert [p.clip_t for p in mixed.panels] == [p.clip_t for p in alone.panels]  # CLIP-T from the first
    assert mixed.characters["Bob"].clip_i == its_own.characters["Bob"].clip_i != alone.characters["Bob"].clip_i
    assert (mixed.encoder, mixed.image_encoder) == ("tiny", "tiny")


# ------------------------------------------------------------------------------------ encoders by name


def test_an_open_clip_model_loads_from_a_local_safetensors_file(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from storydiffusion.evaluation import load_encoder

    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    (tmp_path / "tiny-evaluation-clip.json").write_text(json.dumps(config), encoding="utf-8")
    open_clip.add_model_config(tmp_path / "tiny-evaluation-clip.json")
    with torch.random.fork_rng():
        torch.manual_seed(3)
        model = open_clip.create_model("tiny-evaluation-clip").eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "weights.safetensors")
    encoder = load_encoder(f"open_clip:tiny-evaluation-clip/{tmp_path / 'weights.safetensors'}")
    picture = stripes(0, True)
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-evaluation-clip")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.encode_image(preprocess(picture)[None]), dim=-1)
    assert torch.allclose(encoder.encode_images([picture]), expected, atol=1e-5)  # the file's weights, not random
    assert encoder.encode_texts(["a man"]).shape == (1, 32)


def test_a_transformers_clip_loads_from_a_local_folder(tmp_path, encoder):
    from storydiffusion.evaluation import load_encoder

    encoder.model.save_pretrained(tmp_path / "clip")
    encoder.tokenizer.save_pretrained(tmp_path / "clip")
    encoder.processor.save_pretrained(tmp_path / "clip")
    loaded = load_encoder(f"transformers:{tmp_path / 'clip'}")
    picture = stripes(1, False)
    assert torch.allclose(loaded.encode_images([picture]), encoder.encode_images([picture]), atol=1e-6)
    assert torch.allclose(loaded.encode_texts(["a woman"]), encoder.encode_texts(["a woman"]), atol=1e-6)


def test_a_photo_written_into_story_json_by_hand_is_not_scored_as_the_runs(tmp_path):
    """The run copied its photo into inputs/; story.json edited to name another picture is not that photo."""
    photo = tmp_path / "nora.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(photo)
    (tmp_path / "s.yaml").write_text(
        "characters:\n  Nora:\n    description: a woman\n    reference: nora.png\npanels:\n  - '[Nora] walks'\n"
        "  - '[Nora] sits'\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    assert main(["generate", str(tmp_path / "s.yaml"), "--out", str(out), *FAST]) == 0
    assert evaluate_run(out, tiny_clip()).characters["Nora"].clip_i_reference is not None
    record = json.loads((out / "story.json").read_text(encoding="utf-8"))
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 64), (40, 200, 40)).save(other)
    record["story"]["characters"]["Nora"]["reference"] = str(other)
    (out / "story.json").write_text(json.dumps(record), encoding="utf-8")
    scores = evaluate_run(out, tiny_clip())
    assert scores.characters["Nora"].clip_i_reference is None
    assert any("other.png) is not a photo the run recorded" in note for note in scores.notes)
