"""The model registry: the named models of ``configs/models.yaml`` and the defaults that suit them.

A story that sets no steps, guidance or size is drawn with its model's defaults; models outside the
registry (local folders, checkpoints, hub ids) get the defaults of their family.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import ModelError
from ..resources import data_path
from ..weight_sources import names_nothing, path_shaped, pickled_model_message

FAMILIES = ("sdxl", "sd15")
REQUIRED_KEYS = ("source", "family", "steps", "guidance", "height", "width")

# (steps, guidance, height, width) for models that are not in the registry.
FAMILY_DEFAULTS = MappingProxyType(
    {
        "sdxl": (30, 5.0, 768, 768),
        "sd15": (30, 7.0, 512, 512),
    }
)


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


def registry_file() -> Path:
    """The packaged ``configs/models.yaml``."""
    return data_path("configs", "models.yaml")


def check_family(family: Any, where: str) -> str:
    """``family`` as a string, or a ModelError naming ``where`` the unsupported family came from."""
    if family not in FAMILIES:
        raise ModelError(f"{where}: family {family!r} is not supported; use one of {', '.join(FAMILIES)}.")
    return str(family)


def family_spec(name: str, source: str, family: str, description: str = "") -> ModelSpec:
    """A ModelSpec with the family's default settings, for models that are not in the registry."""
    family = check_family(family, f"model {name}")
    steps, guidance, height, width = FAMILY_DEFAULTS[family]
    return ModelSpec(name, source, family, steps, guidance, height, width, description)


def _read_registry_file(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"Cannot read the model registry {path}: {exc}") from exc


def _spec_from_entry(name: str, entry: Any, where: str) -> ModelSpec:
    if not isinstance(entry, dict):
        raise ModelError(f"{where} must be a mapping of settings.")
    missing = [key for key in REQUIRED_KEYS if key not in entry]
    if missing:
        raise ModelError(f"{where} lacks {', '.join(missing)}.")
    unknown = set(entry) - {field.name for field in dataclasses.fields(ModelSpec)}
    if unknown:
        raise ModelError(f"{where} has unknown keys {', '.join(sorted(unknown))}.")
    try:
        return ModelSpec(
            name=name,
            source=str(entry["source"]),
            family=check_family(entry["family"], where),
            steps=int(entry["steps"]),
            guidance=float(entry["guidance"]),
            height=int(entry["height"]),
            width=int(entry["width"]),
            description=str(entry.get("description") or ""),
            variant=None if entry.get("variant") is None else str(entry["variant"]),
        )
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where} has a bad value: {exc}") from exc


def load_model_registry(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Named models and their defaults from ``configs/models.yaml`` (or ``path``), so users can say ``--model sd15``."""
    path = Path(path) if path is not None else registry_file()
    data = _read_registry_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict) or not data["models"]:
        raise ModelError(f"The model registry {path} needs a non-empty `models:` mapping.")
    registry = {
        str(name): _spec_from_entry(str(name), entry, f"{path.name}: model {name!r}")
        for name, entry in data["models"].items()
    }
    default = data.get("default")
    if default is not None and default not in registry:
        raise ModelError(f"{path.name}: default {default!r} is not one of {', '.join(registry)}.")
    return registry


def default_model_name(registry: dict[str, ModelSpec] | None = None, path: str | Path | None = None) -> str:
    """The model used when none is named: the ``default:`` key of the registry file (else its first entry)."""
    registry = registry if registry is not None else load_model_registry(path)
    try:
        default = (_read_registry_file(Path(path) if path is not None else registry_file()) or {}).get("default")
    except (ModelError, AttributeError):
        default = None
    if default in registry:
        return str(default)
    return next(iter(registry))


def check_model_name(model: str, registry: dict[str, ModelSpec]) -> None:
    """Refuse a name that is not a registry entry, an existing folder or file, or a plausible hub id.

    Light on purpose (no torch): the command line refuses a misspelt ``--model`` in a moment, not after
    the libraries that would load it have been imported."""
    if model in registry:
        return
    pickled = pickled_model_message(model)
    if pickled is not None:
        raise ModelError(pickled)
    if not names_nothing(model):
        return
    if path_shaped(model):
        raise ModelError(
            f"Model {model!r} looks like a path but no such file or folder exists. "
            f"Pass a diffusers folder, a .safetensors checkpoint or a registry name ({', '.join(registry)})."
        )
    raise ModelError(
        f"Unknown model {model!r}: not a registry name ({', '.join(registry)}), "
        "not an existing folder or .safetensors file, and not a hub id of the form owner/name."
    )
