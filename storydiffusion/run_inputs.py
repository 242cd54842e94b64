"""A run's own copies of the pictures its story names: the reference photos and control images, copied into
``inputs/`` under names made of their bytes' SHA-256 (``inputs/3f2ac9e07d1b4a55.png``) and recorded under
those names in ``story.json``.

So a run folder holds everything it was drawn from: moved or sent elsewhere it can still be continued,
drawn again (``generate out/story.json``) and scored against its photos, and its record names no folder
of the machine it ran on. Two runs are the same drawing when their pictures have the same bytes, wherever
the files were (``input_digests``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

from PIL import Image

from .atomic import atomic_write_bytes
from .errors import StoryDiffusionError
from .images import MAX_IMAGE_BYTES
from .run_names import INPUTS_DIR
from .run_records import file_digest, recorded_inputs
from .story import Story

__all__ = [
    "RunInput",
    "altered_copies",
    "altered_copy_message",
    "copy_inputs",
    "drawing_story",
    "input_digests",
    "recorded_story",
    "story_inputs",
]

_SUFFIX = re.compile(r"\.[a-z0-9]{1,5}")


@dataclass(frozen=True)
class RunInput:
    """One picture a story names: the ``source`` path as the story has it, its copy's ``name`` in the run
    folder (``inputs/…``) and the ``digest`` (SHA-256) of its bytes. A picture the run was given in memory
    has its field as ``source`` (``characters.Nora.reference``) and its PNG bytes as ``data``."""

    source: str
    name: str
    digest: str
    data: bytes | None = dataclass_field(default=None, repr=False, compare=False)


def picture_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a picture file's bytes. OSError for anything but a regular file of at most
    MAX_IMAGE_BYTES: a story may name ``/dev/zero`` or a pipe, whose reading would never end."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{Path(path).name} is not a file")
    if info.st_size > MAX_IMAGE_BYTES:
        raise OSError("it is larger than any picture this tool reads")
    return file_digest(path)


def story_sources(story: Story) -> list[tuple[str, str]]:
    """(field, path) of every picture the story names, in story order: ``characters.Mia.reference`` and
    ``panels[3].control.image``."""
    found = [(f"characters.{name}.reference", c.reference) for name, c in story.characters.items() if c.reference]
    found += [
        (f"panels[{number}].control.image", panel.control.image)
        for number, panel in enumerate(story.panels, start=1)
        if panel.control is not None
    ]
    return found


def story_inputs(story: Story, given: Mapping[str, Image.Image] | None = None) -> dict[str, RunInput]:
    """Each picture the story names, by its path, read once for its digest; StoryDiffusionError names the
    field and the file when one can no longer be read (moved or deleted since the story was checked).
    ``given`` (``StoryResult.pictures``): pictures the run was given in memory for fields whose story names no
    file, by field, kept as PNG files too, so the record draws the run again."""
    inputs: dict[str, RunInput] = {}
    for name, picture in (given or {}).items():
        png = io.BytesIO()
        picture.save(png, format="PNG")
        data = png.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        inputs[name] = RunInput(name, f"{INPUTS_DIR}/{digest[:16]}.png", digest, data)
    for field, source in story_sources(story):
        if source in inputs or field in inputs:
            continue
        try:
            digest = picture_digest(source)
        except OSError as error:
            reason = error.strerror or str(error)
            raise StoryDiffusionError(
                f"{field} ({Path(source).name}) cannot be copied into the run folder ({reason}): put the file back "
                "where the story names it, then run the same command again"
            ) from None
        suffix = Path(source).suffix.lower()
        name = f"{INPUTS_DIR}/{digest[:16]}{suffix if _SUFFIX.fullmatch(suffix) else ''}"
        inputs[source] = RunInput(source, name, digest)
    return inputs


def copy_inputs(run_dir: str | os.PathLike, inputs: Mapping[str, RunInput]) -> None:
    """Copy each input into the run folder, atomically; one already there with the same bytes is left as it is.
    A source whose bytes changed since ``story_inputs`` read it is refused: the record would lie about it."""
    run = Path(run_dir)
    for item in inputs.values():
        target = run / item.name
        if target.is_file() and not target.is_symlink() and file_digest(target) == item.digest:
            continue
        if item.data is not None:  # given in memory: its bytes are at hand
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, item.data)
            continue
        with open(item.source, "rb") as source:  # no more than story_inputs found there: a file, not a pipe
            data = source.read(MAX_IMAGE_BYTES + 1)
        if hashlib.sha256(data).hexdigest() != item.digest:
            raise StoryDiffusionError(
                f"{Path(item.source).name} changed while the run started: run the same command again to draw "
                "from the file as it is now"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)


def recorded_story(story: Story, inputs: Mapping[str, RunInput]) -> dict[str, Any]:
    """``story.to_dict()`` with each picture named by its copy in the run folder (``inputs/…``), never by
    the path it was read from."""
    data = story.to_dict()
    for name, value in data["characters"].items():
        given = inputs.get(f"characters.{name}.reference")
        if given is not None:  # a photo given in memory
            character = story.characters[name]
            scale = character.reference_scale
            data["characters"][name] = {
                "description": character.description,
                "reference": given.name,
                "reference_scale": scale,
            }
        elif isinstance(value, dict) and value.get("reference") in inputs:
            value["reference"] = inputs[value["reference"]].name
    for number, panel in enumerate(data["panels"], start=1):
        control = panel.get("control")
        if control is not None and f"panels[{number}].control.image" in inputs:  # given in memory
            control["image"] = inputs[f"panels[{number}].control.image"].name
        elif control is not None and control.get("image") in inputs:
            control["image"] = inputs[control["image"]].name
    return data


def input_digests(story: Story, manifest: dict[str, Any] | None = None, base: Path | None = None) -> dict[str, str]:
    """The SHA-256 of each picture the story names, by the path the story has: from ``manifest``'s record of
    its inputs (``inputs/…`` as a run recorded them, found under ``base``) where it has one, else read from
    the file; a file that cannot be read has none (then only its path can tell two stories apart)."""
    recorded = recorded_inputs(manifest)
    folder = Path(os.path.abspath(base)) if base is not None else None
    digests: dict[str, str] = {}
    for _, source in story_sources(story):
        inside = folder is not None and Path(source).is_relative_to(folder)
        name = Path(source).relative_to(folder).as_posix() if inside else source
        if name in recorded:
            digests[source] = recorded[name]
            continue
        try:
            digests[source] = picture_digest(source)
        except OSError:
            pass
    return digests


def altered_copies(story: Story, manifest: dict[str, Any], base: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(field, copy's name, "missing" or "changed") for each picture of a run's story (read from ``manifest``
    with ``base``, its folder) whose copy in the run folder is gone or no longer holds the bytes its record
    keeps: drawing from it, or scoring against it, would not be the run's picture."""
    recorded = recorded_inputs(manifest)
    folder = Path(os.path.abspath(base))
    found = []
    for field, source in story_sources(story):
        if not Path(source).is_relative_to(folder):
            continue
        name = Path(source).relative_to(folder).as_posix()
        if name not in recorded:
            continue
        try:
            if picture_digest(source) != recorded[name]:
                found.append((field, name, "changed"))
        except OSError:
            found.append((field, name, "missing"))
    return found


def altered_copy_message(field: str, name: str, state: str) -> str:
    """What is wrong with a run's copy of a picture (``altered_copies``), and the fix."""
    if state == "missing":
        return f"{field}: the run's copy {name} is missing from its folder: put it back, or give the story file that names the picture"
    return (
        f"{field}: {name} is not the picture this run was drawn from (its bytes changed since): put the run's "
        "own copy back, or give a story file that names your picture"
    )


def drawing_story(story: Story, digests: Mapping[str, str]) -> dict[str, Any]:
    """``story.to_dict()`` with each picture given as its bytes' digest (``sha256:…``) where known: what two
    stories are compared by, so a photo moved or copied elsewhere is the same photo."""
    return recorded_story(
        story, {source: RunInput(source, f"sha256:{digest}", digest) for source, digest in digests.items()}
    )
