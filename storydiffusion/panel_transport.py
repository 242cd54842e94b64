"""Finished panels between processes: packed as bytes (a JSON header, then PNGs; no pickles), unpacked on
the first process, or read back from a run folder every process sees when only their records travelled."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

from PIL import Image

from .errors import StoryDiffusionError
from .results import PanelImage
from .rundir import MASKS_DIR, PANELS_DIR, mask_filename, panel_filename


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # lossless: the writer re-encodes the same pixels
    return out.getvalue()


def pack_panels(
    panels: list[PanelImage], pictures: bool = True, error: str | None = None, stopped: bool = False
) -> bytes:
    """Panels as bytes: a JSON header (an error, whether the process was cancelled, each panel's fields and
    picture sizes), then the PNGs of pictures and masks (none when ``pictures`` is off: the files are on a
    disk every process sees)."""
    blobs: list[bytes] = []
    entries = []
    for panel in panels:
        sizes = {}
        for name, picture in {"": panel.image, **{f"mask:{n}": m for n, m in panel.masks.items()}}.items():
            blobs.append(_png(picture) if pictures else b"")
            sizes[name] = len(blobs[-1])
        fields = {k: getattr(panel, k) for k in ("index", "seed", "prompt", "negative_prompt", "identity")}
        entries.append({**fields, "characters": list(panel.characters), "pictures": sizes})
    header = json.dumps({"error": error, "stopped": stopped, "panels": [] if error else entries}).encode()
    return len(header).to_bytes(8, "little") + header + (b"" if error else b"".join(blobs))


def unpack_panels(data: bytes) -> tuple[str | None, bool, list[PanelImage]]:
    """(a process's error or None, whether it was cancelled, its panels); a picture sent without bytes is
    left None, to be read back."""
    length = int.from_bytes(data[:8], "little")
    header, offset = json.loads(data[8 : 8 + length].decode()), 8 + length
    panels = []
    for entry in header["panels"]:
        pictures = {}
        for name, size in entry.pop("pictures").items():
            pictures[name] = Image.open(io.BytesIO(data[offset : offset + size])).copy() if size else None
            offset += size
        masks = {name.removeprefix("mask:"): picture for name, picture in pictures.items() if name}
        panels.append(
            PanelImage(**{**entry, "characters": tuple(entry["characters"])}, image=pictures[""], masks=masks)
        )
    return header["error"], header["stopped"], panels


def read_back_panel(panel: PanelImage, folder: Path) -> PanelImage:
    """A panel another process wrote into ``folder``, with its picture and masks read from there. A shared disk
    (NFS) may show a file renamed into place on another machine a little later: each is waited for a while."""

    def read(path: Path) -> Image.Image:
        for wait in (0.1, 0.2, 0.5, 1, 2, 5, 10, 0):
            try:
                with Image.open(path) as picture:
                    return picture.copy()
            except FileNotFoundError:
                if not wait:
                    break
                time.sleep(wait)
            except OSError as error:
                raise StoryDiffusionError(
                    f"another process wrote {path}, but it cannot be read here: {error}"
                ) from None
        raise StoryDiffusionError(
            f"another process wrote {path}, but it is not there for this one: give every process the same --out "
            "folder (one disk, or a shared one), then run the same command again to draw the rest"
        )

    image = read(folder / PANELS_DIR / panel_filename(panel.index))
    masks = {
        name: read(folder / MASKS_DIR / mask_filename(panel.index, panel.characters.index(name)))
        for name in panel.masks
    }
    return dataclasses.replace(panel, image=image, masks=masks)
