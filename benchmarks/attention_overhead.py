"""Cost of Consistent Self-Attention on the real SDXL base UNet: time per step and identity-bank memory.

Builds the SDXL base 1.0 UNet (2.57 B parameters) from its public config with random weights (speed does
not depend on the values), installs consistent attention on the 36 up-block ``attn1`` layers and times
one UNet forward with classifier-free guidance (two batch rows per panel) for four variants, interleaved
in rounds so that drift of the machine hits all of them:

1. plain, 1 panel            batch 2, no story context
2. bank read, 1 panel        batch 2, one slot reading 3 identity images from the bank
   (and again with the projected keys and values a run caches after its first read batch)
3. plain, 3 panels           batch 6, no story context
4. identity write, 3 panels  batch 6, each image reads the other two and writes the bank (CPU storage)

It then compares the identity bank with the original StoryDiffusion cache, analytically from the layer
shapes seen by a forward hook, and checks the analytic size against ``IdentityBank.nbytes``.

    python benchmarks/attention_overhead.py --height 512 --width 512 --repeats 1 --out benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from bank_bytes import ID_IMAGES, ORIGINAL_STEPS, VAE_FACTOR, LayerShape, bank_table, ours_bytes_per_step
from compose_pages import publish_section
from diffusers import UNet2DConditionModel
from overhead_report import CACHED_READ, command_line, render

from storydiffusion.attention import (
    ConsistencyContext,
    ConsistentSelfAttnProcessor,
    ImageSlot,
    install_consistent_attention,
)
from storydiffusion.bank import IdentityBank
from storydiffusion.models import full_size_unet_config

TEXT_TOKENS, TEXT_DIM, POOLED_DIM, TIME_IDS = 77, 2048, 1280, 6
READER_ID = 100
# The original StoryDiffusion settings the bank is compared with.
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Variant:
    """One timed configuration: a batch of inputs and the story context passed to the UNet."""

    name: str
    panels: int
    inputs: dict[str, Any]
    context: ConsistencyContext | None

    @property
    def batch(self) -> int:
        return self.inputs["sample"].shape[0]


# ------------------------------------------------------------------------------------------------
# Setup
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up round")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", *DTYPES], help="auto: float16 on CUDA, bfloat16 on CPU"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.5, help="sampling rate of consistent attention")
    parser.add_argument(
        "--steps", type=int, default=ORIGINAL_STEPS, help="steps of the full run the bank is projected to"
    )
    parser.add_argument("--first-consistent-step", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS.md"))
    return parser.parse_args(argv)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return DTYPES[name]


def build_unet(device: torch.device, dtype: torch.dtype, seed: int) -> UNet2DConditionModel:
    """The SDXL base UNet with seeded random weights, built directly in ``dtype`` on ``device``."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.no_grad(), device:
            unet = UNet2DConditionModel(**full_size_unet_config("sdxl"))
    finally:
        torch.set_default_dtype(previous)
    return unet.eval().requires_grad_(False)


def make_inputs(
    batch: int, latent_h: int, latent_w: int, device: torch.device, dtype: torch.dtype, seed: int
) -> dict[str, Any]:
    """Random UNet inputs of SDXL's shapes; rows are (uncond panels..., cond panels...)."""
    generator = torch.Generator("cpu").manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device, dtype)

    return {
        "sample": randn(batch, 4, latent_h, latent_w),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": randn(batch, TEXT_TOKENS, TEXT_DIM),
        "added_cond_kwargs": {
            "text_embeds": randn(batch, POOLED_DIM),
            "time_ids": torch.tensor([[768.0, 768.0, 0.0, 0.0, 768.0, 768.0]] * batch, device=device, dtype=dtype),
        },
    }


def make_context(
    slots: list[ImageSlot], bank: IdentityBank, args: argparse.Namespace, latent_tokens: int
) -> ConsistencyContext:
    """A context at the first consistent step, as the pipeline builds it."""
    context = ConsistencyContext(
        slots,
        seed=args.seed,
        latent_tokens=latent_tokens,
        total_steps=args.steps,
        rate_for_factor=lambda factor: args.rate,
        first_consistent_step=args.first_consistent_step,
        bank=bank,
    )
    context.step = args.first_consistent_step  # writers and readers must be at the same step
    return context


def write_slots() -> list[ImageSlot]:
    """Identity pass: each identity image reads the other two of its batch and writes the bank."""
    ids = range(ID_IMAGES)
    return [ImageSlot(i, reads_batch=tuple(j for j in ids if j != i), writes=True) for i in ids]


def read_slots() -> list[ImageSlot]:
    """A later panel: reads the identity images from the bank."""
    return [ImageSlot(READER_ID, reads_bank=tuple(range(ID_IMAGES)))]


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward(unet: UNet2DConditionModel, variant: Variant) -> None:
    """One denoising step: one UNet forward, the context reaching the processors as in the pipeline."""
    kwargs = {"story_context": variant.context} if variant.context is not None else None
    unet(**variant.inputs, cross_attention_kwargs=kwargs, return_dict=False)


def timed_forward(unet: UNet2DConditionModel, variant: Variant, device: torch.device) -> tuple[float, int | None]:
    """Seconds of one forward and, on CUDA, its peak allocated GPU memory in bytes."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    forward(unet, variant)
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return seconds, peak


def run_rounds(
    unet: UNet2DConditionModel, variants: list[Variant], repeats: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Interleave the variants ``repeats`` times (the order rotates each round); seconds and peak bytes per variant."""
    seconds: dict[str, list[float]] = {v.name: [] for v in variants}
    peaks: dict[str, int] = {}
    for round_index in range(repeats):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            elapsed, peak = timed_forward(unet, variant, device)
            seconds[variant.name].append(elapsed)
            if peak is not None:
                peaks[variant.name] = max(peak, peaks.get(variant.name, 0))
            print(f"  round {round_index + 1}/{repeats}  {variant.name:<40} {elapsed:8.2f} s", flush=True)
    return seconds, peaks


def capture_layer_shapes(unet: UNet2DConditionModel, variant: Variant, latent_tokens: int) -> list[LayerShape]:
    """Run one forward with hooks on the consistent layers and record their hidden-state shapes."""
    shapes: dict[int, LayerShape] = {}
    handles = []
    for name, processor in unet.attn_processors.items():
        if not isinstance(processor, ConsistentSelfAttnProcessor):
            continue
        module = unet.get_submodule(name.removesuffix(".processor"))

        def hook(module, args, kwargs, processor=processor, name=name):
            hidden = args[0] if args else kwargs["hidden_states"]
            _, tokens, channels = hidden.shape
            factor = round(math.sqrt(latent_tokens / tokens))
            shapes[processor.layer_index] = LayerShape(processor.layer_index, name, tokens, channels, factor)

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        forward(unet, variant)
    finally:
        for handle in handles:
            handle.remove()
    return [shapes[index] for index in sorted(shapes)]


def build_variants(
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    bank: IdentityBank,
    device_bank: IdentityBank | None,
    cached_bank: IdentityBank | None = None,
) -> list[Variant]:
    """The timed variants, plus a device-bank read when the compute device is not the CPU, and a read
    whose projected keys and values a run has cached (when the bank is where the run computes)."""
    latent_h, latent_w = args.height // VAE_FACTOR, args.width // VAE_FACTOR
    tokens = latent_h * latent_w
    one = make_inputs(2, latent_h, latent_w, device, dtype, args.seed + 1)
    three = make_inputs(2 * ID_IMAGES, latent_h, latent_w, device, dtype, args.seed + 2)
    variants = [
        Variant("plain, 1 panel", 1, one, None),
        Variant("bank read, 1 panel", 1, one, make_context(read_slots(), bank, args, tokens)),
        Variant("plain, 3 panels", ID_IMAGES, three, None),
        Variant("identity write, 3 panels", ID_IMAGES, three, make_context(write_slots(), bank, args, tokens)),
    ]
    if device_bank is not None:
        variants.append(
            Variant(
                f"bank read, 1 panel, bank on {device.type}",
                1,
                one,
                make_context(read_slots(), device_bank, args, tokens),
            )
        )
    if cached_bank is not None:
        variants.append(Variant(CACHED_READ, 1, one, make_context(read_slots(), cached_bank, args, tokens)))
    return variants


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    torch.set_flush_denormal(True)  # random weights must not hit slow denormal paths on CPU

    print(f"building the SDXL base UNet ({str(dtype).removeprefix('torch.')}, {device.type}) ...", flush=True)
    started = time.perf_counter()
    unet = build_unet(device, dtype, args.seed)
    build_seconds = time.perf_counter() - started
    params = sum(p.numel() for p in unet.parameters())
    install_consistent_attention(unet, "up")
    print(f"  {params / 1e9:.2f} B parameters in {build_seconds:.0f} s", flush=True)

    bank = IdentityBank(storage="cpu")
    device_bank = IdentityBank(storage=device) if device.type != "cpu" else None
    cached_bank = IdentityBank(storage=device)  # a run's projection cache: filled by the warm-up read
    variants = build_variants(args, device, dtype, bank, device_bank, cached_bank)
    latent_tokens = (args.height // VAE_FACTOR) * (args.width // VAE_FACTOR)

    with torch.no_grad():
        print("warm-up (the write fills the bank first) ...", flush=True)
        writer = variants[3]
        layers = capture_layer_shapes(unet, writer, latent_tokens)
        for other_bank in (device_bank, cached_bank):
            if other_bank is not None:
                context = make_context(write_slots(), other_bank, args, latent_tokens)
                forward(unet, Variant(writer.name, writer.panels, writer.inputs, context))
        cached_bank.start_reads(device, projection_budget=2**40)
        for variant in variants:
            if variant is not writer:
                forward(unet, variant)
        synchronize(device)
        print("timing ...", flush=True)
        load_before = os.getloadavg()[0]
        times, peaks = run_rounds(unet, variants, args.repeats, device)
        load_after = os.getloadavg()[0]

    itemsize = torch.empty((), dtype=dtype).element_size()
    latent_h, latent_w = args.height // VAE_FACTOR, args.width // VAE_FACTOR
    report = {
        "args": args,
        "device": device,
        "dtype": dtype,
        "params": params,
        "build_seconds": build_seconds,
        "layers": layers,
        "variants": variants,
        "names": [v.name for v in variants],
        "times": times,
        "peaks": peaks,
        "measured": bank.nbytes(0),
        "analytic_step": ours_bytes_per_step(layers, latent_h, latent_w, args.rate, itemsize),
        "bank": bank_table(layers, args),
        "loads": (load_before, load_after),
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
    }
    text = render(report)
    publish_section(text, str(args.out))
    if report["measured"] != report["analytic_step"]:
        raise SystemExit("the measured bank size does not match the analytic one")


if __name__ == "__main__":
    main()
