"""IP-Adapter Plus: the public checkpoint layout loads strictly into diffusers' projection and gives the same tokens."""

import pytest
import torch
from safetensors.torch import save_file

from storydiffusion.errors import ModelError
from storydiffusion.models import build_tiny_sd15_pipeline
from storydiffusion.motion.ip_adapter import (
    IPAdapter,
    diffusers_to_public,
    image_projection_from_state_dict,
    load_ip_adapter,
    plus_sd15_image_projection,
    public_to_diffusers,
)


class ReferencePerceiverAttention(torch.nn.Module):
    """The original IP-Adapter Plus resampler block, written out with the public module names."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.to_q = torch.nn.Linear(dim, dim_head * heads, bias=False)
        self.to_kv = torch.nn.Linear(dim, dim_head * heads * 2, bias=False)
        self.to_out = torch.nn.Linear(dim_head * heads, dim, bias=False)

    def forward(self, x, latents):
        x, latents = self.norm1(x), self.norm2(latents)
        batch, length, _ = latents.shape
        k, v = self.to_kv(torch.cat([x, latents], dim=-2)).chunk(2, dim=-1)

        def heads(t):
            return t.view(batch, -1, self.heads, self.dim_head).transpose(1, 2)

        weights = (heads(self.to_q(latents)) @ heads(k).transpose(-1, -2) / self.dim_head**0.5).softmax(-1)
        return self.to_out((weights @ heads(v)).transpose(1, 2).reshape(batch, length, -1))


class ReferenceResampler(torch.nn.Module):
    """The original IP-Adapter Plus ``image_proj``: its state dict is the public checkpoint's layout."""

    def __init__(self, dim, depth, dim_head, heads, num_queries, embedding_dim, output_dim, ff_mult):
        super().__init__()
        self.latents = torch.nn.Parameter(torch.randn(1, num_queries, dim))
        self.proj_in = torch.nn.Linear(embedding_dim, dim)
        self.proj_out = torch.nn.Linear(dim, output_dim)
        self.norm_out = torch.nn.LayerNorm(output_dim)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleList(
                [
                    ReferencePerceiverAttention(dim, dim_head, heads),
                    torch.nn.Sequential(
                        torch.nn.LayerNorm(dim),
                        torch.nn.Linear(dim, dim * ff_mult, bias=False),
                        torch.nn.GELU(),
                        torch.nn.Linear(dim * ff_mult, dim, bias=False),
                    ),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x):
        latents = self.latents.repeat(x.shape[0], 1, 1)
        x = self.proj_in(x)
        for attention, feed_forward in self.layers:
            latents = attention(x, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))


@pytest.fixture(scope="module")
def unet2d():
    return build_tiny_sd15_pipeline().unet


def public_checkpoint(unet2d, reference: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the public layout: the reference resampler's plus decoupled attention weights."""
    generator = torch.Generator().manual_seed(seed)
    state = {f"image_proj.{k}": torch.randn(v.shape, generator=generator) for k, v in reference.state_dict().items()}
    reference.load_state_dict({k.removeprefix("image_proj."): v for k, v in state.items()})
    adapter = IPAdapter.build(unet2d, plus_sd15_image_projection())
    for key, value in adapter.public_state_dict().items():
        if key.startswith("ip_adapter."):
            state[key] = torch.randn(value.shape, generator=generator) * 0.1
    return state


def test_public_weights_give_the_reference_resampler_tokens(tmp_path, unet2d):
    cross = int(unet2d.config.cross_attention_dim)
    reference = ReferenceResampler(128, 2, 64, 2, num_queries=4, embedding_dim=96, output_dim=cross, ff_mult=2)
    state = public_checkpoint(unet2d, reference)
    save_file(state, str(tmp_path / "ip.safetensors"))
    loaded = load_ip_adapter(unet2d, tmp_path / "ip.safetensors")
    tokens = torch.randn(3, 7, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(tokens), loaded.image_proj(tokens)
    assert got.shape == (3, 4, cross)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()
    assert loaded.embedding_dim == 96 and loaded.processor(next(iter(loaded.layer_ids))).num_tokens == 4


def test_key_names_round_trip_and_split_to_kv():
    reference = ReferenceResampler(64, 2, 64, 1, num_queries=2, embedding_dim=32, output_dim=16, ff_mult=4)
    public = {f"image_proj.{k}": v for k, v in reference.state_dict().items()}
    converted = public_to_diffusers(public)
    projection = image_projection_from_state_dict(public)
    projection.load_state_dict({k.removeprefix("image_proj."): v for k, v in converted.items()}, strict=True)
    to_kv = public["image_proj.layers.1.0.to_kv.weight"]
    assert torch.equal(converted["image_proj.layers.1.attn.to_k.weight"], to_kv[:64])
    assert torch.equal(converted["image_proj.layers.1.attn.to_v.weight"], to_kv[64:])
    back = diffusers_to_public(converted)
    assert back.keys() == public.keys() and all(torch.equal(back[k], public[k]) for k in public)


def test_missing_or_unknown_keys_are_refused(tmp_path, unet2d):
    cross = int(unet2d.config.cross_attention_dim)
    state = public_checkpoint(unet2d, ReferenceResampler(64, 1, 64, 1, 4, 96, cross, 2))
    missing = {k: v for k, v in state.items() if k != "image_proj.layers.0.1.3.weight"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelError, match="does not fit.*Missing"):
        load_ip_adapter(unet2d, tmp_path / "missing.safetensors")
    extra = {**state, "image_proj.layers.0.0.to_extra.weight": torch.zeros(2, 2)}
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelError, match="does not fit.*Unexpected.*to_extra"):
        load_ip_adapter(unet2d, tmp_path / "extra.safetensors")
    with pytest.raises(ModelError, match="pickle"):
        load_ip_adapter(unet2d, tmp_path / "ip-adapter-plus_sd15.bin")
    with pytest.raises(ModelError, match="Not an IP-Adapter"):
        save_file({"something.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        load_ip_adapter(unet2d, tmp_path / "other.safetensors")


def test_ip_adapter_layout_is_the_public_sd15_plus_one(tmp_path, unet2d):
    """Key names and shapes of h94/IP-Adapter models/ip-adapter-plus_sd15.safetensors, on the real SD 1.5 UNet (meta device)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    from storydiffusion.models import full_size_unet_config

    with init_empty_weights():
        full = IPAdapter.build(UNet2DConditionModel(**full_size_unet_config("sd15")), plus_sd15_image_projection())
    state = full.public_state_dict()
    assert sorted(int(k) for k in full.ip_adapter) == list(range(1, 32, 2))
    assert state["ip_adapter.1.to_k_ip.weight"].shape == (320, 768) and state["ip_adapter.31.to_v_ip.weight"].shape == (
        1280,
        768,
    )
    assert state["image_proj.latents"].shape == (1, 16, 768) and state["image_proj.proj_in.weight"].shape == (768, 1280)
    assert (
        state["image_proj.layers.3.0.to_kv.weight"].shape == (1536, 768) and "image_proj.layers.3.1.3.weight" in state
    )

    # A checkpoint in that layout loads strictly into a (tiny) SD 1.5 UNet; base adapters and pickles are refused.
    projection = IPAdapterPlusImageProjection(
        embed_dims=64, output_dims=32, hidden_dims=32, depth=2, dim_head=16, heads=2, num_queries=4, ffn_ratio=2
    )
    tiny = IPAdapter.build(unet2d, projection)
    weights = {k: torch.randn(v.shape) for k, v in tiny.public_state_dict().items()}
    save_file(weights, str(tmp_path / "ip.safetensors"))
    loaded = load_ip_adapter(unet2d, tmp_path / "ip.safetensors")
    assert loaded.public_state_dict().keys() == weights.keys()
    assert all(torch.equal(loaded.public_state_dict()[k], v) for k, v in weights.items())
    base = {
        "image_proj.proj.weight": torch.zeros(4 * 32, 64),
        **{k: v for k, v in weights.items() if k.startswith("ip_adapter.")},
    }
    save_file(base, str(tmp_path / "base.safetensors"))
    with pytest.raises(ModelError, match="IP-Adapter Plus"):
        load_ip_adapter(unet2d, tmp_path / "base.safetensors")
    with pytest.raises(ModelError, match="pickle"):
        load_ip_adapter(unet2d, ("h94/IP-Adapter", "models", "ip-adapter-plus_sd15.bin"))
