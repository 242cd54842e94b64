"""Writing a run to disk: panels, the story.json manifest and the identity bank, each atomically."""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from . import __version__
from .errors import StoryDiffusionError

MANIFEST_FORMAT = "storydiffusion-run/1"
MANIFEST_NAME = "story.json"
BANK_NAME = "identity_bank.safetensors"
PANELS_DIR = "panels"
PAGES_DIR = "pages"
PDF_NAME = "comic.pdf"
CBZ_NAME = "comic.cbz"
ZIP_NAME = "panels.zip"
EXPORT_FILES = (PDF_NAME, CBZ_NAME, ZIP_NAME)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_image(image: Image.Image, path: str | os.PathLike) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def panel_filename(index: int) -> str:
    """``panel_001.png`` for the first panel: 1-based, 3 digits."""
    return f"panel_{index + 1:03d}.png"


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse one that already holds files unless ``overwrite``.

    With ``overwrite`` only this tool's own outputs are removed, never other files of the folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise StoryDiffusionError(f"{out} is a file, not a folder: choose another --out")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StoryDiffusionError(
                f"{out} already holds files: pass --overwrite to replace them, or choose another --out"
            )
        for folder in (PANELS_DIR, PAGES_DIR):
            shutil.rmtree(out / folder, ignore_errors=True)
        for name in (MANIFEST_NAME, BANK_NAME, *EXPORT_FILES):
            (out / name).unlink(missing_ok=True)
    (out / PANELS_DIR).mkdir(parents=True, exist_ok=True)
    return out


def package_versions() -> dict[str, str]:
    versions = {"storydiffusion": __version__, "python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "accelerate", "safetensors", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def build_manifest(result, bank_file: str | None = None) -> dict[str, Any]:
    """Everything needed to reproduce the run: story, resolved settings, model, seeds, versions."""
    spec = result.model
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "story": result.story.to_dict(),
        "settings": result.settings.to_dict(),
        "model": {"name": spec.name, "source": spec.source, "family": spec.family},
        "scheduler": result.scheduler,
        "consistent_layers": result.consistent_layers,
        "panels": [
            {
                "panel": panel.index + 1,
                "file": f"{PANELS_DIR}/{panel_filename(panel.index)}",
                "seed": panel.seed,
                "prompt": panel.prompt,
                "negative_prompt": panel.negative_prompt,
                "characters": list(panel.characters),
                "identity_image": panel.identity,
            }
            for panel in result.panels
        ],
        "identity_bank": bank_file,
        "identity_bank_bytes": result.bank.nbytes() if result.bank is not None else 0,
        "warnings": list(result.warnings),
        "cancelled": result.cancelled,
        "seconds": round(result.seconds, 3),
        "versions": package_versions(),
    }


def save_panel(panel, out_dir: str | os.PathLike) -> Path:
    path = Path(out_dir) / PANELS_DIR / panel_filename(panel.index)
    save_image(panel.image, path)
    return path


def save_result(result, out_dir: str | os.PathLike, save_bank: bool = False) -> Path:
    """Write every panel, the bank if asked, and then the manifest (last, so it never names a missing file)."""
    out = Path(out_dir)
    for panel in result.panels:
        save_panel(panel, out)
    bank_file = None
    if save_bank and result.bank is not None and len(result.bank):
        result.bank.save(out / BANK_NAME)
        bank_file = BANK_NAME
    manifest = out / MANIFEST_NAME
    write_json(manifest, build_manifest(result, bank_file))
    return manifest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """A story.json written by ``save_result``; other JSON is refused with a clear error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise StoryDiffusionError(f"could not read {path}: {error}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise StoryDiffusionError(f"{path} is not a StoryDiffusion run manifest")
    return data
