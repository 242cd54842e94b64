"""Optional measures that need their own packages and weights: DreamSim and a face model.

Neither is a dependency. Each loads only from a local folder its user names (``--dreamsim DIR``,
``--face-model DIR``) and holding its files, so an evaluation never downloads behind the user's back;
without the package or the weights the error says what to install or where to put them. DreamSim's
published checkpoints are PyTorch pickles, read by its own package: this is for a folder the user
filled themselves on the command line, never offered in the studio.
"""

from __future__ import annotations

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


def dreamsim_folder(folder: str | Path) -> Path:
    """``folder`` when it holds files (DreamSim's cache); a ModelError saying how to fill one otherwise."""
    path = Path(folder).expanduser()
    if not path.is_dir() or not any(path.rglob("*.pth*")):
        raise ModelError(
            f"--dreamsim {folder}: not a folder holding DreamSim's checkpoints (*.pth); run "
            "`python -c \"from dreamsim import dreamsim; dreamsim(pretrained=True, cache_dir='DIR')\"` once online"
        )
    return path


def load_dreamsim(folder: str | Path, device: str | torch.device = "cpu") -> DreamSim:
    """DreamSim from the weights already in ``folder`` (its ``cache_dir``)."""
    path = dreamsim_folder(folder)
    try:
        from dreamsim import dreamsim  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelError("DreamSim needs its package: pip install dreamsim") from exc
    try:
        model, preprocess = dreamsim(pretrained=True, device=str(device), cache_dir=str(path))
    except Exception as exc:  # the package downloads what is missing: offline that fails
        raise ModelError(f"could not load DreamSim from {folder} ({type(exc).__name__})") from exc
    return DreamSim(model, preprocess, device)
