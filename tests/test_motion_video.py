"""The transition video pipeline on tiny offline models: pinned endpoints, per-frame conditioning, checks."""

import numpy as np
import pytest
import torch
from PIL import Image

from storydiffusion.errors import ModelError
from storydiffusion.motion.checks import AnimationError
from storydiffusion.motion.frames import fit_panel
from storydiffusion.motion.video import TransitionPipeline

FAST = dict(steps=2, guidance=1.0)  # no CFG: half the UNet batch, same code path otherwise


def pattern(seed: int, size=(64, 64)) -> Image.Image:
    """A smooth coloured pattern (smooth so the tiny VAE and GIF palette treat it well)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    channels = [np.sin(x * rng.uniform(2, 8) + y * rng.uniform(2, 8) + rng.uniform(0, 6)) for _ in range(3)]
    return Image.fromarray(((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8))


def mad(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


@pytest.fixture(scope="module")
def pipe() -> TransitionPipeline:
    return TransitionPipeline.tiny(seed=0)


@pytest.mark.slow
def test_frames_endpoints_and_resized_panels(pipe):
    start, end = pattern(1), pattern(2, size=(128, 96))  # an SDXL-like panel of another size and aspect
    result = pipe(start, end, "a lighthouse at night", frames=8, steps=2, guidance=7.5, seed=3)
    assert len(result.frames) == 8 and all(frame.size == (64, 64) for frame in result.frames)
    assert np.array_equal(np.asarray(result.frames[0]), np.asarray(start))
    assert np.array_equal(np.asarray(result.frames[-1]), np.asarray(fit_panel(end, 64, 64)))
    assert all(mad(frame, start) > 5 and mad(frame, fit_panel(end, 64, 64)) > 5 for frame in result.frames[1:-1])
    assert "linear interpolation, no trained predictor weights" in result.note
    assert "resized from 128x96 to 64x64" in result.note
    again = pipe(start, end, "a lighthouse at night", frames=8, steps=2, guidance=7.5, seed=3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(result.frames, again.frames))


def test_latent_pinning_alone_reproduces_the_panels(pipe):
    """Without the exact replacement, the first/last frames are the VAE round trip of the panels."""
    start, end = pattern(4), pattern(5)
    result = pipe(start, end, "", frames=6, exact_endpoints=False, **FAST)
    reference = pipe.vae_round_trip([start, end])
    assert mad(result.frames[0], reference[0]) < 0.5 and mad(result.frames[-1], reference[1]) < 0.5
    middle = [mad(frame, reference[0]) for frame in result.frames[1:-1]]
    assert min(middle) > 20 * max(mad(result.frames[0], reference[0]), 0.05)


def test_each_frame_reads_its_own_semantic_tokens(pipe):
    start, end = pattern(6), pattern(7)
    name = next(iter(pipe.ip_adapter.layer_ids))
    seen = []
    hook = pipe.ip_adapter.processor(name).to_k_ip.register_forward_hook(
        lambda m, args, out: seen.append(args[0].clone())
    )
    try:
        pipe(start, end, "", frames=4, steps=1, guidance=7.5)
    finally:
        hook.remove()
    assert seen, "the decoupled cross-attention was never called"
    tokens = seen[0]
    assert tokens.shape[0] == 2 * 4  # (uncond + cond) x frames, one row per frame
    conditional = tokens[4:]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(conditional[i], conditional[j])
    assert torch.allclose(tokens[0], tokens[1])  # the unconditional image tokens are the same for all frames
    semantic, note = pipe.semantic_tokens(start, end, 5)
    assert semantic.shape[:2] == (5, pipe.tokens)
    assert torch.allclose(semantic[2], (semantic[0] + semantic[4]) / 2, atol=1e-5)  # linear without a predictor


def test_predictor_folder_is_used_and_said(tmp_path, pipe):
    from storydiffusion.motion.predictor import SemanticMotionPredictor

    folder = tmp_path / "predictor"
    SemanticMotionPredictor.tiny(embed_dim=pipe.encoder.width, tokens=5).save_pretrained(folder)
    with_predictor = TransitionPipeline.tiny(seed=0, predictor=folder)
    result = with_predictor(pattern(1), pattern(2), "", frames=4, **FAST)
    assert "semantic motion predictor" in result.note and "linear" not in result.note
    SemanticMotionPredictor.tiny(embed_dim=pipe.encoder.width + 8, tokens=5).save_pretrained(tmp_path / "wrong")
    with pytest.raises(ModelError, match="width"):
        TransitionPipeline.tiny(seed=0, predictor=tmp_path / "wrong")


def test_bad_settings_are_refused(pipe):
    with pytest.raises(AnimationError, match=r"--frames must be 2\.\.32, got 1"):
        pipe(pattern(1), pattern(2), frames=1)
    with pytest.raises(AnimationError, match="at most 32"):
        pipe(pattern(1), pattern(2), frames=40)
    with pytest.raises(AnimationError, match="multiple of 8"):
        pipe(pattern(1), pattern(2), frames=4, height=60)
    with pytest.raises(AnimationError, match="--guidance must be between 0 and 50"):
        pipe(pattern(1), pattern(2), frames=4, guidance=51.0)
    with pytest.raises(AnimationError, match=r"--strength must be \(0, 1\]"):
        pipe(pattern(1), pattern(2), frames=4, strength=0.0)
    with pytest.raises(AnimationError, match="--steps must be 1..200"):
        pipe(pattern(1), pattern(2), frames=4, steps=0)
    import threading

    from storydiffusion.errors import GenerationCancelled

    cancel, steps = threading.Event(), []
    cancel.set()
    with pytest.raises(GenerationCancelled):
        pipe(pattern(1), pattern(2), frames=4, callback=steps.append, cancel=cancel, **FAST)
    assert steps == []


def test_real_models_offline_fail_with_a_hint():
    with pytest.raises(ModelError, match="--model tiny"):
        TransitionPipeline.from_pretrained(device="cpu", local_files_only=True)
