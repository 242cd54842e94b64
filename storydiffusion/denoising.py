"""One batch of images through a per-run copy of the diffusers pipeline.

The copy shares the models (UNet, VAE, text encoders) with the loaded pipeline but owns its
scheduler and call state, so several stories can be drawn at once. Each image starts from noise of
its own seed, and the batch's ``ConsistencyContext`` reaches the attention processors through
``cross_attention_kwargs``; the step callback advances it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from .attention_context import ConsistencyContext, ImageSlot
from .bank import IdentityBank
from .controlnets import BatchControl, control_pipeline
from .models import fresh_scheduler
from .places import Places
from .reference_adapter import batch_image_embeds, has_reference_adapter
from .settings import GenerationSettings
from .subject_masks import SubjectMaps


class SerialTokenizer:
    """A tokenizer that concurrent runs share, used by one run at a time.

    A fast tokenizer keeps its padding and truncation settings on its Rust backend and sets them on
    every call, ``tokenize`` included (diffusers calls it to look for textual-inversion tokens). Two
    stories drawn at once on one pipeline once got prompts of 77 and 16 tokens: one thread's
    ``tokenize`` had reset the padding between another's settings and its encoding. So every method
    call holds the lock, not only ``__call__``; plain attributes pass through.
    """

    def __init__(self, tokenizer: Any):
        self._tokenizer, self._lock = tokenizer, threading.RLock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._tokenizer, name)
        if not callable(value):
            return value

        def serial(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return serial

    def __len__(self) -> int:
        return len(self._tokenizer)


def serialize_tokenizers(pipe: Any) -> None:
    """Make ``pipe``'s tokenizers take turns (``SerialTokenizer``), once, where the pipeline is made."""
    for name in ("tokenizer", "tokenizer_2"):
        tokenizer = getattr(pipe, name, None)
        if tokenizer is not None and not isinstance(tokenizer, SerialTokenizer):
            setattr(pipe, name, SerialTokenizer(tokenizer))


def run_copy(pipe: Any, scheduler: str | None = None, control: BatchControl | None = None) -> Any:
    """A shallow copy of ``pipe`` for one run: shares the models, owns a fresh scheduler (``scheduler`` if named);
    with ``control``, diffusers' ControlNet pipeline of the same family on the same models."""
    components = dict(pipe.components)
    components["scheduler"] = fresh_scheduler(scheduler, pipe.scheduler)
    extra = {}
    for option in ("force_zeros_for_empty_prompt", "requires_safety_checker"):  # as the loaded pipeline has them
        if option in pipe.config:
            extra[option] = pipe.config[option]
    if control is not None:
        return control_pipeline(pipe, components, control, extra)
    copy = type(pipe)(**components, **extra)
    copy.set_progress_bar_config(disable=True)
    return copy


def initial_latents(
    pipe: Any, seeds: list[int], settings: GenerationSettings, generators: list[torch.Generator] | None = None
) -> torch.Tensor:
    """One latent per image from its own CPU generator: an image's noise never depends on its batch.
    ``generators`` (one per seed, fresh) go on to give the noise an ancestral scheduler adds at each step,
    as diffusers' own ``generator=`` does."""
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, settings.height // factor, settings.width // factor)
    device, dtype = pipe._execution_device, pipe.unet.dtype
    generators = generators if generators is not None else seeded_generators(seeds)
    return torch.cat([randn_tensor(shape, generator=g, device=device, dtype=dtype) for g in generators])


def seeded_generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def guides(pipe: Any, settings: GenerationSettings) -> bool:
    """Whether the run uses classifier-free guidance (two halves per batch), decided as diffusers decides it."""
    return settings.guidance > 1.0 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None


def latent_size(pipe: Any, settings: GenerationSettings) -> tuple[int, int]:
    """(height, width) of the latent of a ``settings`` image."""
    return settings.height // pipe.vae_scale_factor, settings.width // pipe.vae_scale_factor


def encode_texts(pipe: Any, texts: list[str]) -> torch.Tensor:
    """The prompt embeddings (texts, tokens, channels) cross-attention reads for ``texts``, as the pipeline
    encodes a prompt (both text encoders for SDXL), without guidance."""
    with torch.no_grad():
        encoded = pipe.encode_prompt(
            prompt=list(texts),
            device=pipe._execution_device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
    return encoded[0].to(pipe.unet.dtype)


def consistency_context(
    pipe: Any,
    slots: list[ImageSlot],
    settings: GenerationSettings,
    bank: IdentityBank | None,
    subject: SubjectMaps | None = None,
    places: Places | None = None,
    reference_scales: list[float] | None = None,
) -> ConsistencyContext:
    """The per-batch state consistent attention reads: slots, sampling rates, skips, the bank, the
    subject masks, the characters' places."""
    factor = pipe.vae_scale_factor
    return ConsistencyContext(
        slots,
        seed=settings.seed,
        latent_tokens=(settings.height // factor) * (settings.width // factor),
        total_steps=settings.steps,
        rate_for_factor=settings.rate_for_factor,
        first_consistent_step=settings.first_consistent_step,
        skip_early=settings.random_skip_early,
        skip_late=settings.random_skip_late,
        bank=bank,
        consistency=settings.consistency,
        subject=subject,
        places=places,
        reference_scales=reference_scales,
    )


def denoise(
    pipe: Any,
    prompts: list[str],
    negative_prompts: list[str],
    seeds: list[int],
    settings: GenerationSettings,
    slots: list[ImageSlot] | None = None,
    bank: IdentityBank | None = None,
    on_step: Callable[[int], None] | None = None,
    subject: SubjectMaps | None = None,
    places: Places | None = None,
    references: tuple[list[float], list[torch.Tensor | None]] | None = None,
    control: BatchControl | None = None,
    output_type: str = "pil",
) -> list:
    """Draw one batch with ``pipe``; ``slots`` say what each image reads and writes (None: plain diffusers).
    ``subject`` records the batch's cross-attention maps (and, under subject consistency, masks the samples);
    ``places`` says which character each token of a several-character panel belongs to; ``references`` are
    each image's reference scale and photo embedding (a pipeline with an IP-Adapter always gets embeddings);
    ``control`` the ControlNet maps and per-image scales of the batch's panels that have one."""
    generators = seeded_generators(seeds)  # the latents, then each step's noise (euler-a): reproducible by seed
    latents = initial_latents(pipe, seeds, settings, generators)
    scales, photos = references if references is not None else ([0.0] * len(seeds), [None] * len(seeds))
    conditioned = any(scales)
    if slots is None and (subject is not None or places is not None or conditioned):  # self-attention stays plain
        slots = [ImageSlot(position) for position in range(len(seeds))]
    context = None
    if slots is not None:
        context = consistency_context(pipe, slots, settings, bank, subject, places, scales if conditioned else None)
    extra = {}
    if has_reference_adapter(pipe):
        extra["ip_adapter_image_embeds"] = batch_image_embeds(pipe, photos, guides(pipe, settings))
    if control is not None:
        extra.update(control.call_arguments(guides(pipe, settings), pipe._execution_device, pipe.unet.dtype))

    def on_step_end(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if context is not None:
            context.step = step + 1
        if on_step is not None:
            on_step(step + 1)
        return tensors

    output = run_copy(pipe, settings.scheduler, control)(
        prompt=list(prompts),
        negative_prompt=list(negative_prompts) if any(negative_prompts) else None,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        height=settings.height,
        width=settings.width,
        latents=latents,
        generator=generators,
        cross_attention_kwargs={"story_context": context} if context is not None else None,
        callback_on_step_end=on_step_end,
        output_type=output_type,
        **extra,
    )
    return list(output.images)
