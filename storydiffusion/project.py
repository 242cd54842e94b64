"""Project files: a whole run in one ZIP that can be loaded back to continue later.

Contents: ``project.json`` (story, resolved settings, model, seeds, layout), ``panels/panel_NNN.png``
and, when there is one, ``identity_bank.safetensors``. Loading reads JSON, PNG and safetensors
only (never pickles) and refuses any archive that is not a project file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .atomic import atomic_path
from .bank import IdentityBank
from .errors import StoryDiffusionError
from .rundir import MAX_MANIFEST_BYTES, panel_filename
from .settings import GenerationSettings
from .story import Story
from .structured import InputFileError, parse_json

PROJECT_FORMAT = "storydiffusion-project/1"
PROJECT_JSON = "project.json"
BANK_NAME = "identity_bank.safetensors"
MAX_PROJECT_BYTES = 16 * 2**30  # uncompressed; a real SDXL bank of two characters is several GB
MAX_IMAGE_PIXELS = 8192 * 8192


class ProjectError(StoryDiffusionError, ValueError):
    """The file is not a project file, or it is damaged."""


@dataclass
class Project:
    story: Story
    settings: GenerationSettings
    model: str
    panels: dict[int, Image.Image] = field(default_factory=dict)  # 0-based index -> image
    seeds: dict[int, int] = field(default_factory=dict)
    bank: IdentityBank | None = None
    layout: str | None = None


def save_project(project: Project, path: str | os.PathLike) -> Path:
    """Write the project ZIP atomically, streaming the bank from a temporary file (it can be GBs)."""
    path = Path(path)
    document: dict[str, Any] = {
        "format": PROJECT_FORMAT,
        "story": project.story.to_dict(),
        "settings": project.settings.to_dict(),
        "model": project.model,
        "layout": project.layout,
        "panels": [
            {"panel": index + 1, "file": f"panels/{panel_filename(index)}", "seed": project.seeds.get(index)}
            for index in sorted(project.panels)
        ],
        "identity_bank": BANK_NAME if project.bank is not None and len(project.bank) else None,
    }
    with (
        atomic_path(path) as temporary,
        tempfile.TemporaryDirectory() as folder,
        zipfile.ZipFile(temporary, "w") as archive,
    ):
        archive.writestr(PROJECT_JSON, json.dumps(document, indent=2, ensure_ascii=False), zipfile.ZIP_DEFLATED)
        for index in sorted(project.panels):
            png = io.BytesIO()
            project.panels[index].save(png, format="PNG")
            archive.writestr(f"panels/{panel_filename(index)}", png.getvalue(), zipfile.ZIP_STORED)
        if document["identity_bank"]:
            bank_path = Path(folder) / BANK_NAME
            project.bank.save(bank_path)
            archive.write(bank_path, BANK_NAME, zipfile.ZIP_STORED)
    return path


def load_project(path: str | os.PathLike) -> Project:
    """Read a project ZIP written by ``save_project``; anything else raises ProjectError."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ProjectError(f"{path.name} is not a project file (a .zip written by 'Download project')")
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if PROJECT_JSON not in members:
            raise ProjectError(f"{path.name} has no {PROJECT_JSON}: it is not a StoryDiffusion project file")
        if sum(info.file_size for info in members.values()) > MAX_PROJECT_BYTES:
            raise ProjectError(f"{path.name} unpacks to more than {MAX_PROJECT_BYTES // 2**30} GB: refusing it")
        if members[PROJECT_JSON].file_size > MAX_MANIFEST_BYTES:
            raise ProjectError(f"{path.name}: {PROJECT_JSON} is larger than a project's description can be")
        try:
            document = parse_json(archive.read(PROJECT_JSON).decode("utf-8"), PROJECT_JSON)
        except (UnicodeDecodeError, InputFileError) as error:
            raise ProjectError(f"{path.name}: {PROJECT_JSON} is not valid JSON ({error})") from None
        if not isinstance(document, dict) or document.get("format") != PROJECT_FORMAT:
            raise ProjectError(
                f"{path.name} is not a StoryDiffusion project file (format {document.get('format') if isinstance(document, dict) else None!r})"
            )
        story = Story.from_dict(document["story"])
        settings = GenerationSettings.from_dict(document["settings"])
        settings.validate()  # the ranges of settings.SETTING_RANGES, as for a story file
        story.settings = settings
        panels: dict[int, Image.Image] = {}
        seeds: dict[int, int] = {}
        for entry in document.get("panels", []):
            index = int(entry["panel"]) - 1
            name = f"panels/{panel_filename(index)}"
            if entry.get("file") != name or name not in members or not 0 <= index < len(story.panels):
                raise ProjectError(f"{path.name}: panel entry {entry!r} does not match a panel image of the story")
            panels[index] = _read_png(archive.read(name), name)
            if entry.get("seed") is not None:
                seeds[index] = int(entry["seed"])
        bank = None
        if document.get("identity_bank"):
            if document["identity_bank"] != BANK_NAME or BANK_NAME not in members:
                raise ProjectError(f"{path.name}: the identity bank it names is missing")
            bank = _read_bank(archive)
    return Project(story, settings, str(document.get("model") or ""), panels, seeds, bank, document.get("layout"))


def _read_png(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        if image.format != "PNG" or image.width * image.height > MAX_IMAGE_PIXELS:
            raise ProjectError(f"{name} is not a PNG panel of a sensible size")
        image.load()
    except ProjectError:
        raise
    except Exception as error:  # Pillow raises several types for broken images
        raise ProjectError(f"{name} is not a readable PNG ({error})") from None
    return image.convert("RGB")


def _read_bank(archive: zipfile.ZipFile) -> IdentityBank:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / BANK_NAME
        with archive.open(BANK_NAME) as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target, 2**20)
        return IdentityBank.load(path)
