"""The adapters a story asks for, in its memory plan: a ControlNet per kind of map (or the union one)
and the IP-Adapter with its CLIP image encoder, built on the meta device like the model itself.

Weights are counted exactly from the modules; a controlled batch adds the ControlNet residuals the
UNet forward holds (``control_residual_elements``) and its control images. Formulas: docs/memory.md.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch

from .controlnets import UNION
from .memory_model import _per_level
from .planning import Batch
from .story import Story

# The image encoders of the public IP-Adapters (configs/adapters.yaml): OpenCLIP ViT-H/14 beside the SD 1.5
# adapter, ViT-bigG/14 beside the SDXL one, as transformers' CLIPVisionModelWithProjection configs.
IMAGE_ENCODERS = MappingProxyType(
    {
        "sd15": dict(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, projection_dim=1024
        ),
        "sdxl": dict(
            hidden_size=1664, intermediate_size=8192, num_hidden_layers=48, num_attention_heads=16, projection_dim=1280
        ),
    }
)
IP_ADAPTER_TOKENS = 4  # the plain IP-Adapter projects one image embedding to four text-width tokens
FACE_EMBEDDING = 512  # InsightFace's identity embedding, which IP-Adapter FaceID projects (through twice its width)
FACEID_LORA_RANK = 128  # the public FaceID checkpoints' own LoRA on every attention layer's q, k, v and out


def story_control_kinds(story: Story, union: bool) -> list[str]:
    """The ControlNets a run of ``story`` loads: one per kind of map its panels carry, or the union one."""
    kinds = sorted({panel.control.kind for panel in story.panels if panel.control is not None})
    return [UNION] if union and kinds else kinds


def has_references(story: Story) -> bool:
    return any(character.reference is not None for character in story.characters.values())


def controlnet_skeletons(unet: Any, family: str, kinds: list[str], tiny: bool) -> dict[str, torch.nn.Module]:
    """A meta-device ControlNet per kind, shaped as the run's: the tiny ones' config, or the UNet's own
    down half (``from_unet``), which is how the published SD 1.5 and SDXL ControlNets are shaped."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    from .models.tiny_adapters import tiny_controlnet_config

    nets = {}
    with torch.device("meta"):
        for kind in kinds:
            if tiny:
                model_class, config = tiny_controlnet_config(family, kind)
                nets[f"ControlNet {kind}"] = model_class(**config)
            else:
                model_class = ControlNetUnionModel if kind == UNION else ControlNetModel
                nets[f"ControlNet {kind}"] = model_class.from_unet(unet, load_weights_from_unet=False)
    return nets


def reference_skeletons(unet: Any, family: str, tiny: bool, face: bool = False) -> dict[str, torch.nn.Module]:
    """The image encoder and the IP-Adapter's own layers (image projection, a key and a value
    projection per cross-attention layer), on the meta device. ``face`` (IP-Adapter FaceID): no image
    encoder on the device (the face model runs on the CPU), and a two-layer projection of the face embedding."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from .faces import TINY_FACE_DIM
    from .models.tiny_adapters import tiny_image_encoder_config

    config = tiny_image_encoder_config() if tiny else CLIPVisionConfig(**IMAGE_ENCODERS[family], patch_size=14)
    cross = unet.config.cross_attention_dim
    with torch.device("meta"):
        if face:
            width = TINY_FACE_DIM if tiny else FACE_EMBEDDING
            layers = [torch.nn.Linear(width, width * 2), torch.nn.Linear(width * 2, cross * IP_ADAPTER_TOKENS)]
        else:
            layers = [torch.nn.Linear(config.projection_dim, cross * IP_ADAPTER_TOKENS)]
        layers.append(torch.nn.LayerNorm(cross))
        for name, module in unet.named_modules():
            if name.endswith("attn2"):
                layers += [torch.nn.Linear(cross, module.to_q.out_features, bias=False) for _ in range(2)]
        if face:
            skeletons = {"IP-Adapter FaceID": torch.nn.ModuleList(layers)}
            return skeletons if tiny else {**skeletons, "FaceID LoRA": faceid_lora_skeleton(unet)}
        encoder = CLIPVisionModelWithProjection(config)
    return {"image encoder": encoder, "IP-Adapter": torch.nn.ModuleList(layers)}


def faceid_lora_skeleton(unet: Any, rank: int = FACEID_LORA_RANK) -> torch.nn.Module:
    """The LoRA a public FaceID checkpoint loads beside its adapter (about 51 MB for SD 1.5 in half precision): a
    down and an up projection of ``rank`` for each of q, k, v and out of every attention layer, on the meta device."""
    layers = []
    with torch.device("meta"):
        for name, module in unet.named_modules():
            if name.endswith(("attn1", "attn2")):
                for linear in (module.to_q, module.to_k, module.to_v, module.to_out[0]):
                    layers += [
                        torch.nn.Linear(linear.in_features, rank, bias=False),
                        torch.nn.Linear(rank, linear.out_features, bias=False),
                    ]
    return torch.nn.ModuleList(layers)


def control_residual_elements(unet_config: Any, latent_height: int, latent_width: int) -> int:
    """Elements of the residuals one ControlNet hands the UNet, per image and CFG half: one per skip
    connection of the down blocks (conv_in's, each layer's, each downsampler's) and the mid block's."""
    channels = list(unet_config.block_out_channels)
    levels = len(channels)
    per_block = _per_level(unet_config.layers_per_block, levels)
    tokens = [(latent_height >> i) * (latent_width >> i) for i in range(levels)]
    total = channels[0] * tokens[0]
    for i, (c, n) in enumerate(zip(channels, tokens)):
        total += per_block[i] * c * n + (c * tokens[i + 1] if i + 1 < levels else 0)
    return total + channels[-1] * tokens[-1]


def batch_is_controlled(story: Story, batch: Batch) -> bool:
    """Whether any image of the batch carries a control map (the others run without ControlNets)."""
    return any(
        planned.panel_index is not None and story.panels[planned.panel_index].control is not None
        for planned in batch.images
    )
