"""Panels in, frames out: resizing panels to the video, pixels <-> tensors, and blending latents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps


def fit_panel(image: Image.Image, width: int, height: int) -> Image.Image:
    """Centre-crop to the video's aspect ratio and resize with Lanczos (SDXL panels: 1024/768 -> 512)."""
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def to_pixels(images: Sequence[Image.Image], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """RGB images -> (B, 3, H, W) in [-1, 1], what the VAE encodes."""
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return (torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0).to(device=device, dtype=dtype)


def to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB images."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(frame) for frame in array]


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation keeps the latent norm (a linear blend of two latents is too smooth, "washed out")."""
    a_flat, b_flat = a.flatten().float(), b.flatten().float()
    cos = torch.dot(a_flat / a_flat.norm(), b_flat / b_flat.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        return ((1 - t) * a.float() + t * b.float()).to(a.dtype)
    sin = torch.sin(omega)
    return ((torch.sin((1 - t) * omega) / sin) * a.float() + (torch.sin(t * omega) / sin) * b.float()).to(a.dtype)
