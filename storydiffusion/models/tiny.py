"""Tiny random-weight SDXL and SD 1.5 pipelines, built offline so tests and demos run on a CPU.

Every weight comes from a generator seeded by (seed, component), never from the global RNG, so the
same seed always gives the same pipeline and building one leaves the caller's RNG state alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from ..tokenizer import build_clip_tokenizer
from .architectures import NOISE_SCHEDULE, tiny_text_config, tiny_unet_config, tiny_vae_config
from .registry import check_family

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

SDXL_VAE_SCALING = 0.13025
SD15_VAE_SCALING = 0.18215


@torch.no_grad()
def randomize_weights(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Overwrite every parameter from ``generator`` so that weights depend on the seed only, never on the global RNG.

    Matrices and convolutions: normal(0, 1/sqrt(fan_in)); embeddings: normal(0, 0.02);
    norm weights (and other 1-d scales): 1; biases: 0.
    """
    for submodule in module.modules():
        for name, param in submodule.named_parameters(recurse=False):
            if isinstance(submodule, torch.nn.Embedding) and name == "weight":
                values = torch.randn(param.shape, generator=generator, dtype=torch.float32) * 0.02
            elif name.endswith("bias"):
                values = torch.zeros(param.shape)
            elif param.dim() >= 2:
                fan_in = param[0].numel()
                values = torch.randn(param.shape, generator=generator, dtype=torch.float32) / math.sqrt(fan_in)
            else:
                values = torch.ones(param.shape)
            param.copy_(values.to(param.dtype))
    return module


def _component_generator(seed: int, component: int) -> torch.Generator:
    # One independent stream per pipeline component, so the components do not depend on each other.
    return torch.Generator(device="cpu").manual_seed(int(seed) * 16 + component)


def _build_random(factory: Callable[[], torch.nn.Module], seed: int, component: int) -> torch.nn.Module:
    # Construction draws default initialisations from the global RNG: fork it so the caller's RNG
    # state is unchanged, then overwrite every value from the explicit generator.
    with torch.random.fork_rng(devices=[]):
        module = factory()
    randomize_weights(module, _component_generator(seed, component))
    if any(p.dtype != torch.float32 for p in module.parameters()):
        module = module.to(torch.float32)
    return module.eval().requires_grad_(False)


def build_tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """A ~5 M parameter SDXL-architecture pipeline with seeded random weights, for offline tests and demos."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = _build_random(lambda: UNet2DConditionModel(**tiny_unet_config("sdxl")), seed, 0)
    vae = _build_random(lambda: AutoencoderKL(**tiny_vae_config(SDXL_VAE_SCALING)), seed, 1)
    text_encoder = _build_random(lambda: CLIPTextModel(tiny_text_config()), seed, 2)
    text_encoder_2 = _build_random(lambda: CLIPTextModelWithProjection(tiny_text_config()), seed, 3)
    scheduler = EulerDiscreteScheduler(
        **NOISE_SCHEDULE,
        prediction_type="epsilon",
        interpolation_type="linear",
        timestep_spacing="leading",
        use_karras_sigmas=False,
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=build_clip_tokenizer(),
        tokenizer_2=build_clip_tokenizer(pad_token="!"),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def build_tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A tiny SD 1.5-architecture pipeline with seeded random weights (no safety checker), for offline tests."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    unet = _build_random(lambda: UNet2DConditionModel(**tiny_unet_config("sd15")), seed, 0)
    vae = _build_random(lambda: AutoencoderKL(**tiny_vae_config(SD15_VAE_SCALING)), seed, 1)
    text_encoder = _build_random(lambda: CLIPTextModel(tiny_text_config()), seed, 2)
    scheduler = PNDMScheduler(**NOISE_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_pipeline(family: str, torch_dtype: torch.dtype | None = None):
    """The tiny pipeline of ``family`` (seed 0), with its weights in ``torch_dtype`` when one is given."""
    family = check_family(family, "build_tiny_pipeline")
    pipe = build_tiny_sdxl_pipeline() if family == "sdxl" else build_tiny_sd15_pipeline()
    if torch_dtype is not None:
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                # Plain nn.Module.to: diffusers' own .to warns about float32 modules tiny models lack.
                torch.nn.Module.to(component, dtype=torch_dtype)
    return pipe
