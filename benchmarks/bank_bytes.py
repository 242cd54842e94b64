"""The identity bank's size for ``attention_overhead.py``, analytically from the layer shapes a forward hook
saw: the original StoryDiffusion cache (every hidden state, both CFG halves, every step) against ours (the
sampled tokens of the consistent steps), at the original's settings."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass

VAE_FACTOR = 8  # SDXL VAE: latent side = image side / 8
ID_IMAGES = 3
ORIGINAL_HEIGHT = ORIGINAL_WIDTH = 768
ORIGINAL_STEPS = 35
ORIGINAL_BYTES = 2  # fp16


@dataclass(frozen=True)
class LayerShape:
    """One consistent layer: its index, the tokens and channels of its pre-projection hidden states."""

    index: int
    name: str
    tokens: int
    channels: int
    factor: int  # how many times coarser than the latent, per side

    def tokens_at(self, latent_h: int, latent_w: int) -> int:
        """Tokens of this layer for another latent size (SDXL halves the side at each level)."""
        return math.ceil(latent_h / self.factor) * math.ceil(latent_w / self.factor)


def sampled_tokens(tokens: int, rate: float) -> int:
    """Tokens of one image a reader sees at a layer (as ``ConsistencyContext.sample_count``)."""
    return int(round(rate * tokens))


def original_bytes_per_image(layers: list[LayerShape], latent_h: int, latent_w: int, steps: int, itemsize: int) -> int:
    """Original StoryDiffusion: all hidden states of both CFG halves, every step, every CSA layer."""
    per_step = sum(2 * layer.tokens_at(latent_h, latent_w) * layer.channels * itemsize for layer in layers)
    return steps * per_step


def ours_layer_bytes(layer: LayerShape, latent_h: int, latent_w: int, rate: float, itemsize: int) -> int:
    """Ours, one identity image at one step and layer: its sampled tokens, both CFG halves."""
    return sampled_tokens(layer.tokens_at(latent_h, latent_w), rate) * layer.channels * 2 * itemsize


def ours_bytes_per_step(layers: list[LayerShape], latent_h: int, latent_w: int, rate: float, itemsize: int) -> int:
    """Ours, one identity image at one consistent step, all CSA layers."""
    return sum(ours_layer_bytes(layer, latent_h, latent_w, rate, itemsize) for layer in layers)


def bank_table(layers: list[LayerShape], args: argparse.Namespace) -> dict[str, int]:
    """Bank bytes at the original's settings (768x768, 35 steps, fp16): original vs ours in both storages."""
    h, w = ORIGINAL_HEIGHT // VAE_FACTOR, ORIGINAL_WIDTH // VAE_FACTOR
    consistent_steps = ORIGINAL_STEPS - args.first_consistent_step
    original = original_bytes_per_image(layers, h, w, ORIGINAL_STEPS, ORIGINAL_BYTES)
    ours = consistent_steps * ours_bytes_per_step(layers, h, w, args.rate, ORIGINAL_BYTES)
    largest_layer = max(ours_layer_bytes(layer, h, w, args.rate, ORIGINAL_BYTES) for layer in layers)
    return {
        "original_per_image": original,
        "original_resident": ID_IMAGES * original,
        "ours_per_image": ours,
        "ours_stored": ID_IMAGES * ours,
        "ours_resident_cpu_storage": ID_IMAGES * largest_layer,
        "ours_resident_on_device": ID_IMAGES * ours,
    }


def layer_summary(layers: list[LayerShape], latent_h: int, latent_w: int) -> str:
    groups = Counter((layer.tokens_at(latent_h, latent_w), layer.channels) for layer in layers)
    side = lambda tokens: int(math.isqrt(tokens))  # noqa: E731
    return ", ".join(
        f"{n} at {side(t)}x{side(t)} tokens x {c} ch"
        for (t, c), n in sorted(groups.items(), key=lambda kv: kv[0][1], reverse=True)
    )
