"""Reading an image that a user gave: one gate, with every limit checked before any pixel is decoded.

Panels in a run folder (compose, animate) and in an uploaded project come from outside this tool,
so they go through ``read_image``: the file size is checked before reading, the width and height
from the header before decoding, and every failure is an ImageInputError that names the file as
the user gave it. Any colour mode becomes RGB; an animated file (GIF, APNG, WebP) gives its first frame.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, BinaryIO, Union

import numpy as np
from PIL import Image

from .errors import ImageInputError

__all__ = [
    "IMAGE_FORMATS",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "ImageSource",
    "given_image",
    "image_size",
    "read_image",
    "to_rgb",
]

MAX_IMAGE_BYTES = 256 * 2**20  # an uncompressed 8192 x 8192 RGB PNG is 192 MiB
MAX_IMAGE_PIXELS = 8192 * 8192  # decoded as RGBA that is 256 MiB; below Pillow's own bomb warning
MAX_IMAGE_SIDE = 32768
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
WHITE = (255, 255, 255)

ImageSource = Union[str, "os.PathLike[str]", bytes]  # noqa: UP007 (a string member needs Union)


def image_size(
    source: ImageSource,
    name: str | None = None,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: tuple[str, ...] = IMAGE_FORMATS,
    max_ratio: float | None = None,
) -> tuple[int, int]:
    """(width, height) from the header alone, with the same checks as ``read_image``: cheap enough to
    look at every panel before drawing any."""
    with _open_checked(source, name, max_bytes, max_pixels, formats) as image:
        if max_ratio is not None:
            _check_ratio(image, _label(source, name), max_ratio)
        return image.size


def pixel_fingerprint(image: Image.Image) -> str:
    """A short hash of an image's size, mode and pixels: what a saved bank records of the pictures it was made with."""
    digest = hashlib.sha256(f"{image.size}{image.mode}".encode() + image.tobytes())
    return digest.hexdigest()[:16]


def read_image(
    source: ImageSource,
    name: str | None = None,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    formats: tuple[str, ...] = IMAGE_FORMATS,
    background: tuple[int, int, int] = WHITE,
    max_ratio: float | None = None,
) -> Image.Image:
    """A path or the bytes of a file as a fully loaded RGB image, or ImageInputError naming ``name``.

    ``name`` is how the user knows the file (the path they typed, an entry of their upload); it
    defaults to the path. Transparent pixels are laid over ``background``. ``max_ratio`` refuses, before
    decoding, an image whose long side is more than that many times its short side.
    """
    with _open_checked(source, name, max_bytes, max_pixels, formats) as image:
        if max_ratio is not None:
            _check_ratio(image, _label(source, name), max_ratio)
        image.load()
        return to_rgb(image, background)


def given_image(image: Any, label: str, max_ratio: float | None = None) -> Image.Image:
    """An image a caller passes in memory, held to the rules of one read from a file: a PIL image within
    the pixel limit (and ``max_ratio``), made RGB as the gate makes it (alpha over white, 16-bit greys scaled)."""
    if not isinstance(image, Image.Image):
        raise ImageInputError(
            f"{label} must be a PIL image, not {type(image).__name__}: open the file with PIL.Image.open, "
            "or name the file in the story"
        )
    _check_dimensions(image, label, MAX_IMAGE_PIXELS)
    if max_ratio is not None:
        _check_ratio(image, label, max_ratio)
    return to_rgb(image)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """A new RGB image: alpha laid over ``background``, 16-bit and float greys scaled to 8 bits."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return _grey_to_8_bits(image).convert("RGB")
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*background, 255))
        flat.alpha_composite(rgba)
        return flat.convert("RGB")
    return image.convert("RGB")


def _grey_to_8_bits(image: Image.Image) -> Image.Image:
    """Pillow's own conversion clips at 255, which turns a 16-bit photograph white."""
    values = np.asarray(image, dtype=np.float64)
    full_scale = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0.0) > 255 else 255.0
    return Image.fromarray(np.clip(values * (255.0 / full_scale) + 0.5, 0, 255).astype(np.uint8), "L")


@contextmanager
def _open_checked(
    source: ImageSource, name: str | None, max_bytes: int, max_pixels: int, formats: tuple[str, ...]
) -> Iterator[Image.Image]:
    """The image with only its header read and its size checked; errors inside become ImageInputError."""
    label = _label(source, name)
    with ExitStack() as stack:
        handle = stack.enter_context(_open_source(source, label, max_bytes))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = stack.enter_context(Image.open(handle, formats=formats))
            _check_dimensions(image, label, max_pixels)
            yield image
        except ImageInputError:
            raise
        except MemoryError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            found = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's text names its own limit too: not shown
            size = f"{int(found[1]):,} pixels, " if found and len(found[1]) < 20 else ""
            raise ImageInputError(
                f"{label}: the image has {size}more than the {max_pixels:,} pixels an image may have, "
                "refused before decoding: scale it down first"
            ) from None
        except Image.UnidentifiedImageError:
            raise ImageInputError(f"{label}: not an image this tool reads: give a {', '.join(formats)} file") from None
        except Exception as error:  # Pillow's decoders raise OSError, SyntaxError, ValueError and others
            raise ImageInputError(f"{label}: the image cannot be read ({_reason(error)})") from None


def _label(source: ImageSource, name: str | None) -> str:
    return name if name is not None else ("the image" if isinstance(source, bytes) else os.fspath(source))


def _open_source(source: ImageSource, label: str, max_bytes: int) -> BinaryIO:
    """A binary file object for the source, once its size is known to be within the limit."""
    if isinstance(source, bytes):
        _check_file_size(len(source), label, max_bytes)
        return io.BytesIO(source)
    try:
        status = os.stat(source)
    except FileNotFoundError:
        raise ImageInputError(f"{label}: no such file") from None
    except OSError as error:
        raise ImageInputError(f"{label}: cannot be read ({error.strerror or error})") from None
    if not stat.S_ISREG(status.st_mode):
        raise ImageInputError(f"{label}: not a plain file, so not an image")
    _check_file_size(status.st_size, label, max_bytes)
    try:
        return open(source, "rb")  # closed by the caller's ExitStack
    except OSError as error:
        raise ImageInputError(f"{label}: cannot be read ({error.strerror or error})") from None


def _check_file_size(size: int, label: str, max_bytes: int) -> None:
    if size == 0:
        raise ImageInputError(f"{label}: the file is empty (0 bytes), not an image")
    if size > max_bytes:
        raise ImageInputError(f"{label}: the file is {_mib(size)}, larger than the {_mib(max_bytes)} an image may be")


def _check_dimensions(image: Image.Image, label: str, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageInputError(f"{label}: the image is {width} x {height} pixels: it has no pixels")
    if width * height > max_pixels or max(width, height) > MAX_IMAGE_SIDE:
        raise ImageInputError(
            f"{label}: the image is {width} x {height} pixels, more than the {max_pixels:,} pixels "
            f"(and {MAX_IMAGE_SIDE} per side) an image may have, refused before decoding: scale it down first"
        )


def _check_ratio(image: Image.Image, label: str, max_ratio: float) -> None:
    width, height = image.size
    if max(width, height) > max_ratio * min(width, height):
        raise ImageInputError(
            f"{label}: the image is {width} x {height} pixels, a long side more than {max_ratio:g} times the short "
            "one: crop it closer to the picture's shape"
        )


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"the file is cut short: {text}" if "truncated" in text else text


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
