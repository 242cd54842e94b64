"""Project files: a whole run in one ZIP that can be loaded back to continue later.

Contents: ``project.json`` (story, resolved settings, model, seeds, layout and reading direction, the story the identity
bank is drawn from) and ``panels/panel_NNN.png``: a few MB. The identity bank is hundreds of MB
uncompressed and is rebuilt exactly from the story, settings and seeds, so ``identity_bank.safetensors``
is written only when asked for (``include_bank``); a project that has one still loads with it.
Loading reads JSON, PNG and safetensors only (never pickles) and refuses any archive that is not a
project file; an upload's archive is checked by ``archive_checks`` before any member is read, and its
panels by ``images`` before decoding.
"""

from __future__ import annotations

import io
import json
import operator
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .archive_checks import check_archive, copy_member, read_member
from .atomic import atomic_path
from .bank import IdentityBank
from .errors import BankError, ImageInputError, ProjectError, SettingsError, StoryError, kind_of, shown, wrong_kind
from .images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, read_image, to_rgb
from .run_manifest import story_from_manifest
from .rundir import MAX_MANIFEST_BYTES, panel_filename
from .settings import MAX_SEED, GenerationSettings
from .story import Story
from .structured import InputFileError, decode_text, parse_json, plain_digits

PROJECT_FORMAT = "storydiffusion-project/1"
PROJECT_JSON = "project.json"
BANK_NAME = "identity_bank.safetensors"
MAX_PROJECT_BYTES = 16 * 2**30  # uncompressed; a real SDXL bank of two characters is several GB
MAX_PROJECT_PANELS = 10_000  # as many as a story.json of MAX_MANIFEST_BYTES can describe
MAX_COMPRESSION_RATIO = 200.0  # JSON deflates about 10 times; PNGs and the bank are stored
MAX_PROJECT_PHOTOS = 64  # reference photos: one per character at most


@dataclass(frozen=True)
class ProjectLimits:
    """What an uploaded project may hold; a shared server may pass smaller ones to ``load_project``."""

    max_panels: int = MAX_PROJECT_PANELS
    max_total_bytes: int = MAX_PROJECT_BYTES
    max_ratio: float = MAX_COMPRESSION_RATIO
    max_json_bytes: int = MAX_MANIFEST_BYTES
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS

    @property
    def max_entries(self) -> int:
        """project.json, one PNG per panel and one control image per panel, the reference photos, the bank,
        and the folders some ZIP tools add."""
        return 2 * self.max_panels + MAX_PROJECT_PHOTOS + 5


@dataclass
class Project:
    story: Story
    settings: GenerationSettings
    model: str
    panels: dict[int, Image.Image] = field(default_factory=dict)  # 0-based index -> image
    seeds: dict[int, int] = field(default_factory=dict)
    bank: IdentityBank | None = None
    layout: str | None = None
    # The story the identity bank is drawn from: the run's story, which differs from ``story`` once an
    # identity panel was redrawn with another seed or prompt. None: ``story`` itself.
    bank_story: Story | None = None
    # Reference photos by character name and control images by 0-based panel index, carried as PNG
    # members: the story names them by file name only, never by a path on anyone's machine.
    photos: dict[str, Image.Image] = field(default_factory=dict)
    controls: dict[int, Image.Image] = field(default_factory=dict)
    direction: str | None = None  # "ltr" or "rtl": the pages read so whatever the layout; None: as the layout reads


def save_project(project: Project, path: str | os.PathLike, include_bank: bool = False) -> Path:
    """Write the project ZIP atomically; with ``include_bank`` also the identity bank, streamed from a
    temporary file (it can be GBs), when the project has one (a project loaded without its bank has none).
    Without it the bank is rebuilt from ``bank_story`` when needed."""
    path = Path(path)
    seeds = _check_saveable(project, path)
    with_bank = include_bank and project.bank is not None and len(project.bank) > 0
    document: dict[str, Any] = {
        "format": PROJECT_FORMAT,
        "story": project.story.to_dict(),
        "settings": project.settings.to_dict(),
        "model": project.model,
        "layout": project.layout,
        "direction": project.direction,
        "panels": [
            {"panel": index + 1, "file": f"panels/{panel_filename(index)}", "seed": seeds.get(index)}
            for index in sorted(project.panels)
        ],
        "identity_bank": BANK_NAME if with_bank else None,
        "bank_story": project.bank_story.to_dict() if project.bank_story is not None else None,
        "references": {name: photo_member(number) for number, name in enumerate(sorted(project.photos))},
        "controls": {str(index + 1): control_member(index) for index in sorted(project.controls)},
    }
    with (
        atomic_path(path) as temporary,
        tempfile.TemporaryDirectory() as folder,
        zipfile.ZipFile(temporary, "w") as archive,
    ):
        archive.writestr(PROJECT_JSON, json.dumps(document, indent=2, ensure_ascii=False), zipfile.ZIP_DEFLATED)
        pictures = {f"panels/{panel_filename(index)}": image for index, image in project.panels.items()}
        pictures.update((photo_member(n), project.photos[name]) for n, name in enumerate(sorted(project.photos)))
        pictures.update((control_member(index), image) for index, image in project.controls.items())
        for member, image in sorted(pictures.items()):
            png = io.BytesIO()
            to_rgb(image).save(png, format="PNG")  # as load_project reads it: any mode, CMYK too
            archive.writestr(member, png.getvalue(), zipfile.ZIP_STORED)
        if with_bank:
            bank_path = Path(folder) / BANK_NAME
            project.bank.save(bank_path)
            archive.write(bank_path, BANK_NAME, zipfile.ZIP_STORED)
    return path


def _check_saveable(project: Project, path: Path) -> dict[int, int]:
    """Refuse, before anything is written, a project ``load_project`` would refuse: panels, seeds, photos and
    control images of the story's own panels and characters, panels of one size, names not paths. Returns the
    seeds as plain ints (numpy's too)."""
    label, story = "project", project.story
    if path.is_dir():
        raise ProjectError(f"{path.name} is a folder: give the name of the .zip file to write")
    count = len(story.panels)
    for what, indexes in (("panels", project.panels), ("seeds", project.seeds)):
        wrong = [i for i in indexes if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count]
        if wrong:
            raise ProjectError(
                f"{label}: {what}: {shown(wrong[0])} is not a 0-based index of the story's {count} panels"
            )
    seeds = {}
    for index, seed in project.seeds.items():
        try:
            seeds[index] = int(operator.index(seed)) if not isinstance(seed, bool) else -1
        except TypeError:
            seeds[index] = -1
        if not 0 <= seeds[index] <= MAX_SEED:
            raise ProjectError(f"{label}: panel {index + 1} has the seed {shown(seed)}: a seed is 0 to {MAX_SEED}")
    _check_panel_sizes(project.panels, project.settings, label)
    for name in project.photos:
        if name not in story.characters:
            raise ProjectError(f"{label}: photos: {shown(name)} is not one of the story's characters")
    for index in project.controls:
        if not (isinstance(index, int) and 0 <= index < count and story.panels[index].control is not None):
            raise ProjectError(f"{label}: controls: {shown(index)} is not the 0-based index of a panel with a control")
    names = {"model": project.model or "", "layout": project.layout, "direction": project.direction}
    _read_names(names, label)  # a layout by name only: a file of one's own is given to compose after loading
    return seeds


def load_project(path: str | os.PathLike, limits: ProjectLimits | None = None) -> Project:
    """Read a project ZIP written by ``save_project``; anything else raises ProjectError.

    The archive's directory is checked before any member is read, every member is read with a cap,
    and each panel's size is checked before it is decoded (``limits``: smaller ones for a shared server).
    """
    path, limits = Path(path), limits or ProjectLimits()
    label = path.name  # an upload sits under a server's temporary folder: its own name is what the user knows
    if not path.exists():
        raise ProjectError(f"{label} does not exist: check the project file's name and folder")
    if not path.is_file():  # a folder, or a pipe that reading would wait on for ever
        raise ProjectError(f"{label} is not a file: give the .zip that 'Download project' wrote")
    if not zipfile.is_zipfile(path):
        raise ProjectError(f"{label} is not a project file (a .zip written by 'Download project')")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise ProjectError(f"{label} is a damaged ZIP file ({error})") from None
    with archive:
        members = check_archive(
            archive,
            label,
            max_entries=limits.max_entries,
            max_total_bytes=limits.max_total_bytes,
            max_ratio=limits.max_ratio,
        )
        if PROJECT_JSON not in members:
            raise ProjectError(f"{label} has no {PROJECT_JSON}: it is not a StoryDiffusion project file")
        document = _read_document(read_member(archive, members[PROJECT_JSON], label, limits.max_json_bytes), label)
        story, settings = _read_story(document, label)
        if len(story.panels) > limits.max_panels:
            raise ProjectError(
                f"{label}: {PROJECT_JSON} describes {len(story.panels):,} panels, more than the {limits.max_panels:,} "
                "a project file may have"
            )
        panels, seeds = _read_panels(archive, members, document, len(story.panels), label, limits)
        _check_panel_sizes(panels, settings, label)
        photos, controls = _read_steering(archive, members, document, story, label, limits)
        bank_story = _read_bank_story(document, story, label)
        bank = None
        if document.get("identity_bank"):
            if document["identity_bank"] != BANK_NAME or BANK_NAME not in members:
                raise ProjectError(f"{label}: the identity bank it names is missing")
            bank = _read_bank(archive, members[BANK_NAME], label, limits.max_total_bytes)
    model, layout, direction = _read_names(document, f"{label}: {PROJECT_JSON}")
    return Project(story, settings, model, panels, seeds, bank, layout, bank_story, photos, controls, direction)


def photo_member(number: int) -> str:
    """``references/photo_01.png``: members are numbered, so a character's name never becomes a path."""
    return f"references/photo_{number + 1:02d}.png"


def control_member(index: int) -> str:
    return f"controls/{panel_filename(index)}"


def _read_steering(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    document: dict[str, Any],
    story: Story,
    label: str,
    limits: ProjectLimits,
) -> tuple[dict[str, Image.Image], dict[int, Image.Image]]:
    """The reference photos (by character) and control images (by panel) a project carries, each named
    exactly as ``save_project`` names it and read as a panel is."""
    references, controls = document.get("references") or {}, document.get("controls") or {}
    if not isinstance(references, dict) or not isinstance(controls, dict) or len(references) > MAX_PROJECT_PHOTOS:
        raise ProjectError(f"{label}: {PROJECT_JSON}: 'references' and 'controls' must be mappings of member names")
    photos: dict[str, Image.Image] = {}
    for number, name in enumerate(sorted(references)):
        if name not in story.characters or references[name] != photo_member(number) or references[name] not in members:
            raise ProjectError(f"{label}: reference photo entry {shown(name)} does not match a character's photo")
        photos[name] = _read_png(archive, members[references[name]], label, limits)
    pictures: dict[int, Image.Image] = {}
    for key, member in controls.items():
        index = int(key) - 1 if isinstance(key, str) and plain_digits(key) and len(key) <= 6 else -1
        valid = 0 <= index < len(story.panels) and story.panels[index].control is not None
        if not valid or member != control_member(index) or member not in members:
            raise ProjectError(f"{label}: control image entry {shown(key)} does not match a panel's control")
        pictures[index] = _read_png(archive, members[member], label, limits)
    return photos, pictures


def _read_names(document: dict[str, Any], where: str) -> tuple[str, str | None, str | None]:
    """The model name, layout and reading direction a project records: text, and a layout only by one of this
    tool's names (never a path, so a project cannot make a server read a file or say whether one exists)."""
    from .layout.template_files import list_templates
    from .layout.templates import DIRECTIONS

    model, layout = document.get("model") or "", document.get("layout")
    if not isinstance(model, str):
        raise ProjectError(f"{where}: {wrong_kind('model', 'the name of a model', model)}")
    if layout is not None and (not isinstance(layout, str) or layout not in list_templates()):
        raise ProjectError(f"{where}: layout {shown(layout)} is not one of {', '.join(list_templates())}")
    direction = document.get("direction")
    if direction is not None and direction not in DIRECTIONS:
        raise ProjectError(
            f"{where}: direction {shown(direction)} is not one of {', '.join(DIRECTIONS)} (or null: the layout's own)"
        )
    return model, layout, direction


def _read_document(data: bytes, label: str) -> dict[str, Any]:
    try:
        document = parse_json(decode_text(data, PROJECT_JSON), PROJECT_JSON)
    except InputFileError as error:  # its message starts with the file's name
        raise ProjectError(f"{label}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != PROJECT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise ProjectError(f"{label} is not a StoryDiffusion project file (format {shown(found)})")
    return document


def _read_story(document: dict[str, Any], label: str) -> tuple[Story, GenerationSettings]:
    """The story and its settings, checked as a story file's are; their messages name the upload."""
    try:
        story = story_from_manifest(document, PROJECT_JSON)  # validated as a story file is
        settings = story.settings
    except (StoryError, SettingsError) as error:
        raise ProjectError(f"{label}: {error}") from None
    story.settings = settings
    return story, settings


def _read_bank_story(document: dict[str, Any], story: Story, label: str) -> Story | None:
    """The story the bank is drawn from, checked as a story file is: the same cast and panel count as the
    project's story, since it only ever differs from it in the prompts and seeds of redrawn panels."""
    data = document.get("bank_story")
    if data is None:
        return None
    try:
        bank_story = Story.from_dict(data)
    except (StoryError, SettingsError) as error:
        raise ProjectError(f"{label}: {PROJECT_JSON}: bank_story: {error}") from None
    if bank_story.characters != story.characters or len(bank_story.panels) != len(story.panels):
        raise ProjectError(
            f"{label}: {PROJECT_JSON}: bank_story does not match the story: it must have the same characters "
            "and as many panels"
        )
    bank_story.settings = story.settings
    return bank_story


def _read_panels(
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    document: dict[str, Any],
    count: int,
    label: str,
    limits: ProjectLimits,
) -> tuple[dict[int, Image.Image], dict[int, int]]:
    """Panel images (0-based index -> RGB image) and their seeds, each entry checked against the story."""
    entries = document.get("panels") or []
    if not isinstance(entries, list):
        raise ProjectError(f"{label}: {PROJECT_JSON}: 'panels' must be a list, not {kind_of(entries)}")
    panels: dict[int, Image.Image] = {}
    seeds: dict[int, int] = {}
    for entry in entries:
        number = entry.get("panel") if isinstance(entry, dict) else None
        seed = entry.get("seed") if isinstance(entry, dict) else None
        valid = isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= count
        name = f"panels/{panel_filename(number - 1)}" if valid else None
        if not valid or entry.get("file") != name or name not in members or number - 1 in panels:
            raise ProjectError(f"{label}: panel entry {shown(entry)} does not match a panel image of the story")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
            raise ProjectError(f"{label}: panel {number} has the seed {shown(seed)}: a seed is 0 to {MAX_SEED}")
        panels[number - 1] = _read_png(archive, members[name], label, limits)
        if seed is not None:
            seeds[number - 1] = seed
    return panels, seeds


def _check_panel_sizes(panels: dict[int, Image.Image], settings: GenerationSettings, label: str) -> None:
    """Every panel the size the project's settings draw (the first panel's when they leave it to the model):
    a panel of another size or shape is not one this project made, and would be redrawn at another size."""
    if not panels:
        return
    first = panels[min(panels)].size
    expected = (settings.width or first[0], settings.height or first[1])
    for index, image in sorted(panels.items()):
        if image.size != expected:
            raise ProjectError(
                f"{label}: panel {index + 1} is {image.width} x {image.height} pixels, but this project's panels are "
                f"{expected[0]} x {expected[1]}: it is not a panel this project drew; save the project again"
            )


def _read_png(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limits: ProjectLimits) -> Image.Image:
    data = read_member(archive, info, label, limits.max_image_bytes)
    try:
        return read_image(
            data,
            info.filename,
            max_bytes=limits.max_image_bytes,
            max_pixels=limits.max_image_pixels,
            formats=("PNG",),
        )
    except ImageInputError as error:
        raise ProjectError(f"{label}: {error} (a project's panels are PNG files)") from None


def _read_bank(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, max_bytes: int) -> IdentityBank:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / BANK_NAME
        with open(path, "wb") as target:
            copy_member(archive, info, target, label, max_bytes)
        try:
            return IdentityBank.load(path)
        except BankError:  # its message names a temporary file: the project's member is what the user knows
            raise ProjectError(
                f"{label}: {BANK_NAME} is not a usable identity bank (damaged, or written by another version): "
                "save the project again, or without its bank"
            ) from None
