"""Transition videos on tiny offline models: pinned endpoints, per-frame conditioning, MP4/GIF export, animate."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from storydiffusion.cli import main
from storydiffusion.errors import ModelError
from storydiffusion.motion.animate import MissingPanelError, PanelNumberError, animate_run
from storydiffusion.motion.export import ExportError, write_gif, write_mp4
from storydiffusion.motion.video import AnimationError, TransitionPipeline, fit_panel
from storydiffusion.rundir import MANIFEST_FORMAT, panel_filename, write_json
from storydiffusion.story import story_from_text

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


def test_frames_endpoints_and_resized_panels(pipe):
    start, end = pattern(1), pattern(2, size=(128, 96))  # an SDXL-like panel of another size and aspect
    result = pipe(start, end, "a lighthouse at night", frames=8, steps=2, guidance=7.5, seed=3)
    assert len(result.frames) == 8 and all(frame.size == (64, 64) for frame in result.frames)
    assert np.array_equal(np.asarray(result.frames[0]), np.asarray(start))
    assert np.array_equal(np.asarray(result.frames[-1]), np.asarray(fit_panel(end, 64, 64)))
    assert all(mad(frame, start) > 5 and mad(frame, fit_panel(end, 64, 64)) > 5 for frame in result.frames[1:-1])
    assert "linear interpolation (no trained predictor weights)" in result.note
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
    with pytest.raises(AnimationError, match="at least 2"):
        pipe(pattern(1), pattern(2), frames=1)
    with pytest.raises(AnimationError, match="at most 32"):
        pipe(pattern(1), pattern(2), frames=40)
    with pytest.raises(AnimationError, match="multiple of 8"):
        pipe(pattern(1), pattern(2), frames=4, height=60)
    import threading

    from storydiffusion.errors import GenerationCancelled

    cancel, steps = threading.Event(), []
    cancel.set()
    with pytest.raises(GenerationCancelled):
        pipe(pattern(1), pattern(2), frames=4, callback=steps.append, cancel=cancel, **FAST)
    assert steps == []


def colour_frames(count: int, size=(64, 48)) -> list[Image.Image]:
    return [Image.new("RGB", size, (30 * i % 256, 255 - 20 * i, 90)) for i in range(count)]


def test_mp4_reads_back_with_every_frame(tmp_path):
    path = write_mp4(colour_frames(8), tmp_path / "clip.mp4", fps=8)
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frames = [frame for frame in reader]
        assert reader.get_meta_data()["codec"] == "h264"
    finally:
        reader.close()
    assert len(frames) == 8 and frames[0].shape == (48, 64, 3)
    assert abs(int(frames[3][10, 10, 1]) - (255 - 60)) < 12  # the right frame, through yuv420p
    odd = write_mp4(colour_frames(3, size=(63, 47)), tmp_path / "odd.mp4", fps=4)
    reader = imageio.get_reader(str(odd), format="FFMPEG")
    try:
        assert next(iter(reader)).shape == (48, 64, 3)  # padded to even sizes for yuv420p
    finally:
        reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "odd.mp4"]  # no temporary files left


def test_gif_loops_with_every_frame(tmp_path):
    path = write_gif(colour_frames(6), tmp_path / "clip.gif", fps=10)
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (64, 48)
        assert gif.info.get("loop") == 0 and gif.info.get("duration") == 100
    assert [p.name for p in tmp_path.iterdir()] == ["clip.gif"]


def test_failed_export_leaves_nothing(tmp_path):
    frames = colour_frames(2) + colour_frames(1, size=(32, 32))
    with pytest.raises(ExportError, match="differ in size"):
        write_mp4(frames, tmp_path / "bad.mp4", fps=8)
    with pytest.raises(ExportError):
        write_gif([], tmp_path / "empty.gif", fps=8)
    assert list(tmp_path.iterdir()) == []


def fake_run(folder, count: int = 3, missing: tuple[int, ...] = ()):
    """A run folder as `generate` writes it: story.json manifest and panels/panel_NNN.png."""
    story = story_from_text("[Bob] a man in a red coat", "\n".join(f"[Bob] scene {i + 1}" for i in range(count)))
    (folder / "panels").mkdir(parents=True)
    entries = []
    for i in range(count):
        if i + 1 not in missing:
            pattern(10 + i).save(folder / "panels" / panel_filename(i))
        entries.append(
            {
                "panel": i + 1,
                "file": f"panels/{panel_filename(i)}",
                "seed": i,
                "prompt": story.panel_prompt(i),
                "negative_prompt": "",
            }
        )
    write_json(folder / "story.json", {"format": MANIFEST_FORMAT, "story": story.to_dict(), "panels": entries})
    return folder


def test_animate_run_writes_mp4_gif_and_info(tmp_path, pipe):
    run = fake_run(tmp_path / "out")
    result = animate_run(run, 1, 2, frames=4, fps=4, pipeline=pipe, **FAST)
    assert result.mp4 == run / "video" / "01-02.mp4" and result.gif == run / "video" / "01-02.gif"
    reader = imageio.get_reader(str(result.mp4), format="FFMPEG")
    try:
        assert sum(1 for _ in reader) == 4
    finally:
        reader.close()
    with Image.open(result.gif) as gif:
        assert gif.n_frames == 4
    info = json.loads((run / "video" / "01-02.json").read_text(encoding="utf-8"))
    assert info["from"] == 1 and info["to"] == 2 and info["embeddings"] == "linear interpolation"
    assert "scene 1" in info["prompt"] and "scene 2" in info["prompt"]
    assert not list(run.rglob("*.tmp*"))


def test_animate_run_refuses_bad_panels(tmp_path, pipe):
    run = fake_run(tmp_path / "out", count=3, missing=(3,))
    with pytest.raises(PanelNumberError, match="panels 1 to 3"):
        animate_run(run, 2, 7, pipeline=pipe)
    with pytest.raises(PanelNumberError):
        animate_run(run, 0, 1, pipeline=pipe)
    with pytest.raises(PanelNumberError, match="two different"):
        animate_run(run, 2, 2, pipeline=pipe)
    with pytest.raises(MissingPanelError, match="panel 3"):
        animate_run(run, 2, 3, pipeline=pipe)
    with pytest.raises(AnimationError, match="at least 2"):
        animate_run(run, 1, 2, frames=1, pipeline=pipe)
    with pytest.raises(AnimationError, match="story.json"):
        animate_run(tmp_path, 1, 2, pipeline=pipe)


def test_cli_animate_tiny_and_bad_input(tmp_path, capsys):
    run = fake_run(tmp_path / "out")
    code = main(
        [
            "animate",
            str(run),
            "--from",
            "2",
            "--to",
            "3",
            "--frames",
            "4",
            "--fps",
            "4",
            "--model",
            "tiny",
            "--steps",
            "2",
            "--guidance",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    assert (run / "video" / "02-03.mp4").is_file() and (run / "video" / "02-03.gif").is_file()
    assert "linear interpolation" in capsys.readouterr().out
    assert main(["animate", str(run), "--from", "3", "--to", "9", "--model", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: panel 9 does not exist") and "\n" not in err
    assert main(["animate", str(run), "--from", "1", "--to", "2", "--frames", "1", "--model", "tiny", "--quiet"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_ip_adapter_layout_is_the_public_sd15_plus_one(tmp_path):
    """Key names and shapes of h94/IP-Adapter models/ip-adapter-plus_sd15.safetensors, on the real SD 1.5 UNet (meta device)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from storydiffusion.models import build_tiny_sd15_pipeline, full_size_unet_config
    from storydiffusion.motion.video import IPAdapter, Resampler, load_ip_adapter

    with init_empty_weights():
        full = IPAdapter.build(UNet2DConditionModel(**full_size_unet_config("sd15")), Resampler())
    state = full.state_dict()
    assert sorted(int(k) for k in full.ip_adapter) == list(range(1, 32, 2))
    assert state["ip_adapter.1.to_k_ip.weight"].shape == (320, 768) and state["ip_adapter.31.to_v_ip.weight"].shape == (
        1280,
        768,
    )
    assert state["image_proj.latents"].shape == (1, 16, 768) and state["image_proj.proj_in.weight"].shape == (768, 1280)
    assert (
        state["image_proj.layers.3.0.to_kv.weight"].shape == (1536, 768) and "image_proj.layers.3.1.3.weight" in state
    )

    # A checkpoint in that layout loads strictly into a (tiny) SD 1.5 UNet; base adapters and pickles are refused.
    unet2d = build_tiny_sd15_pipeline().unet
    tiny = IPAdapter.build(
        unet2d,
        Resampler(dim=32, depth=2, dim_head=16, heads=2, num_queries=4, embedding_dim=64, output_dim=32, ff_mult=2),
    )
    weights = {k: torch.randn(v.shape) for k, v in tiny.state_dict().items()}
    save_file(weights, str(tmp_path / "ip.safetensors"))
    loaded = load_ip_adapter(unet2d, tmp_path / "ip.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in weights.items())
    base = {
        "image_proj.proj.weight": torch.zeros(4 * 32, 64),
        **{k: v for k, v in weights.items() if k.startswith("ip_adapter.")},
    }
    save_file(base, str(tmp_path / "base.safetensors"))
    with pytest.raises(ModelError, match="IP-Adapter Plus"):
        load_ip_adapter(unet2d, tmp_path / "base.safetensors")
    with pytest.raises(ModelError, match="pickle"):
        load_ip_adapter(unet2d, ("h94/IP-Adapter", "models", "ip-adapter-plus_sd15.bin"))


def test_real_models_offline_fail_with_a_hint():
    with pytest.raises(ModelError, match="--model tiny"):
        TransitionPipeline.from_pretrained(device="cpu", local_files_only=True)
