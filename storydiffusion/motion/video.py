"""Transition videos between two panels: AnimateDiff on SD 1.5, conditioned per frame on semantic tokens.

Design (see README, "Animate between panels"):

* Backbone: an SD 1.5 ``UNet2DConditionModel`` turned into diffusers' ``UNetMotionModel`` with an
  AnimateDiff ``MotionAdapter`` (temporal attention between the frames of one clip).
* Per-frame conditioning: the two panels are encoded by the CLIP image encoder, their tokens are
  reduced with ``select_tokens`` and interpolated to one token set per frame by the Semantic Motion
  Predictor (or linearly without trained weights). Each frame's tokens go through the IP-Adapter
  Plus projection and are appended to that frame's text tokens, where the decoupled cross-attention
  finds them (``ip_adapter.py``, ``ip_attention.py``).
* Endpoints: both panels are VAE-encoded; the clip starts from the latent interpolation between
  them, noised to ``strength``; at every step frame 0 and frame L-1 are replaced by the panels'
  latents noised to that step's level (inpainting-style replacement), so the temporal layers see the
  real panels throughout and the middle frames are denoised towards them. After the last step the
  endpoints are the clean panel latents, and the decoded first/last frames are replaced by the
  (resized) panels themselves, so they match exactly. SparseCtrl RGB would need another model
  download and still not pin the frames exactly.
* Size: panels of any size (SDXL's 1024 or 768) are centre-cropped and resized with Lanczos to the
  video size (default 512x512 for SD 1.5, 64x64 for the tiny model) before encoding.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..errors import GenerationCancelled, ModelError
from ..settings import DEFAULT_FRAMES
from .checks import check_denoising, check_frames, check_video_size
from .frames import fit_panel, slerp, to_images, to_pixels
from .ip_adapter import IPAdapter
from .loading import (
    DEFAULT_BASE,
    DEFAULT_ENCODER,
    DEFAULT_IP_ADAPTER,
    DEFAULT_MOTION_ADAPTER,
    pretrained_components,
    tiny_components,
)

DEFAULT_NEGATIVE = "bad quality, worst quality, blurry, deformed"
# The IP-Adapter was trained with a zeroed image as its unconditional input: after CLIP's
# normalisation, an image of CLIP's mean colour is that zero image.
_CLIP_MEAN_RGB = (123, 117, 104)


@dataclass(frozen=True)
class TransitionProgress:
    """Reported after each denoising step."""

    step: int
    steps: int


@dataclass
class TransitionResult:
    """The frames of one transition (frame 0 = start panel, frame L-1 = end panel) and how they were made."""

    frames: list[Image.Image]
    note: str
    seconds: float


def _check_parts(encoder: Any, ip_adapter: IPAdapter, predictor: Any) -> None:
    """The predictor, the encoder and the IP-Adapter must agree on the image tokens they pass along."""
    if predictor is not None:
        if int(predictor.config.embed_dim) != int(encoder.width):
            raise ModelError(
                f"the motion predictor works on embeddings of width {predictor.config.embed_dim} but the image "
                f"encoder gives {encoder.width}: train it on the same encoder ({predictor.config.encoder_model})"
            )
        _check_token_count(predictor.config, int(encoder.num_tokens))
        trained_on = getattr(predictor.config, "encoder_layer", encoder.layer)
        if trained_on != encoder.layer:
            raise ModelError(
                f"the motion predictor was trained on the encoder's {trained_on} layer tokens but the pipeline "
                f"encodes the {encoder.layer} layer: retrain it, or load the encoder with that layer"
            )
    if int(encoder.width) != ip_adapter.embedding_dim:
        raise ModelError(
            f"the IP-Adapter takes image tokens of width {ip_adapter.embedding_dim} but the encoder gives "
            f"{encoder.width}: use the encoder the IP-Adapter was trained with (OpenCLIP ViT-H-14 for the SD 1.5 Plus)"
        )


def _check_token_count(config: Any, total: int) -> None:
    """The predictor's ``tokens`` can be taken from the encoder's ``total`` tokens by its ``token_selection``."""
    from .predictor import select_tokens

    try:
        select_tokens(torch.zeros(1, total, 1), config.tokens, config.token_selection)
    except ValueError as error:
        raise ModelError(
            f"the motion predictor keeps {config.tokens} tokens ({config.token_selection}) of the image encoder's "
            f"{total}, which cannot be: {error}; retrain it with a tokens value this encoder gives"
        ) from None


def _denoising_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` a run at ``strength`` takes (the first ones are skipped, as in img2img)."""
    return min(steps, max(1, int(round(steps * strength))))


class TransitionPipeline:
    """SD 1.5 + AnimateDiff + IP-Adapter Plus + CLIP encoder (+ optional motion predictor).

    Immutable after construction; a run copies the scheduler, so one pipeline serves several
    threads.
    """

    def __init__(
        self,
        *,
        vae: torch.nn.Module,
        text_encoder: torch.nn.Module,
        tokenizer: Any,
        unet: torch.nn.Module,
        scheduler: Any,
        ip_adapter: IPAdapter,
        encoder: Any,
        predictor: Any = None,
        tokens: int = 16,
        token_selection: str = "cls+pooled",
        size: int = 512,
        steps: int = 25,
        name: str = "",
    ):
        _check_parts(encoder, ip_adapter, predictor)
        if predictor is not None:
            tokens, token_selection = int(predictor.config.tokens), str(predictor.config.token_selection)
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.unet, self.scheduler, self.ip_adapter = unet, scheduler, ip_adapter
        self.encoder, self.predictor = encoder, predictor
        self.tokens, self.token_selection = int(tokens), token_selection
        self.size, self.default_steps, self.name = int(size), int(steps), name
        self.max_frames = int(getattr(unet.config, "motion_max_seq_length", 32) or 32)
        ip_adapter.install(unet)

    @classmethod
    def tiny(cls, seed: int = 0, predictor: str | Path | Any | None = None, tokens: int = 5) -> TransitionPipeline:
        """Every part tiny, random and built offline (about 3 M parameters): tests and the offline demo."""
        return cls(**tiny_components(seed, predictor, tokens))

    @classmethod
    def from_pretrained(
        cls,
        base: str = DEFAULT_BASE,
        motion_adapter: str = DEFAULT_MOTION_ADAPTER,
        ip_adapter: str | Path | tuple[str, str, str] = DEFAULT_IP_ADAPTER,
        encoder: str = DEFAULT_ENCODER[0],
        encoder_weights: str | None = DEFAULT_ENCODER[1],
        predictor: str | Path | Any | None = None,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        ip_scale: float = 1.0,
        local_files_only: bool = False,
    ) -> TransitionPipeline:
        """Load the real models from the hub (or local folders), as a user with internet would."""
        parts = pretrained_components(
            base=base,
            motion_adapter=motion_adapter,
            ip_adapter=ip_adapter,
            encoder=encoder,
            encoder_weights=encoder_weights,
            predictor=predictor,
            device=device,
            dtype=dtype,
            ip_scale=ip_scale,
            local_files_only=local_files_only,
        )
        return cls(**parts)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def uses_predictor(self) -> bool:
        return self.predictor is not None

    # ----------------------------------------------------------------- conditioning
    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """(1, 77, D) CLIP text tokens (prompts longer than 77 tokens are cut, as in SD)."""
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        return self.text_encoder(ids)[0].to(self.dtype)

    @torch.no_grad()
    def semantic_tokens(self, start: Image.Image, end: Image.Image, frames: int) -> tuple[torch.Tensor, str]:
        """Per-frame semantic tokens (frames, N, D) from the two panels, and how they were made."""
        from .predictor import interpolate_embeddings, select_tokens

        tokens = select_tokens(self.encoder.encode([start, end]), self.tokens, self.token_selection)
        sequence, note = interpolate_embeddings(tokens[0], tokens[1], frames, self.predictor)
        return sequence.float(), note

    @torch.no_grad()
    def image_conditioning(self, semantic: torch.Tensor) -> torch.Tensor:
        """Per-frame semantic tokens -> per-frame IP-Adapter tokens (frames, Q, cross_attention_dim)."""
        return self.ip_adapter.image_proj(semantic.to(self.device, self.dtype))

    @torch.no_grad()
    def _unconditional_image_tokens(self, frames: int) -> torch.Tensor:
        from .predictor import select_tokens

        neutral = Image.new("RGB", (self.encoder.image_size, self.encoder.image_size), _CLIP_MEAN_RGB)
        tokens = select_tokens(self.encoder.encode([neutral]), self.tokens, self.token_selection)
        return self.image_conditioning(tokens.float()).expand(frames, -1, -1)

    @torch.no_grad()
    def _context(self, semantic: torch.Tensor, prompt: str, negative_prompt: str, guidance: float) -> torch.Tensor:
        """One row per frame, ``[text tokens | that frame's image tokens]``; unconditional rows first under guidance."""
        frames = semantic.shape[0]
        text = self.encode_prompt(prompt).expand(frames, -1, -1)
        conditional = torch.cat([text, self.image_conditioning(semantic)], dim=1)
        if guidance <= 1.0:
            return conditional
        negative = self.encode_prompt(negative_prompt).expand(frames, -1, -1)
        unconditional = torch.cat([negative, self._unconditional_image_tokens(frames)], dim=1)
        return torch.cat([unconditional, conditional])  # (2F, 77+Q, D)

    # ----------------------------------------------------------------- latents
    @torch.no_grad()
    def _encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(pixels).latent_dist
        return posterior.mean * self.vae.config.scaling_factor

    @torch.no_grad()
    def _decode(self, latents: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """(F, C, h, w) latents -> (F, 3, H, W) pixels in [-1, 1], a few frames at a time (bounded memory)."""
        pieces = [
            self.vae.decode(latents[i : i + chunk] / self.vae.config.scaling_factor).sample
            for i in range(0, latents.shape[0], chunk)
        ]
        return torch.cat(pieces)

    @torch.no_grad()
    def vae_round_trip(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Images encoded and decoded by the VAE: what latent pinning alone gives for the end frames."""
        return to_images(self._decode(self._encode_latents(to_pixels(list(images), self.device, self.dtype))))

    @torch.no_grad()
    def _clip_latents(self, start: Image.Image, end: Image.Image, frames: int) -> torch.Tensor:
        """(1, C, F, h, w): the panels' latents at both ends, spherical interpolation between them."""
        endpoints = self._encode_latents(to_pixels([start, end], self.device, self.dtype))
        clean = torch.stack([slerp(endpoints[0], endpoints[1], i / (frames - 1)) for i in range(frames)])
        clean[0], clean[-1] = endpoints[0], endpoints[1]
        return clean.permute(1, 0, 2, 3).unsqueeze(0)

    # ----------------------------------------------------------------- denoising
    def _check(self, frames: int, steps: int, height: int, width: int, strength: float, guidance: float) -> None:
        check_frames(frames, self.max_frames)
        check_denoising(steps, guidance, strength)
        check_video_size(height, width)

    @torch.no_grad()
    def _predict_noise(
        self,
        scheduler: Any,
        latents: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor,
        guidance: float,
        ip_scale: float | None,
    ) -> torch.Tensor:
        """The UNet's noise prediction, with classifier-free guidance above 1."""
        use_guidance = guidance > 1.0
        model_input = scheduler.scale_model_input(torch.cat([latents, latents]) if use_guidance else latents, t)
        kwargs = {"ip_scale": ip_scale} if ip_scale is not None else None
        prediction = self.unet(model_input, t, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
        if not use_guidance:
            return prediction
        uncond, cond = prediction.chunk(2)
        return uncond + guidance * (cond - uncond)

    @torch.no_grad()
    def _denoise(
        self,
        clean: torch.Tensor,
        context: torch.Tensor,
        steps: int,
        strength: float,
        guidance: float,
        seed: int,
        ip_scale: float | None,
        callback: Callable[[TransitionProgress], None] | None,
        cancel: Any,
    ) -> torch.Tensor:
        """From the noised interpolation to clean latents; frames 0 and L-1 are re-pinned to the panels every step."""
        scheduler = copy.deepcopy(self.scheduler)  # a run owns its scheduler state
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps[steps - _denoising_steps(steps, strength) :]
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32).to(self.device, self.dtype)
        latents = scheduler.add_noise(clean, noise, timesteps[:1])
        pinned = [0, clean.shape[2] - 1]
        for index, t in enumerate(timesteps):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("the animation was cancelled")
            latents[:, :, pinned] = scheduler.add_noise(clean[:, :, pinned], noise[:, :, pinned], t.reshape(1))
            prediction = self._predict_noise(scheduler, latents, t, context, guidance, ip_scale)
            latents = scheduler.step(prediction, t, latents).prev_sample
            if callback is not None:
                callback(TransitionProgress(index + 1, len(timesteps)))
        latents[:, :, pinned] = clean[:, :, pinned]
        return latents

    # ----------------------------------------------------------------- run
    @torch.no_grad()
    def __call__(
        self,
        start_image: Image.Image,
        end_image: Image.Image,
        prompt: str = "",
        negative_prompt: str = DEFAULT_NEGATIVE,
        frames: int = DEFAULT_FRAMES,
        steps: int | None = None,
        guidance: float = 7.5,
        seed: int = 0,
        height: int | None = None,
        width: int | None = None,
        strength: float = 0.9,
        ip_scale: float | None = None,
        exact_endpoints: bool = True,
        callback: Callable[[TransitionProgress], None] | None = None,
        cancel: Any = None,
    ) -> TransitionResult:
        """Frames from ``start_image`` to ``end_image``; frame 0 and L-1 are the (resized) panels.

        ``strength`` is the noise level the latent interpolation starts from (1: pure noise in the
        middle frames, more motion; lower: closer to a cross-fade). ``exact_endpoints=False``
        returns the decoded pinned latents instead of the panels themselves (VAE round trip).
        """
        began = time.perf_counter()
        steps = self.default_steps if steps is None else int(steps)
        height = self.size if height is None else int(height)
        width = self.size if width is None else int(width)
        self._check(frames, steps, height, width, strength, guidance)
        start, end = fit_panel(start_image, width, height), fit_panel(end_image, width, height)
        semantic, note = self.semantic_tokens(start, end, frames)
        context = self._context(semantic, prompt, negative_prompt, guidance)
        clean = self._clip_latents(start, end, frames)
        latents = self._denoise(clean, context, steps, strength, guidance, seed, ip_scale, callback, cancel)
        images = to_images(self._decode(latents[0].permute(1, 0, 2, 3)))
        if exact_endpoints:
            images[0], images[-1] = start, end
        notes = [note, f"{frames} frames at {width}x{height}, {_denoising_steps(steps, strength)} steps"]
        resized = sorted({f"{w}x{h}" for (w, h) in (start_image.size, end_image.size) if (w, h) != (width, height)})
        if resized:
            notes.append(f"panels resized from {', '.join(resized)} to {width}x{height}")
        return TransitionResult(frames=images, note="; ".join(notes), seconds=time.perf_counter() - began)
