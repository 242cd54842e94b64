"""Video clips for training the motion predictor: reading frames, sampling clips, cached embeddings.

Every frame of every video is encoded once (under no_grad) and only the selected tokens are kept in
memory, so a training step costs a few tensor lookups, not a CLIP forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ..errors import StoryDiffusionError
from .encoder import ClipImageEncoder
from .predictor import select_tokens

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".gif", ".avi", ".mkv")


class VideoDataError(StoryDiffusionError, ValueError):
    """A video folder or file cannot be used for training."""


def list_videos(folder: str | Path) -> list[Path]:
    """Video files directly under ``folder`` and its subfolders, sorted for reproducibility."""
    root = Path(folder)
    if not root.is_dir():
        raise VideoDataError(f"Video folder {root} does not exist; pass a folder of {', '.join(VIDEO_SUFFIXES)} files.")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def read_frames(path: str | Path, max_frames: int | None = None) -> list[Image.Image]:
    """Decode a video's frames as RGB images (imageio v3; ffmpeg for mp4/webm/mov/avi, pillow for gif)."""
    import imageio.v3 as iio

    path = Path(path)
    frames: list[Image.Image] = []
    try:
        for array in iio.imiter(path):
            if array.ndim == 2:
                array = array[..., None].repeat(3, axis=-1)
            frames.append(Image.fromarray(array[..., :3]).convert("RGB"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    except Exception as exc:  # imageio raises plugin-specific errors
        raise VideoDataError(
            f"Cannot read video {path}: {exc}. Check the file plays; mp4/webm/mov/avi need imageio-ffmpeg "
            "(pip install imageio imageio-ffmpeg)."
        ) from exc
    if not frames:
        raise VideoDataError(f"Video {path} has no frames.")
    return frames


def sample_clip(num_frames: int | Sequence[object], length: int, generator: torch.Generator) -> list[int]:
    """``length`` evenly spaced frame indices: random start, random integer stride, so the spacing is exact.

    The stride is drawn from 1..(num_frames-1)//(length-1), so clips cover small and large motions.
    """
    count = num_frames if isinstance(num_frames, int) else len(num_frames)
    if length < 2:
        raise ValueError("a clip needs at least 2 frames")
    max_stride = (count - 1) // (length - 1)
    if max_stride < 1:
        raise VideoDataError(f"a clip of {length} frames needs a video of at least {length} frames, got {count}")
    stride = int(torch.randint(1, max_stride + 1, (1,), generator=generator))
    span = stride * (length - 1)
    first = int(torch.randint(0, count - span, (1,), generator=generator))
    return [first + i * stride for i in range(length)]


@torch.no_grad()
def encode_video(
    frames: Sequence[Image.Image], encoder: ClipImageEncoder, tokens: int, selection: str, batch_size: int = 32
) -> torch.Tensor:
    """All frames -> (F, tokens, D) selected token embeddings on the CPU (float32)."""
    chunks = []
    for i in range(0, len(frames), batch_size):
        chunks.append(select_tokens(encoder.encode(list(frames[i : i + batch_size])), tokens, selection).cpu())
    return torch.cat(chunks)


class MotionClipDataset(torch.utils.data.Dataset):
    """Samples (start, end, target) clips of ``frames`` frames from videos whose embeddings are cached.

    Item ``i`` is drawn with a generator seeded from (seed, i), so a given index always gives the
    same clip: training batches then depend only on the step, which makes resuming exact.
    """

    def __init__(
        self,
        embeddings: list[torch.Tensor],
        frames: int,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        reverse: bool = True,
        names: list[str] | None = None,
    ):
        usable = [(i, e) for i, e in enumerate(embeddings) if e.shape[0] >= frames]
        if not usable:
            raise VideoDataError(f"No video has the {frames} frames a clip needs; lower --frames or add longer videos.")
        self.embeddings = [e for _, e in usable]
        self.names = [names[i] for i, _ in usable] if names else [str(i) for i, _ in usable]
        self.skipped = len(embeddings) - len(usable)
        self.frames = frames
        self.seed = seed
        self.reverse = reverse
        self.samples_per_epoch = samples_per_epoch or 64 * len(self.embeddings)

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        encoder: ClipImageEncoder,
        frames: int,
        tokens: int,
        selection: str = "cls+pooled",
        max_video_frames: int | None = 256,
        seed: int = 0,
        progress: bool = False,
    ) -> MotionClipDataset:
        """Read and encode every video of ``folder`` once."""
        paths = list_videos(folder)
        if not paths:
            raise VideoDataError(f"No videos ({', '.join(VIDEO_SUFFIXES)}) found in {folder}.")
        from tqdm.auto import tqdm

        # The bar is closed on an error too, so the command's message starts a line of its own.
        with tqdm(paths, desc="encoding videos", unit="video", disable=not progress) as bar:
            embeddings = [encode_video(read_frames(p, max_video_frames), encoder, tokens, selection) for p in bar]
        return cls(embeddings, frames, seed=seed, names=[p.name for p in paths])

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(start (N, D), end (N, D), target (frames, N, D)); target[0] == start and target[-1] == end."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        video = self.embeddings[int(torch.randint(0, len(self.embeddings), (1,), generator=generator))]
        indices = sample_clip(video.shape[0], self.frames, generator)
        if self.reverse and bool(torch.rand((), generator=generator) < 0.5):
            indices = indices[::-1]  # motion played backwards is motion too
        target = video[indices]
        return target[0], target[-1], target

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stack the items ``indices`` into (B, N, D), (B, N, D), (B, frames, N, D)."""
        items = [self[i] for i in indices]
        return tuple(torch.stack(parts) for parts in zip(*items))  # type: ignore[return-value]
