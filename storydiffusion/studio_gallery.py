"""The Panels gallery's pictures: each panel as a PNG file of its own, written once.

Gradio writes an image it is handed as a Pillow object into its cache again every time the gallery is
sent, to the same file and not atomically; a run sends the gallery after every panel, so a browser still
reading panel 1 from an earlier update read a file being rewritten (``ERR_CONTENT_LENGTH_MISMATCH``, a
broken thumbnail). A file is copied into Gradio's cache once, under a temporary name then renamed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from .atomic import write_png
from .results import PanelImage
from .studio_text import panel_caption

__all__ = ["gallery_items"]

GALLERY_DIR = "gallery"


def gallery_items(panels: Iterable[PanelImage], home: Path) -> list[tuple[str, str]]:
    """(file, caption) of each panel in story order, its file under ``home/gallery`` named by the panel and its
    pixels (a redrawn panel is another file); files of panels no longer shown are removed."""
    folder = home / GALLERY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for panel in sorted(panels, key=lambda p: p.index):
        image = panel.image
        digest = hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()[:16]
        path = folder / f"panel_{panel.index + 1:03d}-{digest}.png"
        if not path.is_file():
            write_png(image, path, compress_level=1)  # read back at once by Gradio: speed over size
        items.append((str(path), panel_caption(panel.index)))
    shown = {Path(file).name for file, _ in items}
    for old in folder.glob("panel_*.png"):  # Gradio has its own copy of each file it was sent
        if old.name not in shown:
            old.unlink(missing_ok=True)
    return items
