"""Decoupled cross-attention: text attention plus each row's own image tokens, scaled per run."""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from storydiffusion.motion.checks import AnimationError
from storydiffusion.motion.ip_attention import DecoupledCrossAttnProcessor

TEXT, IMAGE, WIDTH, CROSS = 6, 3, 32, 24


@pytest.fixture()
def layer():
    torch.manual_seed(0)
    attn = Attention(query_dim=WIDTH, cross_attention_dim=CROSS, heads=2, dim_head=16).eval()
    processor = DecoupledCrossAttnProcessor(WIDTH, CROSS, num_tokens=IMAGE)
    torch.nn.init.normal_(processor.to_k_ip.weight)
    torch.nn.init.normal_(processor.to_v_ip.weight)
    return attn, processor


def inputs(rows: int = 3):
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(rows, 10, WIDTH, generator=generator)
    context = torch.randn(rows, TEXT + IMAGE, CROSS, generator=generator)
    return hidden, context


@torch.no_grad()
def test_without_image_scale_it_is_plain_text_attention(layer):
    attn, processor = layer
    hidden, context = inputs()
    plain = AttnProcessor2_0()(attn, hidden, context[:, :TEXT])
    assert torch.allclose(processor(attn, hidden, context, ip_scale=0.0), plain, atol=1e-6)
    assert not torch.allclose(processor(attn, hidden, context), plain, atol=1e-3)


@torch.no_grad()
def test_each_row_reads_only_its_own_image_tokens(layer):
    attn, processor = layer
    hidden, context = inputs()
    before = processor(attn, hidden, context)
    changed = context.clone()
    changed[1, TEXT:] += 1.0
    after = processor(attn, hidden, changed)
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.allclose(before[1], after[1], atol=1e-3)
    half = processor(attn, hidden, context, ip_scale=0.5)
    text_only = processor(attn, hidden, context, ip_scale=0.0)
    assert torch.allclose(half - text_only, (before - text_only) * 0.5, atol=1e-5)


def test_rows_without_text_tokens_are_refused(layer):
    attn, processor = layer
    hidden, context = inputs()
    with pytest.raises(AnimationError, match="text tokens followed by image tokens"):
        processor(attn, hidden, context[:, -IMAGE:])
