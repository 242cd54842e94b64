"""Finding, building and loading the diffusion models a story is drawn with.

Three kinds of models are supported:

* named entries of ``configs/models.yaml`` (hub checkpoints with their default settings): ``registry``,
* local diffusers folders, single ``.safetensors`` checkpoints and hub ids: ``loading``,
* tiny random-weight SDXL / SD 1.5 pipelines built offline, so that tests and demos run on a CPU
  without downloading anything: ``tiny`` (their configs, and the real ones, in ``architectures``).

``devices`` picks the device and dtype, ``low_vram`` is the low-memory preset (``--low-vram``),
``schedulers`` makes schedulers by short name.

Imports are lazy (PEP 562): the registry and the name checks are read by the command line before it
decides whether torch and diffusers are needed at all, so ``from storydiffusion.models.registry import
...`` must not pay for them.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - the names below, for type checkers and editors
    from .architectures import full_size_unet_config, tiny_unet_config
    from .devices import dtype_kwargs, place_pipeline, select_device, select_dtype
    from .loading import (
        align_cpu_weights,
        detect_checkpoint_family,
        load_diffusers_pipeline,
        load_lora,
        pipeline_family,
    )
    from .low_vram import FP16_SAFE_SDXL_VAE, LOW_VRAM, LowVramPreset, needs_fp16_safe_vae, prepare_low_vram_vae
    from .registry import FAMILIES, ModelSpec, default_model_name, family_spec, load_model_registry
    from .schedulers import SCHEDULERS, fresh_scheduler, make_scheduler
    from .tiny import build_tiny_pipeline, build_tiny_sd15_pipeline, build_tiny_sdxl_pipeline, randomize_weights

# Each public name and the submodule that defines it.
_SUBMODULE_OF = MappingProxyType(
    {
        "FAMILIES": "registry",
        "FP16_SAFE_SDXL_VAE": "low_vram",
        "LOW_VRAM": "low_vram",
        "LowVramPreset": "low_vram",
        "ModelSpec": "registry",
        "SCHEDULERS": "schedulers",
        "align_cpu_weights": "loading",
        "build_tiny_pipeline": "tiny",
        "build_tiny_sd15_pipeline": "tiny",
        "build_tiny_sdxl_pipeline": "tiny",
        "default_model_name": "registry",
        "detect_checkpoint_family": "loading",
        "dtype_kwargs": "devices",
        "family_spec": "registry",
        "fresh_scheduler": "schedulers",
        "full_size_unet_config": "architectures",
        "load_diffusers_pipeline": "loading",
        "load_lora": "loading",
        "load_model_registry": "registry",
        "make_scheduler": "schedulers",
        "needs_fp16_safe_vae": "low_vram",
        "pipeline_family": "loading",
        "place_pipeline": "devices",
        "prepare_low_vram_vae": "low_vram",
        "randomize_weights": "tiny",
        "select_device": "devices",
        "select_dtype": "devices",
        "tiny_unet_config": "architectures",
    }
)

__all__ = [
    "FAMILIES",
    "FP16_SAFE_SDXL_VAE",
    "LOW_VRAM",
    "SCHEDULERS",
    "LowVramPreset",
    "ModelSpec",
    "align_cpu_weights",
    "build_tiny_pipeline",
    "build_tiny_sd15_pipeline",
    "build_tiny_sdxl_pipeline",
    "default_model_name",
    "detect_checkpoint_family",
    "dtype_kwargs",
    "family_spec",
    "fresh_scheduler",
    "full_size_unet_config",
    "load_diffusers_pipeline",
    "load_lora",
    "load_model_registry",
    "make_scheduler",
    "needs_fp16_safe_vae",
    "pipeline_family",
    "place_pipeline",
    "prepare_low_vram_vae",
    "randomize_weights",
    "select_device",
    "select_dtype",
    "tiny_unet_config",
]


def __getattr__(name: str) -> Any:
    """Import a public name's submodule on first use."""
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{submodule}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
