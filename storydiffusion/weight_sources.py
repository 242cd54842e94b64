"""What a user's name for weights is, read from the text alone: a local path or a hub id.

Light on purpose (no torch): the command line refuses a LoRA file that is not there before the model
it would be loaded into takes a minute to load.
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")


def path_shaped(name: str) -> bool:
    """Whether ``name`` reads as a local path and not a hub id: it starts like a path, holds a backslash, or
    ends like a weights file."""
    return name.startswith((".", "~", "/")) or "\\" in name or Path(name).suffix.lower() in WEIGHT_SUFFIXES


def names_nothing(name: str) -> bool:
    """Whether ``name`` can load nothing: no such file or folder, and it reads as a path or is not a hub id."""
    return not Path(name).expanduser().exists() and (path_shaped(name) or not HUB_ID.match(name))


def missing_lora_message(lora: str) -> str | None:
    """Why a LoRA named by a path that does not exist cannot load; None when it exists or may be a hub id."""
    if not names_nothing(lora):
        return None
    return f"LoRA {lora!r}: no such file or folder; give a .safetensors file, a folder holding one, or a hub id (owner/name)"
