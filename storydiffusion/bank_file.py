"""Reading an identity bank file: each part of a safetensors bank checked before use, so that a damaged or
hand-made file is refused naming what is wrong (``ValueError``; ``IdentityBank.load`` names the file)."""

from __future__ import annotations

import json
import re
from typing import Any

import torch

from .bank_disk import Key

__all__ = [
    "BANK_FORMAT",
    "characters_field",
    "descriptions_field",
    "check_layout",
    "checked_tokens",
    "metadata_field",
    "token_key",
]

BANK_FORMAT = "storydiffusion-identity-bank/1"
_TOKEN_KEY = re.compile(r"-?[0-9]{1,9}\.[0-9]{1,6}\.[0-9]{1,6}")


def check_layout(
    tokens_by_key: dict[Key, torch.Tensor],
    signature: dict[str, Any],
    characters: dict[str, list[int]],
    subject_samples: bool,
) -> None:
    """Every source holds the same steps and layers, each layer one shape, each character real sources:
    a bank with holes would fail half-way through a run instead of before it."""
    grid: dict[int, set[tuple[int, int]]] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    for (source, step, layer), tokens in tokens_by_key.items():
        grid.setdefault(source, set()).add((step, layer))
        shape = tuple(tokens.shape) if not subject_samples else (tokens.shape[0], tokens.shape[2])
        if shapes.setdefault(layer, shape) != shape:
            raise ValueError(f"layer {layer} holds tokens of shapes {shapes[layer]} and {shape}")
    if len({frozenset(keys) for keys in grid.values()}) > 1:
        raise ValueError("its identity images do not all hold the same steps and layers")
    halves = {shape[0] for shape in shapes.values()}
    if "cfg" in signature and halves and halves != {2 if signature["cfg"] else 1}:
        raise ValueError(f"its tokens have {halves.pop()} guidance halves, its settings say otherwise")
    for name, sources in characters.items():
        if not sources or not set(sources) <= set(grid):
            raise ValueError(f"character {name!r} names identity images the bank does not hold")


def metadata_field(metadata: dict[str, str], name: str, default: str | None = None) -> dict[str, Any]:
    text = metadata.get(name, default)
    if text is None:
        raise ValueError(f"it has no {name}")
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"its {name} is not a mapping")
    return value


def descriptions_field(value: Any) -> dict[str, str]:
    """The descriptions a bank's characters were drawn from (name -> text); checked like every field."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("its descriptions are not texts by character name")
    return dict(value)


def characters_field(value: dict[str, Any]) -> dict[str, list[int]]:
    if not all(isinstance(s, list) and all(type(i) is int for i in s) for s in value.values()):
        raise ValueError("its characters are not lists of identity image numbers")
    return {str(name): list(sources) for name, sources in value.items()}


def token_key(key: str) -> tuple[int, int, int]:
    """``"3.12.40"``: source image, step, layer."""
    if not _TOKEN_KEY.fullmatch(key):
        raise ValueError(f"tensor {key[:40]!r} is not named source.step.layer")
    source, step, layer = (int(part) for part in key.split("."))
    return source, step, layer


def checked_tokens(tokens: torch.Tensor, key: str) -> torch.Tensor:
    """(halves, sampled, channels) floats: what ``put`` stores, whatever float width it was saved in."""
    if not tokens.is_floating_point():
        raise ValueError(f"tensor {key!r} holds {str(tokens.dtype).removeprefix('torch.')}, not floating-point tokens")
    if tokens.dim() != 3 or tokens.shape[0] not in (1, 2) or 0 in tokens.shape:
        raise ValueError(f"tensor {key!r} has shape {tuple(tokens.shape)}, not (halves, sampled tokens, channels)")
    if not torch.isfinite(tokens).all():
        raise ValueError(f"tensor {key!r} holds NaN or infinite values")
    return tokens
