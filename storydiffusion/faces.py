"""Faces: InsightFace's detector and recognition model, for face similarity (``evaluate --face-model``) and
for IP-Adapter FaceID (``reference_adapter: face``), and a tiny stand-in for the tiny offline models.

InsightFace is not a dependency. Its model pack (``buffalo_l``: ONNX files) loads only from a local folder
the operator names, never downloaded behind anyone's back; without the package or the pack the error says
what to install or where to put it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ModelError

TINY_FACE_DIM = 32  # the tiny face embedding's width
INSIGHTFACE_DIM = 512  # InsightFace's recognition models' embedding width


class FaceEmbedder(Protocol):
    """Per image the identity embedding of its largest face, or None when no face is found."""

    name: str
    width: int  # the embedding's length

    def embed_faces(self, images: Sequence[Image.Image]) -> list[torch.Tensor | None]: ...


class InsightFace:
    """InsightFace's detector and recognition model (an ONNX model pack such as ``buffalo_l``)."""

    width = INSIGHTFACE_DIM

    def __init__(self, app: Any, name: str):
        self.app, self.name = app, name

    def embed_faces(self, images: Sequence[Image.Image]) -> list[torch.Tensor | None]:
        found: list[torch.Tensor | None] = []
        for image in images:
            bgr = np.asarray(image.convert("RGB"))[:, :, ::-1].copy()
            with warnings.catch_warnings():  # its alignment's deprecation notes, once per face: not the user's
                warnings.simplefilter("ignore", FutureWarning)
                faces = self.app.get(bgr)
            if not faces:
                found.append(None)
                continue
            largest = max(faces, key=lambda face: (face.bbox[2] - face.bbox[0]) * (face.bbox[3] - face.bbox[1]))
            found.append(torch.as_tensor(np.asarray(largest.normed_embedding), dtype=torch.float32))
        return found


class TinyFaceEmbedder:
    """The tiny models' face model: every picture is one face, embedded by a fixed random projection of its
    pixels (unit length, ``TINY_FACE_DIM`` wide). Random weights like the tiny models: it proves the path."""

    name, width = "tiny-face", TINY_FACE_DIM

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.projection = torch.randn(16 * 16 * 3, TINY_FACE_DIM, generator=generator)

    def embed_faces(self, images: Sequence[Image.Image]) -> list[torch.Tensor | None]:
        found: list[torch.Tensor | None] = []
        for image in images:
            pixels = np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)
            vector = torch.from_numpy(pixels.reshape(-1) / 127.5 - 1.0) @ self.projection
            found.append(F.normalize(vector, dim=0))
        return found


def face_folder(folder: str | Path) -> Path:
    """``folder`` when it holds ONNX models; a ModelError saying what it should hold otherwise."""
    path = Path(folder).expanduser().resolve()
    if not path.is_dir() or not list(path.glob("*.onnx")) or path.parent.name != "models":
        raise ModelError(
            f"--face-model {folder}: not a folder of InsightFace .onnx models inside a 'models' folder (a pack "
            "such as ~/.insightface/models/buffalo_l, downloaded once online)"
        )
    return path


def load_face_model(folder: str | Path) -> InsightFace:
    """InsightFace's model pack in ``folder`` (``.../models/buffalo_l``, its ``.onnx`` files), on the CPU."""
    path = face_folder(folder)
    try:
        from insightface.app import FaceAnalysis  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelError("the face model needs InsightFace: pip install insightface onnxruntime") from exc
    try:
        app = FaceAnalysis(
            name=path.name,
            root=str(path.parent.parent),
            providers=["CPUExecutionProvider"],
            allowed_modules=["detection", "recognition"],  # not the pack's age, gender or landmark models
        )
        app.prepare(ctx_id=-1, det_size=(640, 640))
    except Exception as exc:
        raise ModelError(f"could not load the face models in {folder} ({type(exc).__name__})") from exc
    return InsightFace(app, f"insightface:{path.name}")


def check_face_model(folder: str | Path | None, tiny: bool) -> None:
    """Before any model loads: what ``face_embedder`` would refuse (no face model for a real model, a folder
    that is not a pack, InsightFace not installed), without loading anything."""
    if folder is None:
        if not tiny:
            face_embedder(None)
        return
    face_folder(folder)
    import importlib.util

    if importlib.util.find_spec("insightface") is None or importlib.util.find_spec("onnxruntime") is None:
        raise ModelError("the face model needs InsightFace: pip install insightface onnxruntime")


def face_embedder(folder: str | Path | None, tiny: bool = False) -> FaceEmbedder:
    """The face model IP-Adapter FaceID is steered with: the operator's InsightFace pack, else for the tiny
    models the tiny stand-in (ModelError naming ``--face-model`` for a real model without one)."""
    if tiny and folder is None:
        return TinyFaceEmbedder()
    if folder is None:
        raise ModelError(
            "reference_adapter: face needs InsightFace's face models: pass --face-model DIR (a pack such as "
            "~/.insightface/models/buffalo_l, downloaded once online), or use reference_adapter: image"
        )
    return load_face_model(folder)
