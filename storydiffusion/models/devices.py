"""Where the weights live: the device, the dtype, and how to ask diffusers for that dtype."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch

from ..errors import ModelError

# diffusers 0.42 renamed from_pretrained's ``torch_dtype`` to ``dtype`` (the old name warns).
DTYPE_KEYWORD_SINCE = (0, 42)

DTYPE_NAMES = MappingProxyType(
    {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "half": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
)


def dtype_kwargs(torch_dtype: torch.dtype | None) -> dict[str, Any]:
    """The dtype keyword for diffusers' ``from_pretrained`` / ``from_single_file`` in the installed version.

    ``{"dtype": ...}`` from diffusers 0.42 on, ``{"torch_dtype": ...}`` before; ``{}`` for None.
    """
    if torch_dtype is None:
        return {}
    import diffusers
    from packaging.version import Version

    key = "dtype" if Version(diffusers.__version__).release >= DTYPE_KEYWORD_SINCE else "torch_dtype"
    return {key: torch_dtype}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _check_available(device: torch.device, preference: str) -> torch.device:
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
    if device.type == "cpu" and device.index not in (None, 0):  # torch takes cpu:5 and ignores the number
        raise ModelError(
            f"Unknown device {preference!r}: the CPU has no number, use cpu (--devices cpu:N runs N processes)"
        )
    return _check_available(device, preference)


def select_dtype(device: torch.device | str, preference: str | torch.dtype = "auto") -> torch.dtype:
    """Weight dtype for ``device``: ``auto`` is float16 on cuda/mps (memory, speed) and float32 on cpu (fp16 is slow
    or unsupported there). A ``torch.dtype`` (``torch.float16``) is taken as its name."""
    device = torch.device(device) if isinstance(device, str) else device
    if isinstance(preference, torch.dtype):
        preference = str(preference).removeprefix("torch.")
    if preference is not None and not isinstance(preference, str):
        raise ModelError(f"Unknown dtype {preference!r}: use auto, float32, float16 or bfloat16.")
    choice = (preference or "auto").strip().lower()
    if choice == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if choice not in DTYPE_NAMES:
        raise ModelError(f"Unknown dtype {preference!r}: use auto, float32, float16 or bfloat16.")
    return DTYPE_NAMES[choice]


def place_pipeline(
    pipe: Any,
    device: torch.device,
    *,
    cpu_offload: bool = False,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
) -> Any:
    """Move ``pipe`` to ``device`` (or offload it to the CPU between uses, on CUDA) and set the VAE's memory options."""
    if cpu_offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    if vae_slicing:
        pipe.vae.enable_slicing()
    if vae_tiling:
        pipe.vae.enable_tiling()
    return pipe
