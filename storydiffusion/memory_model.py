"""What a model is made of, read from its configs alone, and the memory formulas the planner sums.

A model is built on the ``meta`` device (shapes, no weights), so its parameters can be counted and
``planning`` / ``bank_layout`` can be asked about it without a download. The activation formulas are
written out, with what they leave out, in ``docs/memory.md``; ``LiveTensorMeter`` measures the same
quantities on a real run, which is how the tests hold the formulas to account.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .errors import ModelError
from .models import ModelSpec, full_size_unet_config, load_model_registry, tiny_unet_config
from .models.architectures import NOISE_SCHEDULE, tiny_text_config, tiny_vae_config

# The public configs of the Stable Diffusion VAE and CLIP text encoders (the same in every SD 1.5 and
# SDXL checkpoint), used when a model's own configs are not on this machine.
FULL_SIZE_VAE = MappingProxyType(
    dict(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
    )
)
FULL_SIZE_VAE_SAMPLE = MappingProxyType({"sdxl": 1024, "sd15": 512})
CLIP_L = MappingProxyType(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12))
OPENCLIP_BIGG = MappingProxyType(
    dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280)
)

# Per image and CFG half, in units of (channels x tokens) of the level: a GEGLU feed-forward holds its
# 8c-wide projection and two 4c halves (16), plus about 6 hidden-state copies (residuals, norms), measured.
TRANSFORMER_WORKING_SET = 22
# A resnet holds its input, the group norm and the SiLU of it: three copies of its input channels.
RESNET_WORKING_SET = 3
# A VAE decoder resnet as it scales its output holds its input and four tensors of its own width (its
# output, the shortcut, their sum and the scaled sum): 256 + 4·128 per pixel at SDXL's top level, measured.
VAE_RESNET_OUTPUTS = 4


@dataclass
class ModelConfigs:
    """The configs a memory plan needs: no weights."""

    family: str
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoders: list[tuple[str, Any]]  # (transformers class name, CLIPTextConfig)
    source: str  # where the configs came from, for the plan's first line


@dataclass
class Skeleton:
    """A pipeline of meta-device models: what ``StoryPipeline`` and ``bank_layout`` read, without weights."""

    unet: Any
    vae: Any
    text_encoders: list[Any]
    scheduler: Any
    vae_scale_factor: int
    family: str

    def set_progress_bar_config(self, **_: Any) -> None:
        """``StoryPipeline`` sets it; a skeleton never runs."""


def model_configs(name: str | None) -> tuple[ModelConfigs, ModelSpec]:
    """The configs of a registry model, a local diffusers folder or a hub model in the local cache."""
    from .models.registry import default_model_name, family_spec

    registry = load_model_registry()
    name = name or default_model_name(registry)
    spec = registry.get(name)
    if spec is not None and spec.source == "tiny":
        return _tiny_configs(spec.family), spec
    source = spec.source if spec is not None else name
    folder = _config_folder(source)
    if folder is not None:
        configs = _folder_configs(folder, source)
        return configs, spec or family_spec(name, source, configs.family)
    if spec is None:
        raise ModelError(
            f"cannot plan for {name!r}: its configs are not on this machine; name a model of configs/models.yaml, "
            "a local diffusers folder, or a hub model downloaded once (its configs then stay in the cache)"
        )
    return _family_configs(spec.family, f"the public {spec.family} configs"), spec


def _tiny_configs(family: str) -> ModelConfigs:
    scaling = 0.13025 if family == "sdxl" else 0.18215
    classes = ["CLIPTextModel", "CLIPTextModelWithProjection"] if family == "sdxl" else ["CLIPTextModel"]
    texts = [(cls, tiny_text_config()) for cls in classes]
    return ModelConfigs(family, tiny_unet_config(family), tiny_vae_config(scaling), texts, "the tiny model's configs")


def _family_configs(family: str, source: str) -> ModelConfigs:
    from transformers import CLIPTextConfig

    vae = dict(FULL_SIZE_VAE, sample_size=FULL_SIZE_VAE_SAMPLE[family], force_upcast=True)
    texts = [("CLIPTextModel", CLIPTextConfig(**CLIP_L, projection_dim=768))]
    if family == "sdxl":
        texts.append(("CLIPTextModelWithProjection", CLIPTextConfig(**OPENCLIP_BIGG, hidden_act="gelu")))
    return ModelConfigs(family, full_size_unet_config(family), vae, texts, source)


def _config_folder(source: str) -> Path | None:
    """A local diffusers folder, or the cached snapshot of a hub repository holding its configs."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if "/" not in source or path.suffix:
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(source, "unet/config.json")
    except ValueError:  # not a valid repository id
        return None
    return Path(found).parent.parent if isinstance(found, str) else None


def _read_config(folder: Path, part: str) -> dict[str, Any] | None:
    try:
        config = json.loads((folder / part / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {key: value for key, value in config.items() if not key.startswith("_")}


def _folder_configs(folder: Path, source: str) -> ModelConfigs:
    from transformers import CLIPTextConfig

    unet, vae = _read_config(folder, "unet"), _read_config(folder, "vae")
    if unet is None or vae is None:
        raise ModelError(f"cannot plan for {source}: it has no readable unet/config.json and vae/config.json")
    family = "sdxl" if unet.get("addition_embed_type") == "text_time" else "sd15"
    texts = []
    for part, cls in (("text_encoder", "CLIPTextModel"), ("text_encoder_2", "CLIPTextModelWithProjection")):
        config = _read_config(folder, part)
        if config is not None:
            texts.append((cls, CLIPTextConfig(**config)))
    return ModelConfigs(family, unet, vae, texts, f"the configs in {source}")


def build_skeleton(configs: ModelConfigs) -> Skeleton:
    """The model on the meta device: real module shapes, no memory, built in a second even for SDXL."""
    import transformers
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**configs.unet)
        vae = AutoencoderKL(**configs.vae)
        texts = [getattr(transformers, cls)(config) for cls, config in configs.text_encoders]
    if configs.family == "sdxl":
        scheduler = EulerDiscreteScheduler(**NOISE_SCHEDULE, timestep_spacing="leading")
    else:
        scheduler = PNDMScheduler(**NOISE_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return Skeleton(unet, vae, texts, scheduler, factor, configs.family)


def module_bytes(module: torch.nn.Module, dtype: torch.dtype) -> int:
    """Bytes of a module's parameters and buffers once cast to ``dtype`` (integer buffers keep their own)."""
    size = torch.empty((), dtype=dtype, device="meta").element_size()
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * (size if t.is_floating_point() else t.element_size()) for t in tensors)


def _per_level(value: Any, levels: int) -> list[int]:
    return list(value) if isinstance(value, (list, tuple)) else [int(value)] * levels


def unet_activation_elements(unet_config: Any, latent_height: int, latent_width: int) -> int:
    """Peak live activation elements of one UNet forward, per image and CFG half (see docs/memory.md).

    At the first up-block layer of level i, alive are: the skip tensors of the levels above, the level's
    own resnet skips but the one it took, the hidden state coming up from below, and that layer's working set.
    """
    channels = list(unet_config.block_out_channels)
    levels = len(channels)
    per_block = _per_level(unet_config.layers_per_block, levels)
    tokens = [(latent_height >> i) * (latent_width >> i) for i in range(levels)]
    attention = [
        "CrossAttn" in down or "CrossAttn" in up
        for down, up in zip(unet_config.down_block_types, reversed(unet_config.up_block_types))
    ]
    attention[-1] = attention[-1] or "CrossAttn" in str(unet_config.mid_block_type)
    skips_above = channels[0] * tokens[0]  # conv_in's output
    peak = 0
    for i, (c, n) in enumerate(zip(channels, tokens)):
        below = channels[min(i + 1, levels - 1)]
        alive = skips_above + (per_block[i] - 1) * c * n + below * n  # its first layer has popped one skip
        work = RESNET_WORKING_SET * (below + c) * n
        if attention[i]:
            work = max(work, TRANSFORMER_WORKING_SET * c * n)
        peak = max(peak, alive + work)
        skips_above += per_block[i] * c * n + (c * tokens[i + 1] if i + 1 < levels else 0)
    return peak


def vae_decode_elements(vae_config: Any, height: int, width: int) -> int:
    """Peak live elements of decoding one image: the first resnet of each decoder level holds its input
    (the upsampled output of the level below, ``c_in`` channels) and, as it adds its residual and scales
    the sum, four tensors of its own width ``c_out``, all at that level's size; the image is kept too."""
    channels = list(reversed(vae_config.block_out_channels))
    levels = len(channels)
    peak = 0
    for k in range(levels):
        pixels = (height >> (levels - 1 - k)) * (width >> (levels - 1 - k))
        peak = max(peak, (channels[max(k - 1, 0)] + VAE_RESNET_OUTPUTS * channels[k]) * pixels)
    return peak + 3 * height * width


def tiled_decode_elements(vae_config: Any, height: int, width: int) -> int:
    """Decoding with diffusers' tiling: one tile at a time (the VAE's ``sample_size``) plus the decoded
    tiles kept to blend (about twice the image); no tiling below one tile, as diffusers does."""
    tile = vae_config.sample_size[0] if isinstance(vae_config.sample_size, (list, tuple)) else vae_config.sample_size
    if height <= tile and width <= tile:
        return vae_decode_elements(vae_config, height, width)
    return vae_decode_elements(vae_config, min(height, tile), min(width, tile)) + 2 * 3 * height * width


class LiveTensorMeter(TorchDispatchMode):
    """Peak bytes of tensors created while it is active and still alive, counted per storage.

    Torch's CPU allocator keeps no statistics, and RSS moves with the allocator's caching; this counts
    what the program holds, which is what the formulas predict. Tensors that existed before (weights)
    and views of them are not counted. ``mark()`` starts a region whose own peak ``region_peak`` gives.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.region_start = 0
        self.region_peak = 0
        self._sizes: dict[int, int] = {}

    def mark(self) -> None:
        self.region_start = self.region_peak = self.live

    @property
    def region(self) -> int:
        """Peak bytes above what was alive at the last ``mark``."""
        return self.region_peak - self.region_start

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        output = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(output):
            if isinstance(tensor, torch.Tensor):
                self._count(tensor.untyped_storage(), inputs)
        return output

    def _count(self, storage: torch.UntypedStorage, inputs: set[int]) -> None:
        key = storage._cdata
        if key in self._sizes or key in inputs:
            return
        self._sizes[key] = storage.nbytes()
        self.live += storage.nbytes()
        self.peak = max(self.peak, self.live)
        self.region_peak = max(self.region_peak, self.live)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)
