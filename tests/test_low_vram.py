"""The low-memory preset: what --low-vram turns on, the fp16-safe SDXL VAE and its offline fallback,
the CLI's flag on generate and plan, and the studio operator's switch."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline
from huggingface_hub.errors import LocalEntryNotFoundError
from PIL import Image

from storydiffusion import pipeline as pipeline_module
from storydiffusion.cli import main
from storydiffusion.model_pool import ModelPool
from storydiffusion.models import (
    FP16_SAFE_SDXL_VAE,
    LOW_VRAM,
    build_tiny_sdxl_pipeline,
    family_spec,
    needs_fp16_safe_vae,
    prepare_low_vram_vae,
)
from storydiffusion.models import low_vram as low_vram_module
from storydiffusion.models.architectures import tiny_vae_config
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.studio_server import server_options

FAST = ["--model", "tiny-sdxl", "--steps", "2", "--quiet", "--device", "cpu"]
HUB_SDXL = family_spec("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", "sdxl")


def write_story(path: Path, panels: list[str]) -> Path:
    lines = ["title: Test", "characters:", "  Bob: a man in a red coat", "panels:"]
    path.write_text("\n".join(lines + [f"  - {json.dumps(panel)}" for panel in panels]) + "\n", encoding="utf-8")
    return path


def record_offloads(monkeypatch) -> list[torch.device]:
    """diffusers' enable_model_cpu_offload replaced by one that records its device instead of installing hooks."""
    devices = []

    def enable_model_cpu_offload(pipe, device=None, **_):
        devices.append(torch.device(device))

    monkeypatch.setattr(StableDiffusionXLPipeline, "enable_model_cpu_offload", enable_model_cpu_offload)
    return devices


class VaeLoads:
    """Stands in for the hub download of the fp16-safe VAE: records each request, then gives ``answer``."""

    def __init__(self, answer):
        self.answer, self.requests = answer, []

    def __call__(self, repo, *, local_files_only=False):
        self.requests.append((repo, local_files_only))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def upcasting_sdxl() -> StableDiffusionXLPipeline:
    """A tiny SDXL pipeline whose VAE, like the real SDXL VAE, asks to be upcast to decode in float16."""
    pipe = build_tiny_sdxl_pipeline()
    pipe.vae.register_to_config(force_upcast=True)
    return pipe


def test_the_preset_turns_on_offload_slicing_tiling_and_a_host_bank():
    assert LOW_VRAM.placement() == {"cpu_offload": True, "vae_slicing": True, "vae_tiling": True}
    assert LOW_VRAM.plan_options() == {"cpu_offload": True, "vae": "tiling", "bank_tier": "host"}
    assert LOW_VRAM.fp16_safe_vae == FP16_SAFE_SDXL_VAE == "madebyollin/sdxl-vae-fp16-fix"
    assert FP16_SAFE_SDXL_VAE in LOW_VRAM.describe() and "offload" in LOW_VRAM.describe()


def test_a_low_vram_pipeline_slices_and_tiles_its_vae_and_skips_offload_on_the_cpu(monkeypatch):
    offloads, vae_loads = record_offloads(monkeypatch), VaeLoads(AssertionError("not asked for a tiny model"))
    monkeypatch.setattr(low_vram_module, "load_fp16_safe_vae", vae_loads)
    low = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", low_vram=True)
    assert low.pipe.vae.use_slicing and low.pipe.vae.use_tiling
    assert offloads == [] and low.device == torch.device("cpu")
    assert vae_loads.requests == []
    plain = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")
    assert not plain.pipe.vae.use_slicing and not plain.pipe.vae.use_tiling


def test_a_low_vram_pipeline_asks_for_model_offload_on_cuda(monkeypatch):
    offloads = record_offloads(monkeypatch)
    monkeypatch.setattr(pipeline_module, "select_device", lambda preference: torch.device("cuda"))
    monkeypatch.setattr(StableDiffusionXLPipeline, "to", lambda pipe, *a, **k: pytest.fail("moved, not offloaded"))
    StoryPipeline.from_pretrained("tiny-sdxl", device="cuda", dtype="float32", low_vram=True)
    assert offloads == [torch.device("cuda")]


@pytest.mark.parametrize(
    "spec, dtype, upcasts, needed",
    [
        (HUB_SDXL, torch.float16, True, True),
        (HUB_SDXL, torch.float32, True, False),
        (HUB_SDXL, torch.bfloat16, True, False),
        (HUB_SDXL, torch.float16, False, False),  # its VAE is already fp16-safe
        (family_spec("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15"), torch.float16, True, False),
        (family_spec("tiny-sdxl", "tiny", "sdxl"), torch.float16, True, False),
    ],
)
def test_the_fp16_safe_vae_is_wanted_only_for_sdxl_in_float16_with_an_upcast_vae(spec, dtype, upcasts, needed):
    pipe = SimpleNamespace(vae=SimpleNamespace(config=SimpleNamespace(force_upcast=upcasts)))
    assert needs_fp16_safe_vae(pipe, spec, dtype) is needed


def test_the_fp16_safe_vae_replaces_the_models_vae_and_stops_the_upcast(monkeypatch):
    fixed = AutoencoderKL(**dict(tiny_vae_config(0.13025), force_upcast=True))
    loads = VaeLoads(fixed)
    monkeypatch.setattr(low_vram_module, "load_fp16_safe_vae", loads)
    pipe = upcasting_sdxl()
    assert prepare_low_vram_vae(pipe, HUB_SDXL, torch.float16, local_files_only=True) == []
    assert loads.requests == [(FP16_SAFE_SDXL_VAE, True)]
    assert pipe.vae is fixed and pipe.vae.config.force_upcast is False
    assert pipe.config.vae == ("diffusers", "AutoencoderKL")  # registered as the pipeline's component


def test_without_the_download_the_models_vae_is_kept_with_a_one_line_warning(monkeypatch, caplog):
    offline = LocalEntryNotFoundError("Cannot find the requested files in the disk cache\nand outgoing traffic is off")
    monkeypatch.setattr(low_vram_module, "load_fp16_safe_vae", VaeLoads(offline))
    pipe = upcasting_sdxl()
    own = pipe.vae
    with caplog.at_level(logging.WARNING, logger=low_vram_module.__name__):
        warnings = prepare_low_vram_vae(pipe, HUB_SDXL, torch.float16)
    assert pipe.vae is own and pipe.vae.config.force_upcast is True
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert FP16_SAFE_SDXL_VAE in warnings[0] and "keeping the model's own VAE" in warnings[0]
    assert "LocalEntryNotFoundError" in warnings[0]
    assert [record.getMessage() for record in caplog.records] == warnings


def test_the_fp16_safe_vae_is_loaded_as_a_user_would_in_float16(monkeypatch):
    calls = []
    monkeypatch.setattr(AutoencoderKL, "from_pretrained", lambda *args, **kwargs: calls.append((args, kwargs)))
    low_vram_module.load_fp16_safe_vae(FP16_SAFE_SDXL_VAE, local_files_only=True)
    (args, kwargs), *_ = calls
    assert args == (FP16_SAFE_SDXL_VAE,) and kwargs["local_files_only"] is True
    assert torch.float16 in kwargs.values()


def test_generate_low_vram_on_the_cpu_draws_the_same_panels(tmp_path):
    """Offload is off on the CPU and a 64 px panel fits in one VAE tile; only slicing (one image decoded at a
    time instead of the batch) may round differently: at most one level of 255, on a few values."""
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks", "[Bob] eats", "[Bob] sits"])
    plain, low = tmp_path / "plain", tmp_path / "low"
    assert main(["generate", str(story), "--out", str(plain), *FAST]) == 0
    assert main(["generate", str(story), "--out", str(low), *FAST, "--low-vram"]) == 0
    panels = sorted(path.name for path in (plain / "panels").glob("*.png"))
    assert [path.name for path in sorted((low / "panels").glob("*.png"))] == panels and len(panels) == 3
    for name in panels:
        expected = np.asarray(Image.open(plain / "panels" / name), dtype=np.int16)
        drawn = np.asarray(Image.open(low / "panels" / name), dtype=np.int16)
        assert np.abs(drawn - expected).max() <= 1
        assert (drawn != expected).mean() < 0.01


@pytest.mark.parametrize("command", ["generate", "plan"])
def test_low_vram_with_the_bank_on_the_device_is_refused(tmp_path, capsys, command):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks"])
    args = [command, str(story), "--model", "tiny-sdxl", "--low-vram", "--bank-on-device"]
    args += ["--out", str(tmp_path / "out")] if command == "generate" else []
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith("error:") and error.count("\n") == 1
    assert "--low-vram" in error and "--bank-on-device" in error
    assert not (tmp_path / "out").exists()


def test_plan_low_vram_predicts_with_offload_and_tiling(tmp_path, capsys):
    story = write_story(tmp_path / "s.yaml", ["[Bob] walks", "[Bob] eats"])
    assert main(["plan", str(story), "--model", "tiny-sdxl"]) == 0
    plain = capsys.readouterr().out.splitlines()[0]
    assert main(["plan", str(story), "--model", "tiny-sdxl", "--low-vram"]) == 0
    low = capsys.readouterr().out
    first = low.splitlines()[0]
    assert "--cpu-offload" in first and "--vae-tiling" in first and "--bank-on-device" not in first
    assert "--cpu-offload" not in plain
    assert "on the host" in low


def test_the_studios_low_vram_switch_reaches_the_model_loader():
    calls = []

    def loader(name, **options):
        calls.append((name, options))
        return SimpleNamespace(spec=SimpleNamespace(source="tiny"))

    switched = server_options(["--offline-demo", "--low-vram"])
    assert switched.low_vram and not server_options(["--offline-demo"]).low_vram
    ModelPool(switched.model, loader=loader, **switched.pool_options()).get()
    assert calls == [("tiny-sdxl", {"device": "cpu", "dtype": "auto", "low_vram": True})]
    calls.clear()
    plain = server_options(["--offline-demo"])
    ModelPool(plain.model, loader=loader, **plain.pool_options()).get()
    assert "low_vram" not in calls[0][1]


def test_the_studio_notes_the_low_memory_preset_only_when_on():
    assert "--low-vram" in ModelPool("tiny-sdxl", low_vram=True).memory_note()
    assert ModelPool("tiny-sdxl").memory_note() == ""
    # The page's banner (ModelPool.notice) carries it, after the offline-demo line when there is one.
    assert ModelPool("sdxl-base", low_vram=True).notice().startswith("Low-memory preset (--low-vram): ")
    assert ModelPool("sdxl-base").notice() == ""
