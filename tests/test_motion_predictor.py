"""The CLIP image encoder, token selection, interpolation and the Semantic Motion Predictor (tiny, CPU)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from PIL import Image

from storydiffusion.errors import ModelError
from storydiffusion.motion.encoder import ClipImageEncoder
from storydiffusion.motion.predictor import (
    NOTE_LINEAR,
    NOTE_PREDICTOR,
    PredictorConfig,
    SemanticMotionPredictor,
    interpolate_embeddings,
    linear_interpolation,
    select_tokens,
)


def _randomised(embed_dim: int = 64, tokens: int = 5, seed: int = 0) -> SemanticMotionPredictor:
    """A tiny predictor with every weight random (the real one starts with a zero output layer)."""
    torch.manual_seed(seed)
    model = SemanticMotionPredictor.tiny(embed_dim, tokens)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.5)
    return model.eval()


def test_tiny_encoder_shapes_and_determinism():
    encoder = ClipImageEncoder.tiny(seed=0)
    images = [Image.new("RGB", (80, 48), (200, 30, 30)), Image.new("RGB", (40, 40), (10, 200, 90))]
    tokens = encoder.encode(images)
    assert encoder.image_size == 32 and encoder.width == 64 and encoder.num_tokens == 17
    assert tokens.shape == (2, 17, 64) and tokens.dtype == torch.float32
    assert encoder.encode_pooled(images).shape == (2, 32)
    assert torch.equal(tokens, ClipImageEncoder.tiny(seed=0).encode(images))
    assert not torch.equal(tokens, ClipImageEncoder.tiny(seed=1).encode(images))
    as_tensor = torch.stack([torch.full((3, 40, 40), v) for v in (0.2, 0.8)])
    assert encoder.encode(as_tensor).shape == (2, 17, 64)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_real_encoder_offline_is_a_model_error(monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ModelError, match="ViT-H-14.*internet"):
        ClipImageEncoder.from_pretrained()


def test_select_tokens():
    tokens = torch.randn(2, 1 + 16 * 16, 8)
    chosen = select_tokens(tokens, 16)  # CLS + 3x5 pooled grid
    assert chosen.shape == (2, 16, 8)
    assert torch.equal(chosen[:, 0], tokens[:, 0])
    assert torch.equal(chosen, select_tokens(tokens, 16))
    small = torch.randn(1, 17, 4)  # CLS + 4x4 grid
    pooled = select_tokens(small, 5)  # CLS + 2x2 quadrants
    grid = small[0, 1:].reshape(4, 4, 4)
    assert torch.allclose(pooled[0, 1], grid[:2, :2].mean((0, 1)), atol=1e-6)
    assert torch.allclose(pooled[0, 4], grid[2:, 2:].mean((0, 1)), atol=1e-6)
    assert select_tokens(small, 4, mode="pooled").shape == (1, 4, 4)
    assert select_tokens(small, 1, mode="cls").shape == (1, 1, 4)
    assert torch.equal(select_tokens(small, 17, mode="all"), small)
    with pytest.raises(ValueError):
        select_tokens(small, 40)


def test_linear_interpolation_endpoints_and_midpoint():
    start, end = torch.randn(5, 64), torch.randn(5, 64)
    path = linear_interpolation(start, end, 9)
    assert path.shape == (9, 5, 64)
    assert torch.equal(path[0], start) and torch.equal(path[-1], end)
    assert torch.allclose(path[4], (start + end) / 2, atol=1e-6)
    with pytest.raises(ValueError):
        linear_interpolation(start, end, 1)


def test_predictor_shapes_and_pinned_endpoints():
    model = _randomised()
    start, end = torch.randn(3, 5, 64), torch.randn(3, 5, 64)
    for frames in (3, 8, 16, 24):
        out = model(start, end, frames)
        assert out.shape == (3, frames, 5, 64)
        assert torch.equal(out[:, 0], start) and torch.equal(out[:, -1], end)
    middle = model(start, end, 8)[:, 1:-1]
    assert not torch.allclose(middle, linear_interpolation(start, end, 8).transpose(0, 1)[:, 1:-1])
    single = model.predict(start[0], end[0], 6)
    assert single.shape == (6, 5, 64) and torch.equal(single[0], start[0]) and torch.equal(single[-1], end[0])
    with pytest.raises(ValueError):
        model(torch.randn(1, 4, 64), torch.randn(1, 4, 64), 8)


def test_untrained_predictor_is_linear_interpolation():
    model = SemanticMotionPredictor.tiny()
    start, end = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    assert torch.allclose(model(start, end, 8), linear_interpolation(start, end, 8).transpose(0, 1))


def test_gradients_flow():
    model = _randomised()
    out = model(torch.randn(2, 5, 64), torch.randn(2, 5, 64), 6)
    out.pow(2).mean().backward()
    assert model.input_proj.weight.grad is not None and model.output_proj.weight.grad.abs().sum() > 0


def test_save_load_round_trip(tmp_path):
    model = _randomised()
    model.save_pretrained(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["config.json", "model.safetensors"]
    loaded = SemanticMotionPredictor.from_pretrained(tmp_path / "p")
    assert loaded.config == model.config
    start, end = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    assert torch.equal(loaded(start, end, 8), model(start, end, 8))
    assert PredictorConfig.from_dict({**model.config.to_dict(), "future_key": 1}) == model.config


def test_from_pretrained_refuses_pickles_and_missing_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        SemanticMotionPredictor.from_pretrained(tmp_path / "missing")
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelError, match="pickle"):
        SemanticMotionPredictor.from_pretrained(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="model.safetensors"):
        SemanticMotionPredictor.from_pretrained(empty)


def test_a_damaged_or_outsized_predictor_folder_is_a_model_error_not_a_crash(tmp_path):
    model = _randomised()
    model.save_pretrained(tmp_path / "p")
    weights = tmp_path / "p" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])  # cut short
    with pytest.raises(ModelError, match="is not a valid safetensors file"):
        SemanticMotionPredictor.from_pretrained(tmp_path / "p")
    config = tmp_path / "p" / "config.json"
    changes = (
        ({"hidden": 10**8, "heads": 1}, "hidden must be"),
        ({"layers": True}, "layers must be"),
        ({"embed_dim": 64.0}, "embed_dim must be a whole number"),
        ({"hidden": 8192, "heads": 128, "layers": 64, "mlp_ratio": 16.0}, "more than the 2,000,000,000"),
    )
    for change, named in changes:
        config.write_text(json.dumps({**model.config.to_dict(), **change}))
        with pytest.raises(ModelError, match=named):  # refused before any weight is allocated
            SemanticMotionPredictor.from_pretrained(tmp_path / "p")


def test_interpolate_embeddings_notes():
    start, end = torch.randn(5, 64), torch.randn(5, 64)
    linear, note = interpolate_embeddings(start, end, 7)
    assert note == NOTE_LINEAR and "linear interpolation" in note and linear.shape == (7, 5, 64)
    predicted, note = interpolate_embeddings(start, end, 7, _randomised())
    assert note == NOTE_PREDICTOR == "semantic motion predictor"
    assert predicted.shape == (7, 5, 64) and torch.equal(predicted[0], start) and torch.equal(predicted[-1], end)


def test_config_validation():
    with pytest.raises(ValueError):
        PredictorConfig(hidden=100, heads=16)
    with pytest.raises(ValueError):
        PredictorConfig(token_selection="random")
    defaults = PredictorConfig()
    assert (defaults.embed_dim, defaults.hidden, defaults.layers, defaults.encoder_model) == (1280, 1024, 8, "ViT-H-14")


def test_encoder_can_return_the_penultimate_layer_ip_adapter_plus_expects():
    from PIL import Image

    from storydiffusion.motion.encoder import ClipImageEncoder

    encoder = ClipImageEncoder.tiny(seed=0)
    image = [Image.new("RGB", (40, 40), (200, 30, 90))]
    last = encoder.encode(image)
    encoder.layer = "penultimate"
    penultimate = encoder.encode(image)
    assert penultimate.shape == last.shape
    assert not torch.allclose(penultimate, last)
    # The penultimate block's raw output: running the tower by hand to that block gives the same tokens.
    visual = encoder.visual
    with torch.no_grad():
        x = visual.conv1(encoder.preprocess(image))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1), x], dim=1)
        x = visual.ln_pre(x + visual.positional_embedding)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
    torch.testing.assert_close(penultimate, x.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("selection", "tokens"), [("cls", 5), ("cls+pooled", 1)])
def test_a_config_whose_tokens_its_selection_cannot_keep_is_refused(selection, tokens):
    with pytest.raises(ValueError, match=f"token_selection '{re.escape(selection)}' keeps"):
        PredictorConfig.tiny().__class__(
            **{**PredictorConfig.tiny().to_dict(), "token_selection": selection, "tokens": tokens}
        )


@pytest.mark.parametrize(("selection", "tokens"), [("all", 1024), ("pooled", 1000)])
def test_a_predictor_keeping_more_tokens_than_the_encoder_gives_is_a_model_error(selection, tokens):
    """Found when the pipeline is put together, as a refusal (exit 2), not as a traceback at the first clip."""
    from storydiffusion.errors import ModelError
    from storydiffusion.motion.video import _check_token_count

    config = PredictorConfig(**{**PredictorConfig.tiny().to_dict(), "token_selection": selection, "tokens": tokens})
    with pytest.raises(ModelError, match=f"keeps {tokens} tokens \\({selection}\\) of the image encoder's 17"):
        _check_token_count(config, 17)
    _check_token_count(PredictorConfig.tiny(), 17)
