"""Keys and values of identity-bank tokens, projected once per run instead of once per read batch.

The bank keeps pre-projection hidden states (half the memory of keys plus values). Every read batch
used to project them again with the layer's ``to_k``/``to_v``: in a profile of the SDXL UNet that was
most of a read step's extra time over a plain step. Within one run the weights do not change, so the
projections of a (image, step, layer) are the same in every batch; this cache keeps them, up to a byte
budget, and gives the very tensors a fresh projection would (the same call on the same tokens).

It lives for one run only (the pipeline makes one per run), so new weights (another LoRA scale, say)
are never read through stale projections.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

Key = tuple[int, int, int]  # (source image, step, layer)
KeysValues = tuple[torch.Tensor, torch.Tensor]
AVAILABLE_MEMORY_SHARE = 4  # the default budget: a quarter of the memory free when the run starts


class ProjectionCache:
    """Projected (keys, values) of bank tokens, kept until ``budget`` bytes are held; past it, projected per read."""

    def __init__(self, budget: int):
        self.budget = max(0, int(budget))
        self.held = 0
        self._cache: dict[Key, KeysValues] = {}
        self.hits = self.misses = 0

    def keys_values(
        self, key: Key, tokens: Callable[[], torch.Tensor], project: Callable[[torch.Tensor], KeysValues]
    ) -> KeysValues:
        """The projection of ``key``'s tokens: cached, or made from ``tokens()`` now (and cached if it fits)."""
        cached = self._cache.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        projected = project(tokens())
        size = sum(t.numel() * t.element_size() for t in projected)
        if self.held + size <= self.budget:
            self._cache[key] = projected
            self.held += size
        return projected

    def forget(self, keys: list[Key]) -> None:
        """Drop the projections of tokens the bank replaced or dropped (a window read once, then gone)."""
        for key in keys:
            projected = self._cache.pop(key, None)
            if projected is not None:
                self.held -= sum(t.numel() * t.element_size() for t in projected)

    def __len__(self) -> int:
        return len(self._cache)


def default_projection_budget(device: torch.device, storage: torch.device) -> int:
    """What a run may cache when the bank is stored where it computes: a share of the memory free now.

    With the bank in host memory and the run on a GPU, nothing: cached projections would double what
    crosses to the device each step, while projecting there is cheap; the prefetch stream does better.
    """
    device, storage = torch.device(device), torch.device(storage)
    if device.type != storage.type:
        return 0
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    elif device.type == "cpu":
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # not on Linux: stay within a modest fixed size
            free = 4 * 2**30
    else:
        return 0
    return free // AVAILABLE_MEMORY_SHARE
