"""The memory planner: predictions held to measurements on the tiny models, the budget fit, the command."""

from __future__ import annotations

import math

import pytest
import torch

from storydiffusion.bank import IdentityBank
from storydiffusion.cli import main
from storydiffusion.memory_model import LiveTensorMeter, module_bytes
from storydiffusion.memory_plan import (
    CUDA_MEASURED_MARGIN,
    MemoryPlanner,
    PlanOptions,
    fit_budget,
    format_size,
    parse_size,
)
from storydiffusion.planning import plan_story
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text

CAST = "[Bob] a tall man with red hair\n[Alice] a young woman in a blue coat\n"
TOLERANCE = 0.15


def story(panels: int = 6, alone: int = 3):
    """Bob alone in the first ``alone`` panels (his identity set), then Bob and Alice together; at 256x256,
    a 32x32 latent, where activations outweigh the fixed costs as they do at a real model's size."""
    lines = ["[Bob] walks in the rain"] * alone + ["[Bob] [Alice] talk in a cafe"] * (panels - alone)
    return story_from_text(CAST, "\n".join(lines), settings=GenerationSettings(height=256, width=256))


def close(predicted: int, measured: int) -> bool:
    return abs(predicted - measured) <= TOLERANCE * measured


@pytest.fixture(scope="module", params=["sdxl", "sd15"])
def measured(request):
    """One identity batch of the tiny model drawn on the CPU, its live tensors counted."""
    from storydiffusion.pipeline import StoryPipeline

    # Its own pipeline: the session's shared one may carry adapters another test attached.
    pipeline = StoryPipeline.from_pretrained(f"tiny-{request.param}", device="cpu")
    the_story = story(alone=6)  # Bob only: one identity batch, which starts with an empty bank
    planner = MemoryPlanner(the_story, model=f"tiny-{request.param}", device="cpu")
    batch = next(b for b in plan_story(the_story, planner.settings) if b.kind == "identity")
    bank = IdentityBank({}, "cpu")
    meter = LiveTensorMeter()
    with meter:
        pipeline.denoise(["a"] * 3, [""] * 3, [1, 2, 3], planner.settings, batch.slots, bank, output_type="pt")
    weights = sum(module_bytes(c, torch.float32) for c in pipeline.pipe.components.values() if hasattr(c, "buffers"))
    return planner, weights, bank.nbytes(), weights + meter.peak


def identity_peak(planner: MemoryPlanner) -> int:
    plan = planner.predict(planner.requested())
    return max(p.host for p in plan.phases if p.name in ("identity pass", "VAE decode"))


def test_weights_are_predicted_exactly_from_the_configs(measured):
    planner, weights, _, _ = measured
    assert sum(planner.component_bytes.values()) == weights


def test_bank_is_predicted_exactly(measured):
    planner, _, bank, _ = measured
    assert bank > 0
    assert planner.bank_per_image * 3 == bank


def test_peak_of_one_identity_batch_within_15_percent(measured):
    planner, weights, _, peak = measured
    predicted = identity_peak(planner)
    assert close(predicted, peak), (predicted, peak)
    assert close(predicted - weights, peak - weights), "activations and bank alone"


@pytest.mark.parametrize(("size", "tiled"), [(128, False), (256, False), (128, True), (256, True)])
def test_vae_decode_of_one_panel_within_15_percent(size, tiled):
    from diffusers import AutoencoderKL

    from storydiffusion.memory_model import tiled_decode_elements, vae_decode_elements
    from storydiffusion.models.architectures import tiny_vae_config

    vae = AutoencoderKL(**tiny_vae_config(0.13025)).eval()
    vae.use_tiling = tiled  # the tiny VAE's tile is 64 pixels: both sizes are tiled
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    meter = LiveTensorMeter()
    with torch.no_grad(), meter:
        vae.decode(torch.randn(1, 4, size // factor, size // factor))
    formula = tiled_decode_elements if tiled else vae_decode_elements
    assert close(formula(vae.config, size, size) * 4, meter.peak)


@pytest.mark.parametrize(
    ("text", "size"), [("12GB", 12 * 10**9), ("12 GiB", 12 * 2**30), ("512MB", 512 * 10**6), ("1.5gib", 3 * 2**29)]
)
def test_sizes_are_read_with_their_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12", "12XB", "-1GB", "GB", ""])
def test_sizes_without_a_known_unit_are_refused(text):
    with pytest.raises(ValueError, match="such as 12GB"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0GB", "0.1B", "0.0001KB"])
def test_a_size_under_one_byte_is_refused_not_taken_as_no_limit(text):
    with pytest.raises(ValueError, match=f"a size must be at least 1 byte, got '{text}'"):
        parse_size(text)


def test_sizes_under_a_mib_are_shown_in_kib_or_bytes():
    assert [format_size(size) for size in (1, 1023, 1536, 5 * 2**20)] == ["1 B", "1023 B", "1.5 KiB", "5.00 MiB"]


def test_a_bigger_window_predicts_more_memory():
    planner = MemoryPlanner(story(panels=12), model="tiny-sdxl", device="cpu")

    def reads(window: int) -> int:
        return next(p.host for p in planner.predict(PlanOptions(window)).phases if p.name == "read batches")

    assert reads(1) < reads(2) < reads(4)


def test_bank_grows_with_identity_images_not_with_panels():
    """Bob's identity set is his solo panels (up to 3); Alice, never alone, gets 3 reference portraits."""

    def bank(panels: int, alone: int) -> tuple[int, int]:
        plan = MemoryPlanner(story(panels, alone), model="tiny-sd15", device="cpu").predict(PlanOptions(4))
        return plan.bank_per_image * plan.bank_images, plan.bank_per_image

    (one, per_image), (two, _), (three, _) = bank(6, 1), bank(6, 2), bank(6, 3)
    assert per_image > 0
    assert two - one == three - two == per_image
    assert bank(12, 2)[0] == bank(30, 2)[0] == two


def test_cuda_plan_moves_the_bank_and_weights_with_the_options():
    planner = MemoryPlanner(story(), model="tiny-sdxl", device="cuda")
    options = (PlanOptions(4), PlanOptions(4, bank_tier="device"), PlanOptions(4, cpu_offload=True))
    host, device, offload = (planner.predict(o) for o in options)
    bank = host.bank_per_image * host.bank_images

    def phases(plan) -> dict[str, int]:
        return {phase.name: phase.device for phase in plan.phases}

    moved = {name: phases(device)[name] - phases(host)[name] for name in phases(host)}
    # The bank lives on the device throughout; the read batches add the run's projected keys and values.
    assert moved == {"identity pass": bank, "read batches": 3 * bank, "VAE decode": bank}
    assert device.device_peak - host.device_peak in (bank, 3 * bank)
    assert offload.host_peak == host.host_peak + sum(host.weights.values())
    assert offload.device_peak < host.device_peak


def test_fit_finds_the_fastest_options_within_the_budget():
    planner = MemoryPlanner(story(panels=12), model="tiny-sdxl", device="cuda")
    roomy = fit_budget(planner, vram=2**40)
    assert roomy.fits and roomy.plan.options == PlanOptions(4)
    needed = math.ceil(roomy.plan.device_peak * CUDA_MEASURED_MARGIN)  # the margin measured on a GPU is kept
    assert fit_budget(planner, vram=needed).plan.options == PlanOptions(4)
    tight = fit_budget(planner, vram=needed - 1)
    assert tight.fits and tight.plan.options != PlanOptions(4)
    assert tight.plan.device_peak < roomy.plan.device_peak


def test_plan_command_lists_each_phase(tmp_path, capsys):
    path = tmp_path / "story.yaml"
    path.write_text("characters:\n  Bob: a man\npanels:\n" + "".join(f"  - '[Bob] walks {i}'\n" for i in range(6)))
    assert main(["plan", str(path), "--model", "tiny-sdxl", "--height", "128", "--width", "128", "--vram", "12GB"]) == 0
    out = capsys.readouterr().out
    for phase in ("identity pass", "read batches", "VAE decode", "identity bank", "settings that fit"):
        assert phase in out
    assert "at 128x128" in out


def test_plan_command_with_a_budget_nothing_fits_exits_2(tmp_path, capsys):
    path = tmp_path / "story.yaml"
    path.write_text("characters:\n  Bob: a man\npanels:\n  - '[Bob] walks'\n")
    assert main(["plan", str(path), "--model", "tiny-sd15", "--vram", "1MB"]) == 2
    captured = capsys.readouterr()
    assert "closest settings" in captured.out
    assert captured.err.startswith("error: nothing fits in --vram") and captured.err.count("\n") == 1


@pytest.mark.parametrize("flag", ["--vram", "--ram"])
def test_plan_command_refuses_a_size_without_unit(tmp_path, capsys, flag):
    path = tmp_path / "story.yaml"
    path.write_text("characters:\n  Bob: a man\npanels:\n  - '[Bob] walks'\n")
    assert main(["plan", str(path), "--model", "tiny-sd15", flag, "12"]) == 2
    assert f"argument {flag}: expected a size such as 12GB" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        (
            "characters:\n  - {name: Bob, description: a man, reference: gone.png}\npanels: ['[Bob] walks']\n",
            "gone.png",
        ),
        (
            "characters: {Bob: a man}\npanels:\n  - {prompt: '[Bob] walks', control: {type: canny, image: notes.txt}}\n",
            "notes.txt",
        ),
    ],
)
def test_plan_refuses_the_photos_and_poses_generate_would_refuse(lines, said, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a picture", encoding="utf-8")
    path = tmp_path / "story.yaml"
    path.write_text(lines, encoding="utf-8")
    assert main(["plan", str(path), "--model", "tiny-sd15"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and "Traceback" not in err


def test_peak_of_a_read_batch_with_its_projection_cache_within_15_percent(tiny_sdxl):
    """Bob's 3 identity images in the bank, then 4 panels reading it on the CPU: the bank, the run's cache
    of projected keys and values (twice the bank) and the UNet's activations, as the plan predicts."""
    the_story = story(panels=7, alone=7)
    planner = MemoryPlanner(the_story, model="tiny-sdxl", device="cpu")
    identity, reads = plan_story(the_story, planner.settings)
    assert identity.kind == "identity" and reads.kind == "panels" and len(reads.images) == 4
    bank = IdentityBank({}, "cpu")
    tiny_sdxl.denoise(["a"] * 3, [""] * 3, [1, 2, 3], planner.settings, identity.slots, bank, output_type="pt")
    bank.start_reads("cpu")
    meter = LiveTensorMeter()
    with meter:
        tiny_sdxl.denoise(["b"] * 4, [""] * 4, [4, 5, 6, 7], planner.settings, reads.slots, bank, output_type="latent")
    assert len(bank.projections) > 0
    weights = sum(planner.component_bytes.values())
    predicted = next(p.host for p in planner.predict(planner.requested()).phases if p.name == "read batches")
    measured = meter.peak + bank.nbytes()
    assert close(predicted - weights, measured), (predicted - weights, measured)
