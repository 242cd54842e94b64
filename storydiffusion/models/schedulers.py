"""Schedulers by short name, made from the loaded model's own scheduler config."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from ..errors import SettingsError, shown

# Short name -> (diffusers scheduler class name, options on top of the model's config).
SCHEDULERS = MappingProxyType(
    {
        "euler": ("EulerDiscreteScheduler", MappingProxyType({})),
        "euler-a": ("EulerAncestralDiscreteScheduler", MappingProxyType({})),
        "ddim": ("DDIMScheduler", MappingProxyType({})),
        "dpm++": ("DPMSolverMultistepScheduler", MappingProxyType({})),
        "dpm++-karras": ("DPMSolverMultistepScheduler", MappingProxyType({"use_karras_sigmas": True})),
        "unipc": ("UniPCMultistepScheduler", MappingProxyType({})),
    }
)


def check_scheduler_name(name: str, label: str = "scheduler") -> None:
    """Refuse a scheduler name that SCHEDULERS does not have, naming ``label`` (a flag or a key path)."""
    if name not in SCHEDULERS:
        raise SettingsError(f"{label}: unknown scheduler {shown(name)}; choose one of: {', '.join(SCHEDULERS)}")


def make_scheduler(name: str, config: Any) -> Any:
    """A scheduler by short name (euler, euler-a, ddim, dpm++, dpm++-karras, unipc) from the model's config."""
    import diffusers

    check_scheduler_name(name)
    class_name, options = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(config, **options)


def fresh_scheduler(name: str | None, current: Any) -> Any:
    """A new scheduler for one run: ``name``'s if given, else one more of the ``current`` kind, both from its config.

    Schedulers keep state while they step, so concurrent runs must never share one.
    """
    if name:
        return make_scheduler(name, current.config)
    return type(current).from_config(current.config)
