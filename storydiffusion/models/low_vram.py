"""The low-memory preset (``--low-vram``): every option that lets a long story run on a small GPU, at once.

Each option trades speed for memory and none changes what is drawn beyond float rounding: model CPU
offload (diffusers moves each model to the GPU only while it runs; CUDA only), VAE slicing and tiling
(one image, then one tile, decoded at a time), the identity bank in host memory, and, for SDXL in
float16, a VAE that does not overflow in float16, so the decode need not be upcast to float32.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .devices import dtype_kwargs
from .registry import ModelSpec

# The public SDXL VAE retrained to stay finite in float16 (same latents, same pictures within rounding).
FP16_SAFE_SDXL_VAE = "madebyollin/sdxl-vae-fp16-fix"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LowVramPreset:
    """What ``--low-vram`` turns on: read by the loader, the CLI's checks and the memory planner."""

    cpu_offload: bool = True
    vae_slicing: bool = True
    vae_tiling: bool = True
    fp16_safe_vae: str = FP16_SAFE_SDXL_VAE
    bank_tier: str = "host"

    def placement(self, *, cpu_offload: bool = False, vae_slicing: bool = False, vae_tiling: bool = False) -> dict:
        """``place_pipeline``'s options: the preset's, plus any the caller turned on itself."""
        return {
            "cpu_offload": self.cpu_offload or cpu_offload,
            "vae_slicing": self.vae_slicing or vae_slicing,
            "vae_tiling": self.vae_tiling or vae_tiling,
        }

    def plan_options(self) -> dict:
        """``MemoryPlanner.requested``'s options for the same run."""
        vae = "tiling" if self.vae_tiling else "slicing" if self.vae_slicing else "plain"
        return {"cpu_offload": self.cpu_offload, "vae": vae, "bank_tier": self.bank_tier}

    def describe(self) -> str:
        """One line for help texts and the studio's notes."""
        return (
            "model CPU offload (CUDA), VAE slicing and tiling, the identity bank in host memory, "
            f"and for SDXL in float16 the fp16-safe VAE {self.fp16_safe_vae}"
        )


LOW_VRAM = LowVramPreset()


def needs_fp16_safe_vae(pipe: Any, spec: ModelSpec, torch_dtype: torch.dtype | None) -> bool:
    """Whether the model's VAE would be upcast to float32 to decode: SDXL in float16 with ``force_upcast``.

    Tiny models and SD 1.5 never need the swap; a float32 or bfloat16 run never overflows.
    """
    if spec.source == "tiny" or spec.family != "sdxl" or torch_dtype != torch.float16:
        return False
    return bool(getattr(pipe.vae.config, "force_upcast", False))


def load_fp16_safe_vae(repo: str, *, local_files_only: bool = False) -> Any:
    """The fp16-safe VAE from the hub or its cache, as any diffusers user loads it (HF_HUB_OFFLINE holds)."""
    from diffusers import AutoencoderKL

    with warnings.catch_warnings():  # diffusers passes the hub an argument it deprecated: noise, not news
        warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*", category=UserWarning)
        return AutoencoderKL.from_pretrained(repo, local_files_only=local_files_only, **dtype_kwargs(torch.float16))


def swap_in_fp16_safe_vae(
    pipe: Any,
    repo: str = FP16_SAFE_SDXL_VAE,
    *,
    local_files_only: bool = False,
) -> str | None:
    """Replace ``pipe.vae`` by the fp16-safe VAE; when it cannot be loaded keep the model's own VAE and
    return a one-line warning: a missing download must not stop a run that works without it."""
    try:
        vae = load_fp16_safe_vae(repo, local_files_only=local_files_only)
    except MemoryError:
        raise
    except Exception as error:  # the hub and diffusers raise many types for a missing or broken download
        detail = " ".join(str(error).split())[:200]
        return (
            f"--low-vram: could not load the fp16-safe SDXL VAE {repo} ({type(error).__name__}: {detail}); "
            "keeping the model's own VAE, decoded in float32 (more memory). "
            "Download it once with internet to use it offline."
        )
    vae.register_to_config(force_upcast=False)
    pipe.vae = vae
    return None


def prepare_low_vram_vae(
    pipe: Any, spec: ModelSpec, torch_dtype: torch.dtype | None, *, local_files_only: bool = False
) -> list[str]:
    """The preset's VAE swap, where the model needs it; its warnings are logged and returned."""
    if not needs_fp16_safe_vae(pipe, spec, torch_dtype):
        return []
    warning = swap_in_fp16_safe_vae(pipe, LOW_VRAM.fp16_safe_vae, local_files_only=local_files_only)
    if warning is None:
        return []
    logger.warning(warning)
    return [warning]
