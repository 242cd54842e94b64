"""Finding, building and loading the diffusion models a story is drawn with.

Three kinds of models are supported:

* named entries of ``configs/models.yaml`` (hub checkpoints with their default settings),
* local diffusers folders, single ``.safetensors`` checkpoints and hub ids,
* tiny random-weight SDXL / SD 1.5 pipelines built offline, so that tests and demos run
  on a CPU without downloading anything.

Only ``StableDiffusionXLPipeline`` ("sdxl") and ``StableDiffusionPipeline`` ("sd15") are
supported, because Consistent Self-Attention is installed into their UNet's self-attention layers.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import ModelError
from .resources import data_path

if TYPE_CHECKING:  # pragma: no cover - imports for type hints only
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

FAMILIES = ("sdxl", "sd15")
CONFIG_DIR = data_path("configs")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_OFFLINE_HINT = (
    "For an offline demo use `--model tiny-sdxl` (a tiny random-weight model), "
    "or pass a local diffusers folder or a .safetensors checkpoint."
)

# Defaults for models that are not in the registry: (steps, guidance, height, width).
_FAMILY_DEFAULTS: dict[str, tuple[int, float, int, int]] = {
    "sdxl": (30, 5.0, 768, 768),
    "sd15": (30, 7.0, 512, 512),
}


@dataclass
class ModelSpec:
    """A model and the generation defaults that suit it (used when a story does not set them)."""

    name: str
    source: str  # hub id, local path, or "tiny"
    family: str  # "sdxl" | "sd15"
    steps: int
    guidance: float
    height: int
    width: int
    description: str = ""
    variant: str | None = None


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _check_family(family: Any, where: str) -> str:
    if family not in FAMILIES:
        raise ModelError(f"{where}: family {family!r} is not supported; use one of {', '.join(FAMILIES)}.")
    return str(family)


def family_spec(name: str, source: str, family: str, description: str = "") -> ModelSpec:
    """A ModelSpec with the family's default settings, for models that are not in the registry."""
    family = _check_family(family, f"model {name}")
    steps, guidance, height, width = _FAMILY_DEFAULTS[family]
    return ModelSpec(name, source, family, steps, guidance, height, width, description)


def load_model_registry(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Named models and their defaults from ``configs/models.yaml`` (or ``path``), so users can say ``--model sd15``."""
    import yaml

    path = Path(path) if path is not None else CONFIG_DIR / "models.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"Cannot read the model registry {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise ModelError(f"The model registry {path} needs a non-empty `models:` mapping.")
    registry: dict[str, ModelSpec] = {}
    for name, entry in data["models"].items():
        where = f"{path.name}: model {name!r}"
        if not isinstance(entry, dict):
            raise ModelError(f"{where} must be a mapping of settings.")
        missing = [k for k in ("source", "family", "steps", "guidance", "height", "width") if k not in entry]
        if missing:
            raise ModelError(f"{where} lacks {', '.join(missing)}.")
        unknown = set(entry) - {f.name for f in dataclasses.fields(ModelSpec)}
        if unknown:
            raise ModelError(f"{where} has unknown keys {', '.join(sorted(unknown))}.")
        try:
            registry[str(name)] = ModelSpec(
                name=str(name),
                source=str(entry["source"]),
                family=_check_family(entry["family"], where),
                steps=int(entry["steps"]),
                guidance=float(entry["guidance"]),
                height=int(entry["height"]),
                width=int(entry["width"]),
                description=str(entry.get("description") or ""),
                variant=None if entry.get("variant") is None else str(entry["variant"]),
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where} has a bad value: {exc}") from exc
    default = data.get("default")
    if default is not None and default not in registry:
        raise ModelError(f"{path.name}: default {default!r} is not one of {', '.join(registry)}.")
    return registry


def default_model_name(registry: dict[str, ModelSpec] | None = None, path: str | Path | None = None) -> str:
    """The model used when none is named: the ``default:`` key of the registry file (else its first entry)."""
    import yaml

    registry = registry if registry is not None else load_model_registry(path)
    path = Path(path) if path is not None else CONFIG_DIR / "models.yaml"
    try:
        default = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("default")
    except (OSError, yaml.YAMLError, AttributeError):
        default = None
    if default in registry:
        return str(default)
    return next(iter(registry))


# --------------------------------------------------------------------------------------------
# Full-size architectures (no weights)
# --------------------------------------------------------------------------------------------


def full_size_unet_config(family: str) -> dict[str, Any]:
    """The public UNet2DConditionModel config of SDXL base 1.0 or SD 1.5, to build real architectures without weights.

    Benchmarks and tests build them on the ``meta`` device (or with random bf16 weights) to
    measure the real number and size of attention layers without downloading a checkpoint.
    """
    family = _check_family(family, "full_size_unet_config")
    path = CONFIG_DIR / "unet" / ("sdxl-base.json" if family == "sdxl" else "sd15.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read the UNet config {path}: {exc}") from exc
    return {k: v for k, v in config.items() if not k.startswith("_")}


# --------------------------------------------------------------------------------------------
# Tiny random-weight pipelines
# --------------------------------------------------------------------------------------------

_NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


def _tiny_text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=32,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=1,
    )


def _tiny_vae(scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
        force_upcast=False,
    )


def _seeded_generator(seed: int, component: int) -> torch.Generator:
    # One independent stream per pipeline component, so the components do not depend on each other.
    return torch.Generator(device="cpu").manual_seed(int(seed) * 16 + component)


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


def _build_random(factory, seed: int, component: int) -> torch.nn.Module:
    # Construction draws default initialisations from the global RNG: fork it so the caller's RNG
    # state is unchanged, then overwrite every value from the explicit generator.
    with torch.random.fork_rng(devices=[]):
        module = factory()
    randomize_weights(module, _seeded_generator(seed, component))
    if any(p.dtype != torch.float32 for p in module.parameters()):
        module = module.to(torch.float32)
    return module.eval().requires_grad_(False)


def tiny_unet_config(family: str) -> dict[str, Any]:
    """UNet2DConditionModel kwargs of the tiny test models (self-attention in up_blocks for both families)."""
    family = _check_family(family, "tiny_unet_config")
    common = dict(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        norm_num_groups=8,
    )
    if family == "sdxl":
        return dict(
            common,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            attention_head_dim=(2, 4),
            transformer_layers_per_block=(1, 2),
            use_linear_projection=True,
            cross_attention_dim=64,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + pooled text 32
        )
    return dict(
        common,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=32,
    )


def build_tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """A ~5 M parameter SDXL-architecture pipeline with seeded random weights, for offline tests and demos."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from .tokenizer import build_clip_tokenizer

    unet = _build_random(lambda: UNet2DConditionModel(**tiny_unet_config("sdxl")), seed, 0)
    vae = _build_random(lambda: _tiny_vae(0.13025), seed, 1)
    text_encoder = _build_random(lambda: CLIPTextModel(_tiny_text_config()), seed, 2)
    text_encoder_2 = _build_random(lambda: CLIPTextModelWithProjection(_tiny_text_config()), seed, 3)
    scheduler = EulerDiscreteScheduler(
        **_NOISE_SCHEDULE,
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
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from .tokenizer import build_clip_tokenizer

    unet = _build_random(lambda: UNet2DConditionModel(**tiny_unet_config("sd15")), seed, 0)
    vae = _build_random(lambda: _tiny_vae(0.18215), seed, 1)
    text_encoder = _build_random(lambda: CLIPTextModel(_tiny_text_config()), seed, 2)
    scheduler = PNDMScheduler(**_NOISE_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False)
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


# --------------------------------------------------------------------------------------------
# Checkpoints and loading
# --------------------------------------------------------------------------------------------


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


def _dtype_kwargs(torch_dtype: torch.dtype | None) -> dict[str, Any]:
    if torch_dtype is None:
        return {}
    import diffusers
    from packaging.version import Version

    # diffusers 0.42 renamed torch_dtype to dtype (the old name warns).
    key = "dtype" if Version(diffusers.__version__).release >= (0, 42) else "torch_dtype"
    return {key: torch_dtype}


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


def _load_failed(what: str, exc: BaseException) -> ModelError:
    detail = " ".join(str(exc).split())  # one line: the CLI prints a single line per error
    return ModelError(f"Could not load {what}: {type(exc).__name__}: {detail} {_OFFLINE_HINT}")


def _local_folder_kwargs(folder: Path) -> dict[str, Any]:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}/model_index.json cannot be read: {exc}") from exc
    if index.get("_class_name") == "StableDiffusionPipeline" and "safety_checker" in index:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def load_diffusers_pipeline(
    model: str | None,
    *,
    torch_dtype: torch.dtype | None = None,
    registry: dict[str, ModelSpec] | None = None,
    local_files_only: bool = False,
) -> tuple[DiffusionPipeline, ModelSpec]:
    """Load ``model`` (registry name, diffusers folder, .safetensors file or hub id) and its default settings.

    Every failure becomes a ModelError that says what was tried and how to run offline.
    """
    registry = registry if registry is not None else load_model_registry()
    model = model or default_model_name(registry)
    spec = registry.get(model)
    source = spec.source if spec is not None else model

    if spec is not None and spec.source == "tiny":
        pipe = build_tiny_sdxl_pipeline() if spec.family == "sdxl" else build_tiny_sd15_pipeline()
        if torch_dtype is not None:
            for component in pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    # Plain nn.Module.to: diffusers' own .to warns about float32 modules tiny models lack.
                    torch.nn.Module.to(component, dtype=torch_dtype)
        return pipe, spec

    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(
                f"{path} is a folder but not a diffusers pipeline (no model_index.json). "
                "Save one with `pipe.save_pretrained(folder)`, or pass a .safetensors checkpoint."
            )
        kwargs = _local_folder_kwargs(path)
        try:
            pipe = DiffusionPipeline.from_pretrained(
                str(path), local_files_only=True, **_dtype_kwargs(torch_dtype), **kwargs
            )
        except Exception as exc:
            raise _load_failed(f"the diffusers folder {path}", exc) from exc
        return align_cpu_weights(pipe), _spec_for_loaded(model, str(path), pipe, spec)

    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise ModelError(f"{path}: only single-file checkpoints in .safetensors format are supported.")
        family = detect_checkpoint_family(path)
        cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
        kwargs = {} if family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        try:
            pipe = cls.from_single_file(
                str(path), local_files_only=local_files_only, **_dtype_kwargs(torch_dtype), **kwargs
            )
        except Exception as exc:
            raise _load_failed(
                f"the {family} checkpoint {path} with {cls.__name__}.from_single_file "
                "(it needs the model's configuration files from the hub or its cache)",
                exc,
            ) from exc
        return align_cpu_weights(pipe), _spec_for_loaded(model, str(path), pipe, spec)

    looks_like_path = (
        source.startswith((".", "~", "/"))
        or "\\" in source
        or path.suffix.lower()
        in (
            ".safetensors",
            ".ckpt",
        )
    )
    if spec is None and looks_like_path:
        raise ModelError(
            f"Model {model!r} looks like a path but no such file or folder exists. "
            f"Pass a diffusers folder, a .safetensors checkpoint or a registry name ({', '.join(registry)})."
        )
    if spec is None and not _HUB_ID.match(source):
        raise ModelError(
            f"Unknown model {model!r}: not a registry name ({', '.join(registry)}), "
            "not an existing folder or .safetensors file, and not a hub id of the form owner/name."
        )

    kwargs = _dtype_kwargs(torch_dtype)
    if spec is not None and spec.family == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    where = "the Hugging Face cache only" if local_files_only else "the Hugging Face hub"
    variant = spec.variant if spec is not None else None
    try:
        try:
            pipe = DiffusionPipeline.from_pretrained(
                source, variant=variant, local_files_only=local_files_only, **kwargs
            )
        except Exception as exc:
            if variant is None or "variant" not in str(exc).lower():
                raise
            # The repository has no files of that variant: load the regular weights.
            pipe = DiffusionPipeline.from_pretrained(source, local_files_only=local_files_only, **kwargs)
    except Exception as exc:
        label = f"{model!r} ({source})" if source != model else repr(model)
        raise _load_failed(f"{label} from {where}", exc) from exc
    return align_cpu_weights(pipe), _spec_for_loaded(model, source, pipe, spec)


# --------------------------------------------------------------------------------------------
# Device and dtype
# --------------------------------------------------------------------------------------------


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(preference: str = "auto") -> torch.device:
    """The device to run on: ``auto`` picks cuda, then mps, then cpu; explicit names are checked to exist."""
    choice = (preference or "auto").strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"Unknown device {preference!r}: use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"Device {preference!r} was requested but CUDA is not available here; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(f"Device {preference!r} does not exist: {torch.cuda.device_count()} CUDA device(s) found.")
        return device
    if device.type == "mps":
        if not _mps_available():
            raise ModelError(f"Device {preference!r} was requested but MPS is not available here; use --device cpu.")
        return device
    raise ModelError(f"Unsupported device {preference!r}: use auto, cpu, cuda, cuda:N or mps.")


_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def select_dtype(device: torch.device | str, preference: str = "auto") -> torch.dtype:
    """Weight dtype for ``device``: ``auto`` is float16 on cuda/mps (memory, speed) and float32 on cpu (fp16 is slow or unsupported there)."""
    device = torch.device(device) if isinstance(device, str) else device
    choice = (preference or "auto").strip().lower()
    if choice == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if choice not in _DTYPE_NAMES:
        raise ModelError(f"Unknown dtype {preference!r}: use auto, float32, float16 or bfloat16.")
    return _DTYPE_NAMES[choice]
