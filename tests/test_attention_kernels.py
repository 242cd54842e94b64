"""The attention kernel: SDPA by default, xformers' on CUDA when installed, the same layout for both."""

from __future__ import annotations

import math
import sys
import types

import torch
from test_attention import CHANNELS, TOKENS, make_attention

from storydiffusion.attention import attend_group, install_consistent_attention
from storydiffusion.attention_kernels import pick_kernel, sdpa_kernel, xformers_kernel


def explicit_kernel(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Softmax attention written out in xformers' layout, (batch, tokens, heads, head dim)."""
    scores = torch.einsum("bqhd,bkhd->bhqk", query, key) / math.sqrt(query.shape[-1])
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), value)


def fake_xformers(monkeypatch, calls: list) -> None:
    ops = types.ModuleType("xformers.ops")

    def memory_efficient_attention(query, key, value):
        calls.append(query.shape)
        return explicit_kernel(query, key, value)

    ops.memory_efficient_attention = memory_efficient_attention
    package = types.ModuleType("xformers")
    package.ops = ops
    monkeypatch.setitem(sys.modules, "xformers", package)
    monkeypatch.setitem(sys.modules, "xformers.ops", ops)


def test_a_kernel_in_xformers_layout_gives_what_sdpa_gives():
    attn = make_attention(8)
    generator = torch.Generator().manual_seed(9)
    query, key, value = (torch.randn(2, 3, TOKENS, CHANNELS, generator=generator) for _ in range(3))
    extra = [(torch.randn(2, 8, CHANNELS, generator=generator), torch.randn(2, 8, CHANNELS, generator=generator))]
    with torch.no_grad():
        by_sdpa = attend_group(attn, query, key, value, extra, sdpa_kernel)
        by_hand = attend_group(attn, query, key, value, extra, explicit_kernel)
    torch.testing.assert_close(by_sdpa, by_hand, rtol=1e-4, atol=1e-5)


def test_xformers_is_used_on_cuda_only_and_only_when_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "xformers", None)  # not installed: the import fails
    assert xformers_kernel() is None
    assert pick_kernel(torch.device("cuda"), None) is sdpa_kernel
    calls: list = []
    fake_xformers(monkeypatch, calls)
    kernel = xformers_kernel()
    assert kernel is not None
    assert pick_kernel(torch.device("cpu"), kernel) is sdpa_kernel
    assert pick_kernel(torch.device("cuda"), kernel) is kernel
    kernel(*(torch.zeros(1, 4, 2, 8) for _ in range(3)))
    assert calls == [torch.Size([1, 4, 2, 8])]


def test_installed_processors_carry_the_xformers_kernel_when_it_is_there(monkeypatch, tiny_sdxl):
    unet = tiny_sdxl.pipe.unet
    calls: list = []
    fake_xformers(monkeypatch, calls)
    try:
        install_consistent_attention(unet, "up")
        consistent = [p for p in unet.attn_processors.values() if hasattr(p, "xformers")]
        assert consistent and all(p.xformers is not None for p in consistent)
    finally:
        monkeypatch.undo()
        install_consistent_attention(unet, "up")
    assert all(p.xformers is None for p in unet.attn_processors.values() if hasattr(p, "xformers"))
