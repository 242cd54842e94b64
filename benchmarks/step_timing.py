"""Step time for ``gpu.py``: one UNet forward with CFG, plain and with consistent attention (write, reads from a
bank on the host with and without prefetch, on the device with and without cached projections), in
interleaved rounds, and its table for ``benchmarks/RESULTS.md``."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from storydiffusion.attention import ConsistencyContext, ImageSlot
from storydiffusion.bank import IdentityBank
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.settings import GenerationSettings

ID_IMAGES = 3
READER = 1000


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def unet_inputs(pipeline: StoryPipeline, batch: int, size: int) -> dict[str, Any]:
    """Random UNet inputs of the model's shapes for ``batch`` rows (both CFG halves counted)."""
    unet, device = pipeline.pipe.unet, pipeline.device
    latent = size // pipeline.pipe.vae_scale_factor
    generator = torch.Generator("cpu").manual_seed(batch)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device, unet.dtype)

    inputs = {
        "sample": randn(batch, unet.config.in_channels, latent, latent),
        "timestep": torch.tensor(500, device=device),
        "encoder_hidden_states": randn(batch, 77, unet.config.cross_attention_dim),
    }
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        time_ids = torch.tensor([[size, size, 0, 0, size, size]] * batch, device=device, dtype=unet.dtype)
        inputs["added_cond_kwargs"] = {"text_embeds": randn(batch, pooled), "time_ids": time_ids}
    return inputs


def step_variants(pipeline: StoryPipeline, size: int, settings: GenerationSettings, window: int) -> dict:
    """name -> (UNet inputs, a function giving the forward's story context).

    Reads are timed at the second consistent step, in the steady state of a run: with prefetch, the
    step's tokens were copied during the step before (an untimed forward), and the timed step copies
    the next one's.
    """
    latent_tokens = (size // pipeline.pipe.vae_scale_factor) ** 2
    device = pipeline.device
    first = settings.first_consistent_step

    def context(slots: list[ImageSlot], bank: IdentityBank | None, step: int = first) -> ConsistencyContext:
        made = ConsistencyContext(
            slots,
            seed=0,
            latent_tokens=latent_tokens,
            total_steps=settings.steps,
            rate_for_factor=settings.rate_for_factor,
            first_consistent_step=settings.first_consistent_step,
            bank=bank,
        )
        made.step = step
        return made

    ids = tuple(range(ID_IMAGES))
    writers = [ImageSlot(i, reads_batch=tuple(j for j in ids if j != i), writes=True) for i in ids]
    one, batch = [ImageSlot(READER, reads_bank=ids)], [ImageSlot(READER + k, reads_bank=ids) for k in range(window)]
    banks = {"host": IdentityBank({}, "cpu"), "device": IdentityBank({}, device), "cached": IdentityBank({}, device)}
    for bank in banks.values():  # each filled by identity-pass forwards at three consecutive steps
        for step in (first, first + 1, first + 2):
            forward(pipeline, unet_inputs(pipeline, 2 * ID_IMAGES, size), context(writers, bank, step))
    banks["host"].move_to("cpu", pin=device.type == "cuda")
    banks["cached"].start_reads(device, projection_budget=2**40)  # kept for the whole timing: a run's cache

    def reading(slots: list[ImageSlot], name: str, prefetch: bool = True):
        inputs = unet_inputs(pipeline, 2 * len(slots), size)

        def make() -> ConsistencyContext:
            bank = banks[name] if name == "cached" else banks[name].start_reads(device, 0, prefetch=prefetch)
            forward(pipeline, inputs, context(slots, bank, first))  # the step before, untimed
            return context(slots, bank, first + 1)

        return make

    def rows(panels: int) -> dict[str, Any]:
        return unet_inputs(pipeline, 2 * panels, size)

    return {
        "plain, 1 panel": (rows(1), lambda: None),
        "read, 1 panel, host bank + prefetch": (rows(1), reading(one, "host")),
        "read, 1 panel, host bank, no prefetch": (rows(1), reading(one, "host", prefetch=False)),
        "read, 1 panel, device bank": (rows(1), reading(one, "device")),
        "read, 1 panel, device bank + cached projections": (rows(1), reading(one, "cached")),
        f"plain, {window} panels": (rows(window), lambda: None),
        f"read, {window} panels, host bank + prefetch": (rows(window), reading(batch, "host")),
        f"plain, {ID_IMAGES} panels": (rows(ID_IMAGES), lambda: None),
        f"write, {ID_IMAGES} panels": (rows(ID_IMAGES), lambda: context(writers, IdentityBank({}, "cpu"))),
    }


def forward(pipeline: StoryPipeline, inputs: dict[str, Any], context: ConsistencyContext | None) -> None:
    kwargs = {"story_context": context} if context is not None else None
    with torch.no_grad():
        pipeline.pipe.unet(**inputs, cross_attention_kwargs=kwargs, return_dict=False)


def time_steps(pipeline: StoryPipeline, variants: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds per forward of each variant, one warm-up round, then ``repeats`` rotated rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(repeats + 1):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            inputs, make_context = variants[name]
            context = make_context()
            synchronize()
            started = time.perf_counter()
            forward(pipeline, inputs, context)
            synchronize()
            if round_index:
                seconds[name].append(time.perf_counter() - started)
    return seconds


def step_table(size: int, seconds: dict[str, list[float]]) -> list[str]:
    lines = [
        f"Step time at {size}x{size} (one UNet forward with CFG; median of {len(next(iter(seconds.values())))}):",
        "",
    ]
    lines += ["| variant | median ms | min ms | vs plain, same panels |", "|---|---:|---:|---:|"]
    for name, values in seconds.items():
        panels = name.split(", ")[1]
        base = statistics.median(seconds[f"plain, {panels}"])
        ratio = statistics.median(values) / base
        lines.append(f"| {name} | {statistics.median(values) * 1e3:.1f} | {min(values) * 1e3:.1f} | {ratio:.3f}x |")
    host = statistics.median(seconds["read, 1 panel, host bank + prefetch"])
    device = statistics.median(seconds["read, 1 panel, device bank"])
    lines += [
        "",
        f"Host-resident bank (with prefetch) vs device-resident, 1 panel: **{host / device:.3f}x** (goal: at most 1.05x).",
        "",
    ]
    return lines
