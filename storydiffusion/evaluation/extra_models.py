"""Optional measures that need their own packages and weights: DreamSim and a face model.

Neither is a dependency. Each loads only from a local folder its user names (``--dreamsim DIR``,
``--face-model DIR``) and holding its files, so an evaluation never downloads behind the user's back;
without the package or the weights the error says what to install or where to put them. DreamSim's
published checkpoints are PyTorch pickles, read by its own package: this is for a folder the user
filled themselves on the command line, never offered in the studio.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ModelError
from ..faces import FaceEmbedder, InsightFace, face_folder, load_face_model

__all__ = [
    "DreamSim",
    "FaceEmbedder",
    "InsightFace",
    "dreamsim_folder",
    "face_folder",
    "load_dreamsim",
    "load_face_model",
]


class DreamSim:
    """DreamSim's embeddings (the ``dreamsim`` package); 1 - cosine is its distance."""

    def __init__(self, model: Any, preprocess: Any, device: str | torch.device = "cpu"):
        self.model, self.preprocess, self.device = model, preprocess, torch.device(device)
        self.name = "dreamsim"

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = torch.cat([self.preprocess(image.convert("RGB")) for image in images]).to(self.device)
        return F.normalize(self.model.embed(pixels).float().cpu(), dim=-1)


# What DreamSim's default (ensemble) model reads from its cache folder, as its first run online leaves it: its three
# backbones, its LoRA, and the DINO code and weights torch.hub put there. A file missing would be downloaded.
DREAMSIM_FILES = (
    "dino_vitb16_pretrain.pth",
    "clip_vitb16_pretrain.pth.tar",
    "open_clip_vitb16_pretrain.pth.tar",
    "ensemble_lora/adapter_config.json",
    "facebookresearch_dino_main/hubconf.py",
    "checkpoints/dino_vitbase16_pretrain.pth",
)
FILL_DREAMSIM = (
    "run `python -c \"from dreamsim import dreamsim; dreamsim(pretrained=True, cache_dir='DIR')\"` once online"
)


def dreamsim_folder(folder: str | Path) -> Path:
    """``folder`` when it holds every file DreamSim reads (its cache); a ModelError naming the first missing one
    and how to fill the folder otherwise: never a download behind the user's back."""
    path = Path(folder).expanduser()
    if not path.is_dir() or not any(path.rglob("*.pth*")):
        raise ModelError(f"--dreamsim {folder}: not a folder holding DreamSim's checkpoints (*.pth); {FILL_DREAMSIM}")
    missing = next((name for name in DREAMSIM_FILES if not (path / name).is_file()), None)
    if missing is not None:
        raise ModelError(f"--dreamsim {folder}: it holds no {missing}, which DreamSim reads; {FILL_DREAMSIM}")
    return path


def load_dreamsim(folder: str | Path, device: str | torch.device = "cpu") -> DreamSim:
    """DreamSim from the weights already in ``folder`` (its ``cache_dir``). What the package and torch.hub print
    while loading ("Using cached ...") is kept out of the command's output, where ``--json`` must stay JSON."""
    path = dreamsim_folder(folder)
    try:
        from dreamsim import dreamsim  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelError("DreamSim needs its package: pip install dreamsim") from exc
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, preprocess = dreamsim(pretrained=True, device=str(device), cache_dir=str(path))
    except Exception as exc:  # a damaged checkpoint, or a package that no longer reads this layout
        raise ModelError(f"could not load DreamSim from {folder} ({type(exc).__name__})") from exc
    return DreamSim(model, preprocess, device)
