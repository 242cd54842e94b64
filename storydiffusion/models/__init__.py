"""Finding, building and loading the diffusion models a story is drawn with.

Three kinds of models are supported:

* named entries of ``configs/models.yaml`` (hub checkpoints with their default settings): ``registry``,
* local diffusers folders, single ``.safetensors`` checkpoints and hub ids: ``loading``,
* tiny random-weight SDXL / SD 1.5 pipelines built offline, so that tests and demos run on a CPU
  without downloading anything: ``tiny`` (their configs, and the real ones, in ``architectures``).

``devices`` picks the device and dtype, ``low_vram`` is the low-memory preset (``--low-vram``),
``schedulers`` makes schedulers by short name.
"""

from .architectures import full_size_unet_config, tiny_unet_config
from .devices import dtype_kwargs, place_pipeline, select_device, select_dtype
from .loading import align_cpu_weights, detect_checkpoint_family, load_diffusers_pipeline, load_lora, pipeline_family
from .low_vram import FP16_SAFE_SDXL_VAE, LOW_VRAM, LowVramPreset, needs_fp16_safe_vae, prepare_low_vram_vae
from .registry import FAMILIES, ModelSpec, default_model_name, family_spec, load_model_registry
from .schedulers import SCHEDULERS, fresh_scheduler, make_scheduler
from .tiny import build_tiny_pipeline, build_tiny_sd15_pipeline, build_tiny_sdxl_pipeline, randomize_weights

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
