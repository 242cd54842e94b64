"""Writing an animation as MP4 (h264) and GIF, atomically: a reader never sees half a video."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_path, atomic_write_bytes
from ..errors import StoryDiffusionError


class ExportError(StoryDiffusionError):
    """A video or GIF could not be written (no frames, bad fps, ffmpeg failure)."""


def _check(frames: Sequence[Image.Image], fps: float) -> None:
    if not frames:
        raise ExportError("no frames to write: an animation needs at least one frame")
    if not fps or fps <= 0:
        raise ExportError(f"fps must be positive, got {fps}")


def _even_rgb(image: Image.Image) -> np.ndarray:
    """RGB array with even width and height (h264 in yuv420p needs them), padding by edge replication."""
    array = np.asarray(image.convert("RGB"))
    height, width = array.shape[:2]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return array


def write_mp4(frames: Sequence[Image.Image], path: str | os.PathLike, fps: float = 8, quality: int = 8) -> Path:
    """H.264 MP4 in yuv420p (plays in browsers and phones), through the ffmpeg that imageio-ffmpeg bundles.

    ffmpeg writes to a temporary name beside ``path`` (``atomic_path``), renamed into place only
    when complete.
    """
    _check(frames, fps)
    import imageio.v2 as imageio

    path = Path(path)
    first = _even_rgb(frames[0])
    try:
        with atomic_path(path) as temporary:
            writer = imageio.get_writer(
                str(temporary),
                format="FFMPEG",
                mode="I",
                fps=float(fps),
                codec="libx264",
                pixelformat="yuv420p",
                quality=quality,
                macro_block_size=1,  # sizes are made even here; no silent resizing to multiples of 16
                ffmpeg_log_level="error",
                output_params=["-movflags", "+faststart", "-f", "mp4"],
            )
            try:
                for frame in frames:
                    array = _even_rgb(frame)
                    if array.shape != first.shape:
                        raise ExportError(
                            f"frames differ in size: {array.shape[1]}x{array.shape[0]} "
                            f"vs {first.shape[1]}x{first.shape[0]}"
                        )
                    writer.append_data(array)
            finally:
                writer.close()
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(
            f"could not write {path} with ffmpeg: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc
    return path


def write_gif(frames: Sequence[Image.Image], path: str | os.PathLike, fps: float = 8) -> Path:
    """Looping GIF written with Pillow (adaptive palette per frame); encoded in memory, then written atomically.

    GIF timing is in centiseconds, so the frame duration is rounded; Pillow merges consecutive
    identical frames into one longer frame.
    """
    _check(frames, fps)
    images = [frame.convert("RGB") for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, int(round(1000.0 / fps))),
        loop=0,  # forever
        disposal=1,
    )
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
