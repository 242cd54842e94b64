"""The parts of the transition pipeline: tiny random ones built offline, or the real ones from the hub.

Both return the keyword arguments of ``TransitionPipeline(...)``; the pipeline's ``tiny`` and
``from_pretrained`` classmethods are the entry points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from ..models.loading import NOT_CACHED
from .ip_adapter import OFFLINE_HINT, IPAdapter, load_ip_adapter

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
DEFAULT_IP_ADAPTER = ("h94/IP-Adapter", "models", "ip-adapter-plus_sd15.safetensors")
DEFAULT_ENCODER = ("ViT-H-14", "laion2b_s32b_b79k")


def animatediff_scheduler() -> Any:
    """DDIM with AnimateDiff's settings (linear betas, no sample clipping, linspace timesteps)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
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


def load_predictor(predictor: str | Path | Any | None, device: torch.device, dtype: torch.dtype) -> Any:
    """None, a loaded predictor, or a folder with ``config.json`` + ``model.safetensors``."""
    if predictor is None:
        return None
    if isinstance(predictor, (str, Path)):
        from .predictor import SemanticMotionPredictor

        return SemanticMotionPredictor.from_pretrained(predictor, device=device, dtype=dtype)
    return predictor


def _tiny_motion_unet(unet2d: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    from diffusers import MotionAdapter, UNetMotionModel

    from ..models import randomize_weights

    adapter = MotionAdapter(
        block_out_channels=tuple(unet2d.config.block_out_channels),
        motion_layers_per_block=int(unet2d.config.layers_per_block),
        motion_num_attention_heads=2,
        motion_norm_num_groups=8,
        motion_max_seq_length=32,
        use_motion_mid_block=True,
    )
    randomize_weights(adapter, generator)
    return UNetMotionModel.from_unet2d(unet2d, adapter).eval().requires_grad_(False)


def _tiny_ip_adapter(unet2d: torch.nn.Module, embedding_dim: int, generator: torch.Generator) -> IPAdapter:
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    from ..models import randomize_weights

    projection = IPAdapterPlusImageProjection(
        embed_dims=embedding_dim,
        output_dims=int(unet2d.config.cross_attention_dim),
        hidden_dims=32,
        depth=1,
        dim_head=16,
        heads=2,
        num_queries=4,
        ffn_ratio=2,
    )
    ip_adapter = IPAdapter.build(unet2d, projection)
    randomize_weights(ip_adapter, generator)
    return ip_adapter.eval().requires_grad_(False)


def tiny_components(seed: int = 0, predictor: str | Path | Any | None = None, tokens: int = 5) -> dict[str, Any]:
    """Every part tiny, random and built offline (about 3 M parameters): tests and the offline demo."""
    from ..models import build_tiny_sd15_pipeline
    from .encoder import ClipImageEncoder

    sd = build_tiny_sd15_pipeline(seed)
    generator = torch.Generator().manual_seed(int(seed) * 16 + 7)
    with torch.random.fork_rng(devices=[]):
        unet = _tiny_motion_unet(sd.unet, generator)
        encoder = ClipImageEncoder.tiny(seed=seed)
        ip_adapter = _tiny_ip_adapter(sd.unet, encoder.width, generator)
    return dict(
        vae=sd.vae,
        text_encoder=sd.text_encoder,
        tokenizer=sd.tokenizer,
        unet=unet,
        scheduler=animatediff_scheduler(),
        ip_adapter=ip_adapter,
        encoder=encoder,
        predictor=load_predictor(predictor, torch.device("cpu"), torch.float32),
        tokens=tokens,
        size=64,
        steps=4,
        name="tiny",
    )


def _short(exc: Exception, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def _load_error(what: str, source: str, exc: Exception, cached_file: str, local_files_only: bool) -> ModelError:
    """Why ``source`` did not load: offline and not in the hub's cache (``cached_file`` is the first file its
    loader reads), said as such; the libraries would call it a repository without a config.json."""
    from huggingface_hub import constants, try_to_load_from_cache

    offline = local_files_only or constants.HF_HUB_OFFLINE
    local = Path(source).expanduser().exists()
    if offline and not local and not isinstance(_cached(try_to_load_from_cache, source, cached_file), str):
        return ModelError(f"Could not load {what} {source!r} from the Hugging Face hub: {NOT_CACHED}. {OFFLINE_HINT}")
    return ModelError(f"Could not load {what} {source!r}: {_short(exc)} {OFFLINE_HINT}")


def _cached(lookup, repo: str, filename: str) -> Any:
    try:
        return lookup(repo, filename)
    except Exception:  # not a repository id at all: nothing of it is cached
        return None


def _load_sd15(base: str, kwargs: dict[str, Any], local_files_only: bool) -> tuple[Any, Any, Any, Any]:
    """UNet, VAE, text encoder and tokenizer of an SD 1.5 model; ModelError for anything else."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        unet2d = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kwargs)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kwargs)
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", local_files_only=local_files_only)
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", local_files_only=local_files_only)
    except Exception as exc:
        raise _load_error("the SD 1.5 model", base, exc, "unet/config.json", local_files_only) from exc
    if int(unet2d.config.cross_attention_dim) != 768:
        raise ModelError(
            f"{base!r} is not an SD 1.5 model (cross-attention width {unet2d.config.cross_attention_dim}); "
            "AnimateDiff v1.5 adapters need SD 1.5."
        )
    return unet2d, vae, text_encoder, tokenizer


def _load_motion_adapter(motion_adapter: str, kwargs: dict[str, Any]) -> Any:
    from diffusers import MotionAdapter

    try:
        return MotionAdapter.from_pretrained(motion_adapter, **kwargs)
    except Exception as exc:
        local_files_only = bool(kwargs.get("local_files_only"))
        raise _load_error("the motion adapter", motion_adapter, exc, "config.json", local_files_only) from exc


def pretrained_components(
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
) -> dict[str, Any]:
    """The real models from the hub (or local folders), as a user with internet would load them."""
    from diffusers import UNetMotionModel

    from ..models import dtype_kwargs, select_device, select_dtype
    from .encoder import ClipImageEncoder

    torch_device = select_device(device) if isinstance(device, str) else device
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else select_dtype(torch_device, dtype)
    kwargs = dict(local_files_only=local_files_only, **dtype_kwargs(torch_dtype))
    unet2d, vae, text_encoder, tokenizer = _load_sd15(base, kwargs, local_files_only)
    adapter = _load_motion_adapter(motion_adapter, kwargs)
    ip = load_ip_adapter(unet2d, ip_adapter, ip_scale, local_files_only)
    unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    return dict(
        vae=vae.to(torch_device, torch_dtype).eval(),
        text_encoder=text_encoder.to(torch_device, torch_dtype).eval(),
        tokenizer=tokenizer,
        unet=unet.to(torch_device, torch_dtype).eval(),
        scheduler=animatediff_scheduler(),
        ip_adapter=ip.to(torch_device, torch_dtype).eval(),
        encoder=ClipImageEncoder.from_pretrained(encoder, encoder_weights, device=torch_device, dtype=torch_dtype),
        predictor=load_predictor(predictor, torch_device, torch_dtype),
        size=512,
        steps=25,
        name=base,
    )
