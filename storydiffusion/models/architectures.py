"""Model configurations to build architectures without downloading weights.

The real SDXL base 1.0 and SD 1.5 UNets come from their public configs (``configs/unet/``), so that
benchmarks and tests can measure the real attention layers on the ``meta`` device. The tiny ones
are the test models: small enough for a CPU, with self-attention in the up blocks like the real ones.
"""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import ModelError
from ..resources import data_path
from .registry import check_family

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from transformers import CLIPTextConfig

FULL_SIZE_UNET_FILES = MappingProxyType({"sdxl": "sdxl-base.json", "sd15": "sd15.json"})

# The noise schedule shared by SDXL and SD 1.5, for the tiny models' schedulers.
NOISE_SCHEDULE = MappingProxyType(
    {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
    }
)


def full_size_unet_config(family: str) -> dict[str, Any]:
    """The public UNet2DConditionModel config of SDXL base 1.0 or SD 1.5, to build real architectures without weights.

    Benchmarks and tests build them on the ``meta`` device (or with random bf16 weights) to
    measure the real number and size of attention layers without downloading a checkpoint.
    """
    family = check_family(family, "full_size_unet_config")
    path = data_path("configs", "unet", FULL_SIZE_UNET_FILES[family])
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read the UNet config {path}: {exc}") from exc
    return {key: value for key, value in config.items() if not key.startswith("_")}


def tiny_unet_config(family: str) -> dict[str, Any]:
    """UNet2DConditionModel kwargs of the tiny test models (self-attention in up_blocks for both families)."""
    family = check_family(family, "tiny_unet_config")
    common = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        norm_num_groups=8,
    )
    if family == "sdxl":
        return dict(
            common,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            use_linear_projection=True,
            cross_attention_dim=64,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + pooled text 32
        )
    return dict(
        common,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=32,
    )


def tiny_vae_config(scaling_factor: float) -> dict[str, Any]:
    """AutoencoderKL kwargs of the tiny test models; ``scaling_factor`` is the family's (SDXL 0.13025, SD 1.5 0.18215)."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
        force_upcast=False,
    )


def tiny_text_config() -> CLIPTextConfig:
    """The CLIP text encoder config of the tiny test models, with the real vocabulary and special tokens."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=32,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )
