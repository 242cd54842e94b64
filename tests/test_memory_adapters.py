"""The memory plan of a story with reference photos and control images: adapters' weights counted exactly,
ControlNet residuals by formula, a controlled run's peak within 15% of the measured one."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from storydiffusion.cli import main
from storydiffusion.errors import SettingsError
from storydiffusion.memory_adapters import control_residual_elements
from storydiffusion.memory_model import LiveTensorMeter, module_bytes
from storydiffusion.memory_plan import MemoryPlanner
from storydiffusion.models.tiny_adapters import tiny_controlnet, tiny_image_encoder, tiny_ip_adapter_state
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.story import Story

TOLERANCE = 0.15


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "pose.png"
    image = Image.new("RGB", (80, 80), "white")
    ImageDraw.Draw(image).rectangle((10, 10, 60, 70), outline="black", width=3)
    image.save(path)
    return str(path)


def adapted_story(picture: str, adapters: bool = True) -> Story:
    """Bob (with a photo) in three panels, two of them posed with different kinds of map."""
    panels: list = ["[Bob] walks", "[Bob] sits", "[Bob] sleeps"]
    bob: object = "a man"
    if adapters:
        panels[0] = {"prompt": panels[0], "control": {"type": "canny", "image": picture}}
        panels[1] = {"prompt": panels[1], "control": {"type": "openpose", "image": picture}}
        bob = {"description": "a man", "reference": picture}
    settings = {"steps": 2, "id_images": 3, "style": "none", "window": 3, "height": 64, "width": 64}
    return Story.from_dict({"characters": {"Bob": bob}, "panels": panels, "settings": settings})


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_adapter_weights_are_counted_exactly(family, picture):
    planner = MemoryPlanner(adapted_story(picture), model=f"tiny-{family}", device="cpu")
    weights = planner.component_bytes
    for kind in ("canny", "openpose"):
        assert weights[f"ControlNet {kind}"] == module_bytes(tiny_controlnet(family, kind), torch.float32)
    assert weights["image encoder"] == module_bytes(tiny_image_encoder(), torch.float32)
    unet = StoryPipeline.from_pretrained(f"tiny-{family}", device="cpu").pipe.unet
    state = tiny_ip_adapter_state(unet)
    assert weights["IP-Adapter"] == sum(t.numel() * 4 for part in state.values() for t in part.values())


def test_faceid_weights_are_counted_exactly_and_no_image_encoder(picture):
    from storydiffusion.models.tiny_adapters import tiny_faceid_state

    story = adapted_story(picture)
    story.settings.reference_adapter = "face"
    weights = MemoryPlanner(story, model="tiny-sdxl", device="cpu").component_bytes
    state = tiny_faceid_state(StoryPipeline.from_pretrained("tiny-sdxl", device="cpu").pipe.unet)
    assert weights["IP-Adapter FaceID"] == sum(t.numel() * 4 for part in state.values() for t in part.values())
    assert "image encoder" not in weights and "IP-Adapter" not in weights


def test_a_real_faceid_plan_counts_the_lora_its_checkpoint_loads(picture):
    """SD 1.5's UNet: 16 transformer blocks, self- and cross-attention each with q, k, v, out under a rank-128
    LoRA (cross-attention's k and v read the 768-wide text): about 51 MB in half precision."""
    story = adapted_story(picture)
    story.settings.reference_adapter = "face"
    weights = MemoryPlanner(story, model="sd15", device="cuda").component_bytes
    blocks = {320: 5, 640: 5, 1280: 6}
    per_block = {width: 4 * 2 * width + (2 * width + 2 * (768 + width) + 2 * width) for width in blocks}
    assert weights["FaceID LoRA"] == 128 * 2 * sum(blocks[width] * per_block[width] for width in blocks)
    assert 50e6 < weights["FaceID LoRA"] < 52e6
    tiny = MemoryPlanner(story, model="tiny-sd15", device="cpu").component_bytes
    assert "FaceID LoRA" not in tiny  # the tiny FaceID state carries no LoRA


def test_a_story_without_adapters_plans_none():
    story = Story.from_dict({"characters": {"Bob": "a man"}, "panels": ["[Bob] walks"]})
    assert set(MemoryPlanner(story, model="tiny-sdxl", device="cpu").component_bytes) == {
        "unet",
        "vae",
        "text encoder 1",
        "text encoder 2",
    }


def test_the_union_controlnet_is_planned_once_for_every_kind(picture):
    planner = MemoryPlanner(adapted_story(picture), model="tiny-sdxl", device="cpu", control_union=True)
    nets = {name: size for name, size in planner.component_bytes.items() if name.startswith("ControlNet")}
    assert nets == {"ControlNet union": module_bytes(tiny_controlnet("sdxl", "union"), torch.float32)}
    with pytest.raises(SettingsError, match="union ControlNet is for SDXL"):
        MemoryPlanner(adapted_story(picture), model="tiny-sd15", device="cpu", control_union=True)


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_controlnet_residuals_follow_the_formula(family):
    net = tiny_controlnet(family, "canny")
    latent = torch.randn(2, 4, 32, 16)
    extra = {}
    if family == "sdxl":
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(2, 32), "time_ids": torch.randn(2, 6)}
    with torch.no_grad():
        down, mid = net(
            latent,
            10,
            encoder_hidden_states=torch.randn(2, 7, net.config.cross_attention_dim),
            controlnet_cond=torch.randn(2, 3, 256, 128),
            return_dict=False,
            **extra,
        )
    elements = sum(t.numel() for t in down) + mid.numel()
    assert elements == 2 * control_residual_elements(net.config, 32, 16)


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_a_run_with_photo_and_poses_peaks_within_15_percent_of_the_plan(family, picture):
    pipeline = StoryPipeline.from_pretrained(f"tiny-{family}", device="cpu")  # its own: adapters get attached
    loaded = sum(module_bytes(c, torch.float32) for c in pipeline.pipe.components.values() if hasattr(c, "buffers"))
    story = adapted_story(picture)
    planner = MemoryPlanner(story, model=f"tiny-{family}", device="cpu")
    plain = MemoryPlanner(adapted_story(picture, adapters=False), model=f"tiny-{family}", device="cpu")
    meter = LiveTensorMeter()
    with meter:  # the adapters load inside: their weights are counted as the run creates them
        pipeline.generate(story)
    predicted = planner.predict(planner.requested()).host_peak
    measured = loaded + meter.peak
    assert abs(predicted - measured) <= TOLERANCE * measured, (predicted, measured)
    assert predicted > plain.predict(plain.requested()).host_peak


def test_the_plan_command_names_the_adapters_it_counts(picture, tmp_path, capsys):
    story = tmp_path / "s.yaml"
    story.write_text(
        "characters: {Bob: {description: a man, reference: " + picture + "}}\n"
        "panels:\n  - prompt: '[Bob] waves'\n    control: {type: openpose, image: " + picture + "}\n",
        encoding="utf-8",
    )
    assert main(["plan", str(story), "--model", "tiny-sdxl", "--device", "cpu"]) == 0
    weights = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("weights:"))
    assert "ControlNet openpose" in weights and "image encoder" in weights and "IP-Adapter" in weights
    assert main(["plan", str(story), "--model", "tiny-sdxl", "--device", "cpu", "--control-union"]) == 0
    assert "ControlNet union" in capsys.readouterr().out
    assert main(["plan", str(story), "--model", "tiny-sd15", "--device", "cpu", "--control-union"]) == 2
    assert "leave out --control-union" in capsys.readouterr().err
