"""One panel image into one cell: centre crop (fills the cell) or letterbox (shows all of it).

The aspect ratio is always kept, and resampling is Lanczos: panels are usually scaled down a lot
(1024 px into a cell of a few hundred), where cheap filters alias fine lines and lettering-like detail.
"""

from __future__ import annotations

from PIL import Image

from ..errors import shown
from . import LayoutError

__all__ = ["fit_image", "FIT_MODES"]

FIT_MODES = ("crop", "letterbox")
# Pillow first shrinks by whole factors with a box filter while the image stays this many times
# larger than needed, then finishes with Lanczos: much faster for 1024 -> 300 px, visually the same.
_REDUCING_GAP = 3.0


def _rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """RGB, with any transparency flattened onto the page background."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P", "PA") and (image.mode != "P" or "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def fit_image(
    image: Image.Image,
    width: int,
    height: int,
    mode: str = "crop",
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """An RGB image of exactly ``width`` x ``height``.

    ``crop`` scales the panel to cover the cell and cuts the overflow equally from both sides;
    ``letterbox`` scales it to fit inside and fills the bars with ``background``.
    """
    if mode not in FIT_MODES:
        raise LayoutError(f"fit must be one of {', '.join(FIT_MODES)}, not {shown(mode)}")
    if width < 1 or height < 1:
        raise LayoutError(f"cannot fit a panel into a {width}x{height} cell")
    source = _rgb(image, background)
    iw, ih = source.size
    if mode == "crop":
        scale = max(width / iw, height / ih)
        # Clamped to the image: in floating point width / scale can exceed iw by 1e-13, and PIL refuses a box
        # reaching outside the image (a negative offset) for common panel sizes such as 832x1216.
        crop_w, crop_h = min(iw, width / scale), min(ih, height / scale)
        left, top = max(0.0, (iw - crop_w) / 2), max(0.0, (ih - crop_h) / 2)
        box = (left, top, min(iw, left + crop_w), min(ih, top + crop_h))
        if (iw, ih) == (width, height):
            return source.copy()
        return source.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    scale = min(width / iw, height / ih)
    fit_w, fit_h = max(1, min(width, round(iw * scale))), max(1, min(height, round(ih * scale)))
    scaled = (
        source
        if (fit_w, fit_h) == (iw, ih)
        else source.resize((fit_w, fit_h), Image.Resampling.LANCZOS, reducing_gap=_REDUCING_GAP)
    )
    if (fit_w, fit_h) == (width, height):
        return scaled.copy() if scaled is source else scaled
    canvas = Image.new("RGB", (width, height), background)
    canvas.paste(scaled, ((width - fit_w) // 2, (height - fit_h) // 2))
    return canvas
