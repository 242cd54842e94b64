"""What an identity bank of one model and one run's settings holds: its (step, layer) keys and tensor shapes.

A bank is read by a run only if every tensor in it is exactly what that run would have written, so a
misfit is refused before any step instead of failing (or being silently misread) half-way through.
The shapes come from the same places the run takes them: the sample size from ``ConsistencyContext``,
the steps from the run's own scheduler, the channels from each layer's attention module.
"""

from __future__ import annotations

from typing import Any

from .denoising import consistency_context, guides
from .models import fresh_scheduler
from .settings import GenerationSettings

BankLayout = dict[tuple[int, int], tuple[int, int, int]]  # (step, layer) -> (halves, sampled tokens, channels)


def expected_bank_layout(pipe: Any, layer_names: list[str], settings: GenerationSettings) -> BankLayout:
    """Per (step, layer) where an identity image stores tokens, the shape they have; ``settings`` resolved."""
    context = consistency_context(pipe, [], settings, None)
    latent_height, latent_width = settings.height // pipe.vae_scale_factor, settings.width // pipe.vae_scale_factor
    halves = 2 if guides(pipe, settings) else 1
    steps = denoising_steps(pipe, settings)
    layout: BankLayout = {}
    for layer, name in enumerate(layer_names):
        scale = layer_downscale(pipe.unet, name)
        sampled = context.sample_count((latent_height // scale) * (latent_width // scale))
        if sampled == 0:  # gather_sources stores nothing for such a layer
            continue
        channels = pipe.unet.get_submodule(name.removesuffix(".processor")).to_k.in_features
        for step in range(steps):
            context.step = step
            if context.is_active(layer):
                layout[(step, layer)] = (halves, sampled, channels)
    return layout


def denoising_steps(pipe: Any, settings: GenerationSettings) -> int:
    """How many UNet steps the run's scheduler takes for ``settings.steps`` (second-order ones take more)."""
    scheduler = fresh_scheduler(settings.scheduler, pipe.scheduler)
    scheduler.set_timesteps(settings.steps)
    return len(scheduler.timesteps)


def layer_downscale(unet: Any, layer_name: str) -> int:
    """How many times smaller than the latent, on each side, a UNet layer's feature map is."""
    part, _, rest = layer_name.partition(".")
    downsamples = [getattr(block, "downsamplers", None) is not None for block in unet.down_blocks]
    if part == "down_blocks":
        return 2 ** sum(downsamples[: int(rest.split(".")[0])])
    deepest = 2 ** sum(downsamples)
    if part != "up_blocks":
        return deepest
    upsamples = [getattr(block, "upsamplers", None) is not None for block in unet.up_blocks]
    return deepest // 2 ** sum(upsamples[: int(rest.split(".")[0])])
