"""The attention kernel consistent attention calls: PyTorch SDPA, or xformers' when installed, on CUDA.

Both take and give (batch, tokens, heads, head dim). SDPA picks its flash or memory-efficient kernel on
CUDA and its fused one on the CPU; xformers' ``memory_efficient_attention`` is the kernel the original
StoryDiffusion design names, used only where it runs (CUDA) and only when the package is there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sdpa_kernel(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """PyTorch's scaled dot-product attention, over (batch, tokens, heads, head dim)."""
    out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
    return out.transpose(1, 2)


def xformers_kernel() -> Kernel | None:
    """xformers' memory-efficient attention when the package is installed, else None."""
    try:
        from xformers.ops import memory_efficient_attention
    except ImportError:
        return None
    return lambda query, key, value: memory_efficient_attention(query, key, value)


def pick_kernel(device: torch.device, xformers: Kernel | None) -> Kernel:
    """xformers on CUDA when it is there; SDPA everywhere else."""
    return xformers if xformers is not None and device.type == "cuda" else sdpa_kernel
