"""What a user's name for weights is, read from the text alone: a local path or a hub id.

Light on purpose (no torch): the command line refuses a LoRA file that is not there before the model
it would be loaded into takes a minute to load.
"""

from __future__ import annotations

import re
from pathlib import Path

PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl", ".pickle")
SAFE_SUFFIX = ".safetensors"
DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers' save_lora_weights writes
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


def pickled_weights(folder: str | Path) -> str | None:
    """The first weights file of a diffusers folder that only a pickle loader reads (``.bin``, ``.ckpt``, ...),
    in a part (the folder or one of its component folders) that has no ``.safetensors`` beside it; None when
    every part with weights has safetensors. Such a file can run code as it is read, so it never is."""
    root = Path(folder).expanduser()
    for part in [root, *sorted(child for child in root.iterdir() if child.is_dir())]:
        files = [child for child in part.iterdir() if child.is_file()]
        pickles = sorted(child for child in files if child.suffix.lower() in PICKLE_SUFFIXES)
        if pickles and not any(child.suffix.lower() == SAFE_SUFFIX for child in files):
            return pickles[0].relative_to(root).as_posix()
    return None


def pickled_model_message(model: str) -> str | None:
    """Why a local diffusers folder given as a model is refused unread, or None (not a folder, or safe)."""
    path = Path(model).expanduser()
    found = pickled_weights(path) if path.is_dir() else None
    if found is None:
        return None
    return (
        f"Model {model!r}: {found} is a pickle (only .safetensors weights are read, since a pickle can run code "
        "as it loads); save the pipeline again with `pipe.save_pretrained(folder)`, which writes .safetensors"
    )


def lora_weights_file(lora: str) -> tuple[str | None, str | None]:
    """For a local LoRA: the ``weight_name`` to load from a folder (None for a file or a hub id), and why it is
    refused unread, or None. Only ``.safetensors`` is read (a ``.bin`` or ``.ckpt`` is a pickle, which can run
    code); a folder must hold one, or the one diffusers saves, so that no other file is taken for it."""
    path = Path(lora).expanduser()
    if path.is_file():
        if path.suffix.lower() != SAFE_SUFFIX:
            return None, (
                f"LoRA {lora!r}: only .safetensors files are read ({path.suffix or 'a file without a suffix'} may be "
                "a pickle, which can run code as it loads); convert it to .safetensors"
            )
        return None, None
    if not path.is_dir():
        return None, None
    safe = sorted(child.name for child in path.iterdir() if child.is_file() and child.suffix.lower() == SAFE_SUFFIX)
    if DIFFUSERS_LORA_FILE in safe:
        return DIFFUSERS_LORA_FILE, None
    if len(safe) == 1:
        return safe[0], None
    if not safe:
        return None, f"LoRA {lora!r}: the folder holds no .safetensors file (only .safetensors weights are read)"
    return None, f"LoRA {lora!r}: the folder holds {len(safe)} .safetensors files; give the LoRA's file itself"
