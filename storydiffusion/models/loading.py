"""Loading a pipeline from anything a user may name: a registry entry, a diffusers folder, a single
``.safetensors`` checkpoint or a hub id, plus an optional LoRA.

Only ``StableDiffusionXLPipeline`` ("sdxl") and ``StableDiffusionPipeline`` ("sd15") are supported,
because Consistent Self-Attention is installed into their UNet's self-attention layers. Every
failure becomes a ModelError that says what was tried and how to run offline.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelError
from ..weight_sources import lora_weights_file, missing_lora_message, pickled_model_message
from .devices import dtype_kwargs
from .registry import ModelSpec, check_model_name, default_model_name, family_spec, load_model_registry
from .tiny import build_tiny_pipeline

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from diffusers import DiffusionPipeline

LORA_ADAPTER = "story_lora"
OFFLINE_HINT = (
    "For an offline demo use `--model tiny-sdxl` (a tiny random-weight model), "
    "or pass a local diffusers folder or a .safetensors checkpoint."
)
OFFLINE_SIGNS = ("outgoing traffic has been disabled", "offline mode", "local_files_only")
NOT_CACHED = (
    "it is not in the Hugging Face cache, and downloads are off (HF_HUB_OFFLINE=1, or a server started offline): "
    "fetch it once with internet"
)
STACKTRACE_HINT = re.compile(r"\s*[^.]*\bstack ?trace\b[^.]*\.?", re.IGNORECASE)
NO_SAFETY_CHECKER = {"safety_checker": None, "requires_safety_checker": False}


def load_diffusers_pipeline(
    model: str | None,
    *,
    torch_dtype: torch.dtype | None = None,
    registry: dict[str, ModelSpec] | None = None,
    local_files_only: bool = False,
) -> tuple[DiffusionPipeline, ModelSpec]:
    """Load ``model`` (registry name, diffusers folder, .safetensors file or hub id) and its default settings."""
    registry = registry if registry is not None else load_model_registry()
    if isinstance(model, os.PathLike):  # a local folder or file given as a Path
        model = os.fspath(model)
    if model is not None and not isinstance(model, str):
        raise ModelError(f"model must be a name, hub id, folder or .safetensors file, not {type(model).__name__}")
    model = model or default_model_name(registry)
    spec = registry.get(model)
    source = spec.source if spec is not None else model
    if spec is not None and spec.source == "tiny":
        return build_tiny_pipeline(spec.family, torch_dtype), spec

    path = Path(source).expanduser()
    if path.is_dir():
        pipe, source = _load_folder(path, torch_dtype), str(path)
    elif path.is_file():
        pipe, source = _load_single_file(path, torch_dtype, local_files_only), str(path)
    else:
        check_model_name(model, registry)
        pipe = _load_from_hub(model, source, spec, torch_dtype, local_files_only)
    return align_cpu_weights(pipe), _spec_for_loaded(model, source, pipe, spec)


def load_lora(pipe: Any, lora: str, scale: float, family: str) -> None:
    """Load a LoRA (file, folder or hub id) into ``pipe`` as one adapter weighted by ``scale``."""
    missing = missing_lora_message(lora)
    if missing is not None:  # diffusers would blame offline mode or a weight name instead
        raise ModelError(missing)
    weight_name, refused = lora_weights_file(lora)
    if refused is not None:  # never read: a pickle can run code as it loads
        raise ModelError(refused)
    named = {"weight_name": weight_name} if weight_name is not None else {}
    try:
        pipe.load_lora_weights(lora, adapter_name=LORA_ADAPTER, use_safetensors=True, **named)
        pipe.set_adapters([LORA_ADAPTER], adapter_weights=[scale])
    except Exception as error:  # diffusers raises many types for a bad LoRA
        reason = " ".join(str(error).split()).rstrip(" .")[:300] or type(error).__name__
        if any(sign in reason for sign in OFFLINE_SIGNS):  # diffusers' words name its own arguments
            reason = f"{NOT_CACHED}, or give its .safetensors file"
        raise ModelError(
            f"could not load LoRA {lora!r}: {reason}. Check the path or hub id and that it fits {family}"
        ) from None


def detect_checkpoint_family(path: str | Path) -> str:
    """ "sdxl" or "sd15" for a single-file ``.safetensors`` checkpoint, from its key names (no weights are read)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise ModelError(f"Cannot read {path} as a .safetensors checkpoint: {exc}") from exc
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.") for k in keys):
        return "sd15"
    sample = ", ".join(keys[:3]) or "no tensors"
    raise ModelError(
        f"{path} is not a recognised SDXL or SD 1.5 checkpoint (keys start with {sample}). "
        "Single-file checkpoints must be original-format SDXL (conditioner.embedders.1.*) or "
        "SD 1.5 (cond_stage_model.*); for other models use a diffusers folder."
    )


def pipeline_family(pipe: Any) -> str:
    """ "sdxl" or "sd15" from the pipeline class; ModelError for classes Consistent Self-Attention does not support."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if isinstance(pipe, StableDiffusionXLPipeline):
        return "sdxl"
    if isinstance(pipe, StableDiffusionPipeline):
        return "sd15"
    raise ModelError(
        f"{type(pipe).__name__} is not supported: StoryDiffusion works with StableDiffusionXLPipeline "
        "(SDXL checkpoints) and StableDiffusionPipeline (SD 1.5 checkpoints)."
    )


def align_cpu_weights(pipe: Any) -> Any:
    """Copy CPU weights that sit at addresses not aligned to 64 bytes; returns ``pipe``.

    Tensors memory-mapped from .safetensors files can start at any byte offset, and CPU matmul
    kernels then take a different path and round differently (about 1e-7). Copying them makes a
    loaded pipeline bitwise identical to the one that was saved, so runs are reproducible.
    """
    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        with torch.no_grad():
            for tensor in itertools.chain(component.parameters(), component.buffers()):
                if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % 64:
                    tensor.data = tensor.data.clone()
    return pipe


def _load_folder(folder: Path, torch_dtype: torch.dtype | None) -> DiffusionPipeline:
    from diffusers import DiffusionPipeline

    if not (folder / "model_index.json").is_file():
        raise ModelError(
            f"{folder} is a folder but not a diffusers pipeline (no model_index.json). "
            "Save one with `pipe.save_pretrained(folder)`, or pass a .safetensors checkpoint."
        )
    pickled = pickled_model_message(str(folder))
    if pickled is not None:  # refused unread: a pickle can run code as it loads
        raise ModelError(pickled)
    kwargs = _local_folder_kwargs(folder)
    try:
        return DiffusionPipeline.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, **dtype_kwargs(torch_dtype), **kwargs
        )
    except Exception as exc:
        raise _load_failed(f"the diffusers folder {folder}", exc) from exc


def _local_folder_kwargs(folder: Path) -> dict[str, Any]:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}/model_index.json cannot be read: {exc}") from exc
    if index.get("_class_name") == "StableDiffusionPipeline" and "safety_checker" in index:
        return dict(NO_SAFETY_CHECKER)
    return {}


def _load_single_file(path: Path, torch_dtype: torch.dtype | None, local_files_only: bool) -> DiffusionPipeline:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if path.suffix.lower() != ".safetensors":
        raise ModelError(f"{path}: only single-file checkpoints in .safetensors format are supported.")
    family = detect_checkpoint_family(path)
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    kwargs = {} if family == "sdxl" else dict(NO_SAFETY_CHECKER)
    try:
        return cls.from_single_file(str(path), local_files_only=local_files_only, **dtype_kwargs(torch_dtype), **kwargs)
    except Exception as exc:
        raise _load_failed(
            f"the {family} checkpoint {path} with {cls.__name__}.from_single_file "
            "(it needs the model's configuration files from the hub or its cache)",
            exc,
        ) from exc


def _load_from_hub(
    model: str, source: str, spec: ModelSpec | None, torch_dtype: torch.dtype | None, local_files_only: bool
) -> DiffusionPipeline:
    kwargs = dict(local_files_only=local_files_only, use_safetensors=True, **dtype_kwargs(torch_dtype))  # no pickles
    if spec is not None and spec.family == "sd15":
        kwargs.update(NO_SAFETY_CHECKER)
    try:
        return _from_pretrained_any_variant(source, spec.variant if spec is not None else None, kwargs)
    except Exception as exc:
        label = f"{model!r} ({source})" if source != model else repr(model)
        where = "the Hugging Face cache only" if local_files_only else "the Hugging Face hub"
        raise _load_failed(f"{label} from {where}", exc) from exc


def _from_pretrained_any_variant(source: str, variant: str | None, kwargs: dict[str, Any]) -> DiffusionPipeline:
    """``variant``'s weights (e.g. fp16) when the repository has them, else its regular weights."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(source, variant=variant, **kwargs)
    except Exception as exc:
        if variant is None or "variant" not in str(exc).lower():
            raise
        return DiffusionPipeline.from_pretrained(source, **kwargs)


def _load_failed(what: str, exc: BaseException) -> ModelError:
    detail = " ".join(str(exc).split())  # one line: the CLI prints a single line per error
    if any(sign in detail for sign in OFFLINE_SIGNS):  # the libraries' words name arguments a user never passed
        return ModelError(f"Could not load {what}: {NOT_CACHED}. {OFFLINE_HINT}")
    detail = STACKTRACE_HINT.sub("", detail)  # no stack trace is shown: the hint would send the user looking
    return ModelError(f"Could not load {what}: {type(exc).__name__}: {detail} {OFFLINE_HINT}")


def _native_size(pipe: Any) -> int | None:
    try:
        factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        return int(pipe.unet.config.sample_size) * factor
    except (AttributeError, TypeError):
        return None


def _spec_for_loaded(name: str, source: str, pipe: Any, spec: ModelSpec | None) -> ModelSpec:
    family = pipeline_family(pipe)
    if spec is not None and spec.family == family:
        return spec
    derived = family_spec(name, source, family, description=f"{type(pipe).__name__} from {source}")
    native = _native_size(pipe)
    if native is not None and 0 < native < derived.height:
        # Small models (e.g. a saved tiny pipeline) default to the size they were made for.
        derived = dataclasses.replace(derived, height=native, width=native)
    return derived
