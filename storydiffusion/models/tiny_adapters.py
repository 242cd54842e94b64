"""Tiny random-weight adapters for the tiny models: an IP-Adapter with its CLIP image encoder, built
offline from configs so that tests and the offline demo exercise diffusers' real loading code.
"""

from __future__ import annotations

from typing import Any

import torch

from .tiny import _build_random, _component_generator, randomize_weights

IMAGE_EMBED_DIM = 32
IMAGE_SIZE = 32
IP_TOKENS = 4


def tiny_image_encoder_config() -> Any:
    """The tiny CLIP image encoder's config: width 32 on 32x32 pictures."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=8,
        projection_dim=IMAGE_EMBED_DIM,
    )


def tiny_image_encoder(seed: int = 0) -> Any:
    """A CLIPVisionModelWithProjection of the tiny config, seeded."""
    from transformers import CLIPVisionModelWithProjection

    return _build_random(lambda: CLIPVisionModelWithProjection(tiny_image_encoder_config()), seed, 8)


def tiny_ip_adapter_state(unet: Any, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """An IP-Adapter state dict in the public layout ``load_ip_adapter`` reads: the image projection
    (``proj``, ``norm``) and, per cross-attention layer in the UNet's order, ``to_k_ip``/``to_v_ip``."""
    generator = _component_generator(seed, 9)
    cross = unet.config.cross_attention_dim
    projection = torch.nn.Linear(IMAGE_EMBED_DIM, cross * IP_TOKENS)
    randomize_weights(projection, generator)
    image_proj = {"proj.weight": projection.weight.detach().clone(), "proj.bias": projection.bias.detach().clone()}
    return {"image_proj": {**image_proj, **_norm(cross)}, "ip_adapter": _ip_layers(unet, generator)}


def tiny_faceid_state(unet: Any, seed: int = 0, face_width: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """An IP-Adapter FaceID state dict in the public layout ``load_ip_adapter`` reads: the face embedding's
    projection (``proj.0``, ``proj.2``: a two-layer MLP, then ``norm``) and the same per-layer ``to_k_ip``/``to_v_ip``.
    ``face_width``: the face model's embedding length (default: the tiny stand-in's)."""
    from ..faces import TINY_FACE_DIM

    generator = _component_generator(seed, 14)
    cross, width = unet.config.cross_attention_dim, face_width or TINY_FACE_DIM
    first, second = torch.nn.Linear(width, width * 2), torch.nn.Linear(width * 2, cross * IP_TOKENS)
    randomize_weights(first, generator)
    randomize_weights(second, generator)
    image_proj = {
        f"proj.{number}.{part}": getattr(layer, part).detach().clone()
        for number, layer in ((0, first), (2, second))
        for part in ("weight", "bias")
    }
    return {"image_proj": {**image_proj, **_norm(cross)}, "ip_adapter": _ip_layers(unet, generator)}


def _norm(width: int) -> dict[str, torch.Tensor]:
    norm = torch.nn.LayerNorm(width)
    return {"norm.weight": norm.weight.detach().clone(), "norm.bias": norm.bias.detach().clone()}


def _ip_layers(unet: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``to_k_ip``/``to_v_ip`` per cross-attention layer, numbered as the public checkpoints are."""
    cross = unet.config.cross_attention_dim
    ip_adapter = {}
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        width = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
        for part in ("to_k_ip", "to_v_ip"):
            layer = torch.nn.Linear(cross, width, bias=False)
            randomize_weights(layer, generator)
            ip_adapter[f"{key}.{part}.weight"] = layer.weight.detach().clone()
        key += 2
    return ip_adapter


TINY_CONTROL_SEEDS = {"openpose": 10, "canny": 11, "depth": 12, "union": 13}


def tiny_controlnet_config(family: str, kind: str) -> tuple[type, dict[str, Any]]:
    """The class and config of a ControlNet shaped like the tiny UNet of ``family`` (its conditioning
    image brought to the latent size by the tiny VAE's factor 8, as in the real models)."""
    import inspect

    from diffusers import ControlNetModel, ControlNetUnionModel

    from .architectures import tiny_unet_config

    model_class = ControlNetUnionModel if kind == "union" else ControlNetModel
    accepted = inspect.signature(model_class.__init__).parameters
    config = {key: value for key, value in tiny_unet_config(family).items() if key in accepted}
    config["conditioning_embedding_out_channels"] = (16, 16, 32, 32)  # three stride-2 steps: the VAE's factor 8
    if kind == "union":
        width = config["block_out_channels"][0]
        config.update(num_trans_channel=width, num_trans_head=2, num_proj_channel=width)
    return model_class, config


def tiny_controlnet(family: str, kind: str, seed: int = 0) -> Any:
    """A tiny ControlNet of ``kind`` (``tiny_controlnet_config``), seeded per kind of map."""
    model_class, config = tiny_controlnet_config(family, kind)
    return _build_random(lambda: model_class(**config), seed, TINY_CONTROL_SEEDS[kind])
