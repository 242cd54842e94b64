"""Transition videos between two panels: AnimateDiff on SD 1.5, conditioned per frame on semantic tokens.

Design (see README, "Animate between panels"):

* Backbone: an SD 1.5 ``UNet2DConditionModel`` turned into diffusers' ``UNetMotionModel`` with an
  AnimateDiff ``MotionAdapter`` (temporal attention between the frames of one clip).
* Per-frame conditioning: the two panels are encoded by the CLIP image encoder, their tokens are
  reduced with ``select_tokens`` and interpolated to one token set per frame by the Semantic Motion
  Predictor (or linearly without trained weights). Each frame's tokens go through the IP-Adapter
  *Plus* resampler (it takes a token sequence of ViT-H width 1280, which is what the predictor
  outputs; the base IP-Adapter takes one pooled embedding and could not carry per-token motion) and
  are appended to that frame's text tokens. A decoupled cross-attention processor splits them
  again: ``Attn(q, K_text, V_text) + scale * Attn(q, K'_img, V'_img)``. AnimateDiff flattens
  (batch, frames) into the batch of the spatial layers, so one batch row is one frame and every
  frame reads its own image tokens. Module names equal the public IP-Adapter state dict keys
  (``image_proj.*``, ``ip_adapter.N.to_k_ip/to_v_ip``), so ``ip-adapter-plus_sd15.safetensors``
  loads with strict key checking.
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

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..errors import GenerationCancelled, ModelError, StoryDiffusionError

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
DEFAULT_IP_ADAPTER = ("h94/IP-Adapter", "models", "ip-adapter-plus_sd15.safetensors")
DEFAULT_ENCODER = ("ViT-H-14", "laion2b_s32b_b79k")
DEFAULT_NEGATIVE = "bad quality, worst quality, blurry, deformed"
_OFFLINE_HINT = "Use `--model tiny` for an offline run on tiny random-weight models."
# The IP-Adapter was trained with a zeroed image as its unconditional input: after CLIP's
# normalisation, an image of CLIP's mean colour is that zero image.
_CLIP_MEAN_RGB = (123, 117, 104)


class AnimationError(StoryDiffusionError, ValueError):
    """Animation settings or inputs are unusable (frame count, size, panels)."""


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


# --------------------------------------------------------------------------------------------
# IP-Adapter Plus: resampler and decoupled cross-attention, with the public key names
# --------------------------------------------------------------------------------------------


class PerceiverAttention(torch.nn.Module):
    """Latent queries attending to image tokens plus themselves (IP-Adapter Plus resampler block)."""

    def __init__(self, dim: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.dim_head, self.heads = dim_head, heads
        inner = dim_head * heads
        self.norm1 = torch.nn.LayerNorm(dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.to_q = torch.nn.Linear(dim, inner, bias=False)
        self.to_kv = torch.nn.Linear(dim, inner * 2, bias=False)
        self.to_out = torch.nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        x, latents = self.norm1(x), self.norm2(latents)
        batch, length, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=-2)).chunk(2, dim=-1)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, self.heads, self.dim_head).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class Resampler(torch.nn.Module):
    """IP-Adapter Plus image projection: any number of image tokens -> ``num_queries`` tokens of the text width."""

    def __init__(
        self,
        dim: int = 768,
        depth: int = 4,
        dim_head: int = 64,
        heads: int = 12,
        num_queries: int = 16,
        embedding_dim: int = 1280,
        output_dim: int = 768,
        ff_mult: int = 4,
    ):
        super().__init__()
        self.latents = torch.nn.Parameter(torch.randn(1, num_queries, dim) / dim**0.5)
        self.proj_in = torch.nn.Linear(embedding_dim, dim)
        self.proj_out = torch.nn.Linear(dim, output_dim)
        self.norm_out = torch.nn.LayerNorm(output_dim)
        inner = int(dim * ff_mult)
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleList(
                [
                    PerceiverAttention(dim, dim_head, heads),
                    torch.nn.Sequential(
                        torch.nn.LayerNorm(dim),
                        torch.nn.Linear(dim, inner, bias=False),
                        torch.nn.GELU(),
                        torch.nn.Linear(inner, dim, bias=False),
                    ),
                ]
            )
            for _ in range(depth)
        )

    @property
    def num_queries(self) -> int:
        return int(self.latents.shape[1])

    @property
    def embedding_dim(self) -> int:
        return int(self.proj_in.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.repeat(x.shape[0], 1, 1)
        x = self.proj_in(x)
        for attention, feed_forward in self.layers:
            latents = attention(x, latents) + latents
            latents = feed_forward(latents) + latents
        return self.norm_out(self.proj_out(latents))


class DecoupledCrossAttnProcessor(torch.nn.Module):
    """Cross-attention over text tokens plus, separately, the last ``num_tokens`` (image) tokens of each row.

    ``encoder_hidden_states`` is ``[text tokens | image tokens]`` per batch row (one row = one
    frame), so each frame is conditioned on its own image tokens. ``ip_scale`` comes through
    ``cross_attention_kwargs`` so a run never changes the processor.
    """

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.default_scale = scale
        self.to_k_ip = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_ip = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def __call__(  # noqa: D401 - diffusers' processor protocol
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        ip_scale: float | None = None,
    ) -> torch.Tensor:
        scale = self.default_scale if ip_scale is None else float(ip_scale)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if encoder_hidden_states is None:
            text, image = hidden_states, None
        else:
            if encoder_hidden_states.shape[1] <= self.num_tokens:
                raise AnimationError("the decoupled cross-attention needs text tokens followed by image tokens")
            text = encoder_hidden_states[:, : -self.num_tokens]
            image = encoder_hidden_states[:, -self.num_tokens :]
        batch = text.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, text.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is not None and attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        key, value = attn.to_k(text), attn.to_v(text)
        head_dim = key.shape[-1] // attn.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        if image is not None and scale != 0.0:
            ip_key, ip_value = heads(self.to_k_ip(image)), heads(self.to_v_ip(image))
            out = out + scale * F.scaled_dot_product_attention(query, ip_key, ip_value)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def cross_attention_ids(unet2d: torch.nn.Module) -> dict[str, int]:
    """Processor name -> IP-Adapter key id for each spatial cross-attention layer.

    The public checkpoints number ``ip_adapter.N`` by the position of the layer in the SD 1.5
    ``UNet2DConditionModel.attn_processors`` order (attn1 and attn2 together: 1, 3, ..., 31).
    """
    return {name: position for position, name in enumerate(unet2d.attn_processors) if name.endswith("attn2.processor")}


def _layer_widths(unet2d: torch.nn.Module) -> dict[str, int]:
    widths: dict[str, int] = {}
    for name, module in unet2d.named_modules():
        if name.endswith("attn2") and hasattr(module, "to_q"):
            widths[f"{name}.processor"] = int(module.to_q.in_features)
    return widths


class IPAdapter(torch.nn.Module):
    """``image_proj`` (resampler) + ``ip_adapter.N`` (decoupled attention weights): the public state dict layout."""

    def __init__(self, image_proj: Resampler, processors: dict[str, DecoupledCrossAttnProcessor], ids: dict[str, int]):
        super().__init__()
        self.image_proj = image_proj
        self.ip_adapter = torch.nn.ModuleDict({str(ids[name]): processors[name] for name in processors})
        self.layer_ids = dict(ids)

    @classmethod
    def build(cls, unet2d: torch.nn.Module, image_proj: Resampler, scale: float = 1.0) -> IPAdapter:
        """Empty weights shaped for ``unet2d`` (SD 1.5 layout); fill them with ``load_state_dict``."""
        ids = cross_attention_ids(unet2d)
        widths = _layer_widths(unet2d)
        cross_dim = int(unet2d.config.cross_attention_dim)
        processors = {
            name: DecoupledCrossAttnProcessor(widths[name], cross_dim, image_proj.num_queries, scale) for name in ids
        }
        return cls(image_proj, processors, ids)

    def processor(self, name: str) -> DecoupledCrossAttnProcessor:
        return self.ip_adapter[str(self.layer_ids[name])]  # type: ignore[return-value]

    def install(self, unet: torch.nn.Module) -> None:
        """Put the decoupled processors on the spatial cross-attention layers; temporal layers keep theirs."""
        processors = dict(unet.attn_processors)
        missing = [name for name in self.layer_ids if name not in processors]
        if missing:
            raise ModelError(f"the UNet has no cross-attention layer {missing[0]}; the IP-Adapter does not fit it")
        for name in self.layer_ids:
            processors[name] = self.processor(name)
        unet.set_attn_processor(processors)


def resampler_from_state_dict(state: dict[str, torch.Tensor]) -> Resampler:
    """A Resampler shaped like the ``image_proj.*`` tensors of a public IP-Adapter Plus checkpoint."""
    if "image_proj.latents" not in state:
        if "image_proj.proj.weight" in state:
            raise ModelError(
                "This is a base IP-Adapter (one pooled image embedding -> 4 tokens); the motion pipeline "
                "conditions on per-frame token sequences and needs an IP-Adapter Plus checkpoint such as "
                "h94/IP-Adapter models/ip-adapter-plus_sd15.safetensors."
            )
        raise ModelError("Not an IP-Adapter checkpoint: no image_proj.* tensors.")
    latents = state["image_proj.latents"]
    depth = len({key.split(".")[2] for key in state if key.startswith("image_proj.layers.")})
    inner = state["image_proj.layers.0.0.to_q.weight"].shape[0]
    dim_head = 64 if inner % 64 == 0 else inner
    hidden = state["image_proj.layers.0.1.1.weight"].shape[0]
    return Resampler(
        dim=int(latents.shape[2]),
        depth=depth,
        dim_head=dim_head,
        heads=inner // dim_head,
        num_queries=int(latents.shape[1]),
        embedding_dim=int(state["image_proj.proj_in.weight"].shape[1]),
        output_dim=int(state["image_proj.proj_out.weight"].shape[0]),
        ff_mult=max(1, hidden // int(latents.shape[2])),
    )


def load_ip_adapter(
    unet2d: torch.nn.Module,
    source: str | Path | tuple[str, str, str],
    scale: float = 1.0,
    local_files_only: bool = False,
) -> IPAdapter:
    """An IP-Adapter Plus from a local ``.safetensors`` file or ``(repo, subfolder, file)`` on the hub; pickles are refused."""
    from safetensors.torch import load_file

    if isinstance(source, tuple):
        repo, subfolder, filename = source
        if not filename.endswith(".safetensors"):
            raise ModelError(f"{filename}: only .safetensors IP-Adapter files are loaded (pickles can run code).")
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(repo, filename, subfolder=subfolder or None, local_files_only=local_files_only)
        except Exception as exc:
            raise ModelError(
                f"Could not download {repo}/{subfolder}/{filename}: {type(exc).__name__}: {' '.join(str(exc).split())} {_OFFLINE_HINT}"
            ) from exc
    else:
        path = str(source)
        if not path.endswith(".safetensors"):
            raise ModelError(f"{path}: only .safetensors IP-Adapter files are loaded (pickles can run code).")
    try:
        state = load_file(path)
    except Exception as exc:
        raise ModelError(f"Cannot read the IP-Adapter {path}: {exc}") from exc
    adapter = IPAdapter.build(unet2d, resampler_from_state_dict(state), scale)
    try:
        adapter.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"The IP-Adapter {path} does not fit this SD 1.5 UNet: {' '.join(str(exc).split())[:400]}"
        ) from exc
    return adapter


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def fit_panel(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop to the video's aspect ratio and resize with Lanczos (SDXL panels: 1024/768 -> 512)."""
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def _to_pixels(images: Sequence[Image.Image], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return (torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0).to(device=device, dtype=dtype)


def _to_images(pixels: torch.Tensor) -> list[Image.Image]:
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(frame) for frame in array]


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation keeps the latent norm (a linear blend of two latents is too smooth, "washed out")."""
    a_flat, b_flat = a.flatten().float(), b.flatten().float()
    cos = torch.dot(a_flat / a_flat.norm(), b_flat / b_flat.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return ((1 - t) * a.float() + t * b.float()).to(a.dtype)
    sin = torch.sin(omega)
    return ((torch.sin((1 - t) * omega) / sin) * a.float() + (torch.sin(t * omega) / sin) * b.float()).to(a.dtype)


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


def _animatediff_scheduler(config: dict[str, Any] | None = None):
    """DDIM with AnimateDiff's settings (linear betas, no sample clipping, linspace timesteps)."""
    from diffusers import DDIMScheduler

    settings = dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="linspace",
        prediction_type="epsilon",
    )
    if config:
        settings.update(
            {
                k: v
                for k, v in config.items()
                if k in ("num_train_timesteps", "beta_start", "beta_end", "prediction_type")
            }
        )
    return DDIMScheduler(**settings)


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
        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.unet, self.scheduler, self.ip_adapter = unet, scheduler, ip_adapter
        self.encoder, self.predictor = encoder, predictor
        if predictor is not None:
            tokens, token_selection = int(predictor.config.tokens), str(predictor.config.token_selection)
            if int(predictor.config.embed_dim) != int(encoder.width):
                raise ModelError(
                    f"the motion predictor works on embeddings of width {predictor.config.embed_dim} but the image "
                    f"encoder gives {encoder.width}: train it on the same encoder ({predictor.config.encoder_model})"
                )
            trained_on = getattr(predictor.config, "encoder_layer", encoder.layer)
            if trained_on != encoder.layer:
                raise ModelError(
                    f"the motion predictor was trained on the encoder's {trained_on} layer tokens but the pipeline "
                    f"encodes the {encoder.layer} layer: retrain it, or load the encoder with that layer"
                )
        if int(encoder.width) != ip_adapter.image_proj.embedding_dim:
            raise ModelError(
                f"the IP-Adapter takes image tokens of width {ip_adapter.image_proj.embedding_dim} but the encoder gives "
                f"{encoder.width}: use the encoder the IP-Adapter was trained with (OpenCLIP ViT-H-14 for the SD 1.5 Plus)"
            )
        self.tokens, self.token_selection = int(tokens), token_selection
        self.size, self.default_steps, self.name = int(size), int(steps), name
        self.max_frames = int(getattr(unet.config, "motion_max_seq_length", 32) or 32)
        ip_adapter.install(unet)

    # ----------------------------------------------------------------- construction
    @classmethod
    def tiny(cls, seed: int = 0, predictor: str | Path | Any | None = None, tokens: int = 5) -> TransitionPipeline:
        """Every part tiny, random and built offline (about 3 M parameters): tests and the offline demo."""
        from diffusers import MotionAdapter, UNetMotionModel

        from ..models import build_tiny_sd15_pipeline, randomize_weights
        from .encoder import ClipImageEncoder

        sd = build_tiny_sd15_pipeline(seed)
        generator = torch.Generator().manual_seed(int(seed) * 16 + 7)
        with torch.random.fork_rng(devices=[]):
            adapter = MotionAdapter(
                block_out_channels=tuple(sd.unet.config.block_out_channels),
                motion_layers_per_block=int(sd.unet.config.layers_per_block),
                motion_num_attention_heads=2,
                motion_norm_num_groups=8,
                motion_max_seq_length=32,
                use_motion_mid_block=True,
            )
            randomize_weights(adapter, generator)
            unet = UNetMotionModel.from_unet2d(sd.unet, adapter).eval().requires_grad_(False)
            encoder = ClipImageEncoder.tiny(seed=seed)
            cross_dim = int(sd.unet.config.cross_attention_dim)
            resampler = Resampler(
                dim=32,
                depth=1,
                dim_head=16,
                heads=2,
                num_queries=4,
                embedding_dim=encoder.width,
                output_dim=cross_dim,
                ff_mult=2,
            )
            ip_adapter = IPAdapter.build(sd.unet, resampler)
            randomize_weights(ip_adapter, generator)
        return cls(
            vae=sd.vae,
            text_encoder=sd.text_encoder,
            tokenizer=sd.tokenizer,
            unet=unet,
            scheduler=_animatediff_scheduler(),
            ip_adapter=ip_adapter.eval().requires_grad_(False),
            encoder=encoder,
            predictor=_load_predictor(predictor, torch.device("cpu"), torch.float32),
            tokens=tokens,
            size=64,
            steps=4,
            name="tiny",
        )

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
        from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        from ..models import _dtype_kwargs, select_device, select_dtype
        from .encoder import ClipImageEncoder

        torch_device = select_device(device) if isinstance(device, str) else device
        torch_dtype = dtype if isinstance(dtype, torch.dtype) else select_dtype(torch_device, dtype)
        kwargs = dict(local_files_only=local_files_only, **_dtype_kwargs(torch_dtype))
        try:
            unet2d = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kwargs)
            vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kwargs)
            text_encoder = CLIPTextModel.from_pretrained(
                base, subfolder="text_encoder", local_files_only=local_files_only
            )
            tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", local_files_only=local_files_only)
        except Exception as exc:
            raise ModelError(
                f"Could not load the SD 1.5 model {base!r}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} {_OFFLINE_HINT}"
            ) from exc
        if int(unet2d.config.cross_attention_dim) != 768:
            raise ModelError(
                f"{base!r} is not an SD 1.5 model (cross-attention width {unet2d.config.cross_attention_dim}); AnimateDiff v1.5 adapters need SD 1.5."
            )
        try:
            adapter = MotionAdapter.from_pretrained(motion_adapter, **kwargs)
        except Exception as exc:
            raise ModelError(
                f"Could not load the motion adapter {motion_adapter!r}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} {_OFFLINE_HINT}"
            ) from exc
        ip = load_ip_adapter(unet2d, ip_adapter, ip_scale, local_files_only)
        unet = UNetMotionModel.from_unet2d(unet2d, adapter)
        image_encoder = ClipImageEncoder.from_pretrained(
            encoder, encoder_weights, device=torch_device, dtype=torch_dtype
        )
        pipeline = cls(
            vae=vae.to(torch_device, torch_dtype).eval(),
            text_encoder=text_encoder.to(torch_device, torch_dtype).eval(),
            tokenizer=tokenizer,
            unet=unet.to(torch_device, torch_dtype).eval(),
            scheduler=_animatediff_scheduler(),
            ip_adapter=ip.to(torch_device, torch_dtype).eval(),
            encoder=image_encoder,
            predictor=_load_predictor(predictor, torch_device, torch_dtype),
            size=512,
            steps=25,
            name=base,
        )
        return pipeline

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def uses_predictor(self) -> bool:
        return self.predictor is not None

    # ----------------------------------------------------------------- pieces of a run
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
        return _to_images(self._decode(self._encode_latents(_to_pixels(list(images), self.device, self.dtype))))

    def _check(self, frames: int, steps: int, height: int, width: int, strength: float) -> None:
        if frames < 2:
            raise AnimationError(f"--frames must be at least 2 (the two panels), got {frames}")
        if frames > self.max_frames:
            raise AnimationError(
                f"--frames {frames} is more than the motion adapter handles ({self.max_frames}); use at most {self.max_frames}"
            )
        if steps < 1:
            raise AnimationError(f"--steps must be at least 1, got {steps}")
        if height < 8 or width < 8 or height % 8 or width % 8:
            raise AnimationError(f"video size {width}x{height} must be a multiple of 8 (e.g. 512x512)")
        if not 0.0 < strength <= 1.0:
            raise AnimationError(f"strength must be in (0, 1], got {strength}")

    # ----------------------------------------------------------------- run
    @torch.no_grad()
    def __call__(
        self,
        start_image: Image.Image,
        end_image: Image.Image,
        prompt: str = "",
        negative_prompt: str = DEFAULT_NEGATIVE,
        frames: int = 16,
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
        self._check(frames, steps, height, width, strength)
        device, dtype = self.device, self.dtype
        originals = (start_image.size, end_image.size)
        start = fit_panel(start_image, width, height)
        end = fit_panel(end_image, width, height)

        # Conditioning: text tokens + each frame's projected semantic tokens.
        semantic, note = self.semantic_tokens(start, end, frames)
        image_tokens = self.image_conditioning(semantic)
        text = self.encode_prompt(prompt).expand(frames, -1, -1)
        conditional = torch.cat([text, image_tokens], dim=1)
        use_guidance = guidance > 1.0
        if use_guidance:
            negative = self.encode_prompt(negative_prompt).expand(frames, -1, -1)
            unconditional = torch.cat([negative, self._unconditional_image_tokens(frames)], dim=1)
            context = torch.cat([unconditional, conditional])  # (2F, 77+Q, D): one row per frame
        else:
            context = conditional

        # Latents: endpoints from the panels, the middle initialised between them.
        endpoints = self._encode_latents(_to_pixels([start, end], device, dtype))  # (2, C, h, w)
        clean = torch.stack([_slerp(endpoints[0], endpoints[1], i / (frames - 1)) for i in range(frames)])
        clean[0], clean[-1] = endpoints[0], endpoints[1]
        clean = clean.permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, F, h, w)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float32).to(device, dtype)

        scheduler = copy.deepcopy(self.scheduler)  # a run owns its scheduler state
        scheduler.set_timesteps(steps, device=device)
        first = steps - min(steps, max(1, int(round(steps * strength))))
        timesteps = scheduler.timesteps[first:]
        latents = scheduler.add_noise(clean, noise, timesteps[:1])
        pinned = [0, frames - 1]
        kwargs = {"ip_scale": ip_scale} if ip_scale is not None else None

        for index, t in enumerate(timesteps):
            if cancel is not None and cancel.is_set():
                raise GenerationCancelled("the animation was cancelled")
            latents[:, :, pinned] = scheduler.add_noise(clean[:, :, pinned], noise[:, :, pinned], t.reshape(1))
            model_input = torch.cat([latents, latents]) if use_guidance else latents
            model_input = scheduler.scale_model_input(model_input, t)
            prediction = self.unet(model_input, t, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
            if use_guidance:
                uncond, cond = prediction.chunk(2)
                prediction = uncond + guidance * (cond - uncond)
            latents = scheduler.step(prediction, t, latents).prev_sample
            if callback is not None:
                callback(TransitionProgress(index + 1, len(timesteps)))
        latents[:, :, pinned] = clean[:, :, pinned]

        pixels = self._decode(latents[0].permute(1, 0, 2, 3))
        images = _to_images(pixels)
        if exact_endpoints:
            images[0], images[-1] = start, end
        notes = [f"{note}", f"{frames} frames at {width}x{height}, {len(timesteps)} steps"]
        resized = sorted({f"{w}x{h}" for (w, h) in originals if (w, h) != (width, height)})
        if resized:
            notes.append(f"panels resized from {', '.join(resized)} to {width}x{height}")
        return TransitionResult(frames=images, note="; ".join(notes), seconds=time.perf_counter() - began)


def _load_predictor(predictor: str | Path | Any | None, device: torch.device, dtype: torch.dtype) -> Any:
    """None, a loaded predictor, or a folder with ``config.json`` + ``model.safetensors``."""
    if predictor is None:
        return None
    if isinstance(predictor, (str, Path)):
        from .predictor import SemanticMotionPredictor

        return SemanticMotionPredictor.from_pretrained(predictor, device=device, dtype=dtype)
    return predictor
