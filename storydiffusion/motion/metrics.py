"""Transition metrics of the StoryDiffusion paper: LPIPS-first, LPIPS-frames, CLIPSIM-first, CLIPSIM-frames.

* ``*-first``: the first frame against every later frame (frames 1..L-1), averaged: how far the
  video drifts from its start (content consistency).
* ``*-frames``: each frame against the next one (L-1 pairs), averaged: how smooth the motion is.

LPIPS is a distance (lower = more similar); CLIPSIM is the cosine similarity of pooled CLIP image
embeddings in [-1, 1] (higher = more similar; multiply by 100 for the percentage some papers print).

The LPIPS formula is implemented here (``PerceptualDistance``) so that any backbone serves: the
published AlexNet weights through the ``lpips`` package (``lpips_network``) when installed and its
weights are available, or an injected network, e.g. ``TinyPerceptualNet`` in offline tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from ..errors import StoryDiffusionError

Frames = Sequence[Image.Image] | torch.Tensor
Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MetricError(StoryDiffusionError, ValueError):
    """A metric cannot be computed (too few frames, sizes differ, no perceptual network)."""


class PooledEncoder(Protocol):
    def encode_pooled(self, images): ...


def frames_to_tensor(frames: Frames) -> torch.Tensor:
    """(L, 3, H, W) float32 in [-1, 1], the input range of LPIPS networks, from PIL frames or such a tensor."""
    if isinstance(frames, torch.Tensor):
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise MetricError(f"frames tensor must be (L, 3, H, W) in [-1, 1], got {tuple(frames.shape)}")
        return frames.float()
    arrays = [np.asarray(frame.convert("RGB"), dtype=np.float32) for frame in frames]
    if len({a.shape for a in arrays}) > 1:
        raise MetricError("all frames must have the same size")
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked / 127.5 - 1.0


def _check_count(count: int, name: str) -> None:
    if count < 2:
        raise MetricError(f"{name} needs at least 2 frames, got {count}")


class PerceptualDistance(torch.nn.Module):
    """The LPIPS distance over any feature backbone.

    d(x, y) = sum_l mean_hw sum_c w_lc (x̂_lhwc - ŷ_lhwc)^2, where x̂ is layer l's features
    unit-normalised over channels and w_l >= 0 are per-channel weights (all ones when not given,
    which is LPIPS without its learned linear layer).
    """

    def __init__(self, backbone: torch.nn.Module, weights: Sequence[torch.Tensor] | None = None, eps: float = 1e-10):
        super().__init__()
        self.backbone = backbone
        self.eps = eps
        if weights is not None:
            for i, w in enumerate(weights):
                if (torch.as_tensor(w) < 0).any():
                    raise MetricError(f"LPIPS layer weights must be non-negative (layer {i})")
            self.weights = torch.nn.ParameterList(
                [
                    torch.nn.Parameter(torch.as_tensor(w, dtype=torch.float32).flatten(), requires_grad=False)
                    for w in weights
                ]
            )
        else:
            self.weights = None

    def _normalise(self, features: torch.Tensor) -> torch.Tensor:
        norm = torch.sqrt(torch.sum(features**2, dim=1, keepdim=True))
        return features / (norm + self.eps)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances (B,) between two batches of images in [-1, 1]."""
        fx, fy = self.backbone(x), self.backbone(y)
        if self.weights is not None and len(self.weights) != len(fx):
            raise MetricError(f"{len(self.weights)} layer weights for {len(fx)} backbone layers")
        total = torch.zeros(x.shape[0], dtype=torch.float32, device=x.device)
        for layer, (a, b) in enumerate(zip(fx, fy)):
            difference = (self._normalise(a.float()) - self._normalise(b.float())) ** 2
            if self.weights is not None:
                difference = difference * self.weights[layer].to(difference.device).view(1, -1, 1, 1)
            total = total + difference.sum(dim=1).mean(dim=(1, 2))
        return total


class TinyPerceptualNet(torch.nn.Module):
    """A small deterministic conv network (fixed seeded weights) returning two feature maps.

    Not a perceptual model: it lets tests and offline demos exercise the LPIPS formula exactly.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) / math.sqrt(fan_in))
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = torch.relu(self.conv1(x))
        return [first, torch.relu(self.conv2(first))]


def tiny_lpips(seed: int = 0) -> PerceptualDistance:
    """LPIPS formula over ``TinyPerceptualNet`` with unit weights: offline, for tests."""
    return PerceptualDistance(TinyPerceptualNet(seed))


def lpips_network(net: str = "alex", device: str | torch.device = "cpu") -> Distance:
    """The published LPIPS model (``pip install lpips``; it fetches torchvision's backbone weights once).

    Returns a callable ``(x, y) -> (B,)`` on images in [-1, 1].
    """
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError as exc:
        raise MetricError("LPIPS needs the `lpips` package: pip install lpips (or pass your own network)") from exc
    try:
        model = lpips.LPIPS(net=net, verbose=False).to(device).eval()
    except Exception as exc:  # torchvision downloads the backbone weights: offline this fails
        raise MetricError(
            f"could not load the LPIPS {net} network ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "it needs the torchvision backbone weights once (internet), or pass your own network"
        ) from exc

    @torch.no_grad()
    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model(x.to(device), y.to(device)).flatten().float().cpu()

    return distance


def _pairs_distance(net: Distance, a: torch.Tensor, b: torch.Tensor, batch: int) -> torch.Tensor:
    values = [net(a[i : i + batch], b[i : i + batch]).flatten().float().cpu() for i in range(0, a.shape[0], batch)]
    return torch.cat(values)


def lpips_first(frames: Frames, net: Distance, batch: int = 8) -> float:
    """Mean LPIPS between the first frame and each later frame (lower: closer to the start)."""
    images = frames_to_tensor(frames)
    _check_count(images.shape[0], "LPIPS-first")
    later = images[1:]
    first = images[:1].expand_as(later)
    return float(_pairs_distance(net, first, later, batch).mean())


def lpips_frames(frames: Frames, net: Distance, batch: int = 8) -> float:
    """Mean LPIPS between adjacent frames (lower: smoother)."""
    images = frames_to_tensor(frames)
    _check_count(images.shape[0], "LPIPS-frames")
    return float(_pairs_distance(net, images[:-1], images[1:], batch).mean())


def _embeddings(frames: Sequence[Image.Image], encoder: PooledEncoder) -> torch.Tensor:
    if isinstance(frames, torch.Tensor):
        raise MetricError("CLIPSIM takes PIL frames (the encoder does its own preprocessing)")
    embeddings = torch.as_tensor(encoder.encode_pooled(list(frames))).float()
    if embeddings.dim() != 2 or embeddings.shape[0] != len(frames):
        raise MetricError(f"encode_pooled must return (frames, dim), got {tuple(embeddings.shape)}")
    return torch.nn.functional.normalize(embeddings, dim=-1)


def clipsim_first(frames: Sequence[Image.Image], encoder: PooledEncoder) -> float:
    """Mean cosine similarity of the first frame's CLIP embedding with each later frame's (higher: closer)."""
    _check_count(len(frames), "CLIPSIM-first")
    e = _embeddings(frames, encoder)
    return float((e[1:] @ e[0]).mean())


def clipsim_frames(frames: Sequence[Image.Image], encoder: PooledEncoder) -> float:
    """Mean cosine similarity of adjacent frames' CLIP embeddings (higher: smoother)."""
    _check_count(len(frames), "CLIPSIM-frames")
    e = _embeddings(frames, encoder)
    return float((e[:-1] * e[1:]).sum(dim=-1).mean())


def transition_metrics(
    frames: Sequence[Image.Image], net: Distance | None = None, encoder: PooledEncoder | None = None
) -> dict[str, float]:
    """All four metrics that the given networks allow, keyed as in the paper."""
    result: dict[str, float] = {}
    if net is not None:
        result["LPIPS-first"] = lpips_first(frames, net)
        result["LPIPS-frames"] = lpips_frames(frames, net)
    if encoder is not None:
        result["CLIPSIM-first"] = clipsim_first(frames, encoder)
        result["CLIPSIM-frames"] = clipsim_frames(frames, encoder)
    return result
