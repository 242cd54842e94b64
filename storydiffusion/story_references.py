"""The reference photos of a story's characters: read through the image gate, fingerprinted for the
identity bank, and given to the images they condition.

A photo conditions its character's identity images (identity mode), or, where a run has no identity
pass (window mode, no consistency), the panels that show that character alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .errors import StoryError, shown
from .images import given_image, pixel_fingerprint
from .planning import Batch
from .reference_adapter import MAX_REFERENCE_RATIO, read_reference
from .story import Story
from .story.names import name_index, name_key


def story_photos(
    story: Story, given: Mapping[str, Image.Image] | None = None, read_files: bool = True
) -> dict[str, Image.Image]:
    """Each character's reference photo: ``given`` ones (by name, e.g. uploads), else read from the
    character's ``reference`` file; ImageInputError names the character and the file. Without
    ``read_files`` (a shared server) a story may not name files: a reference not given is refused."""
    photos = given_photos(story, given)
    for name, character in story.characters.items():
        if name not in photos and character.reference is not None:
            if not read_files:
                raise StoryError(
                    f"characters.{name}.reference names a file ({shown(character.reference)}); here a reference "
                    "photo comes as an upload: add it under Reference photos"
                )
            photos[name] = read_reference(character.reference, f"characters.{name}.reference ({character.reference})")
    return photos


def given_photos(story: Story, given: Mapping[str, Image.Image] | None) -> dict[str, Image.Image]:
    """Photos passed in memory, by character name (any case, as tags match): each one a character's, and
    held to the rules of a photo read from a file, so the same photo steers alike either way."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise StoryError(f"references must map character names to PIL images, not {type(given).__name__}")
    index, photos = name_index(story.characters), {}
    for key, image in given.items():
        name = index.get(name_key(key)) if isinstance(key, str) else None
        if name is None:
            raise StoryError(
                f"references: {shown(key)} is not a character of this story (its characters: "
                f"{', '.join(story.characters) or 'none'}): name the photo after one of them"
            )
        photos[name] = given_image(image, f"references[{name!r}]", max_ratio=MAX_REFERENCE_RATIO)
    return photos


def unnamed_pictures(
    story: Story,
    photos: Mapping[str, Image.Image],
    controls: Mapping[int, Image.Image] | None,
    read_files: bool = True,
) -> dict[str, Image.Image]:
    """The photos and control images a run was given in memory for fields whose story names no file it could
    read (``StoryResult.pictures``), by field: a saved run keeps them, so its record draws the run again."""

    def named_file(path: str | None) -> bool:
        return read_files and path is not None and Path(path).is_file()

    found = {
        f"characters.{name}.reference": photo
        for name, photo in photos.items()
        if not named_file(story.characters[name].reference)
    }
    for index, image in (controls or {}).items():
        control = story.panels[index].control
        if not named_file(control.image):
            found[f"panels[{index + 1}].control.image"] = given_image(image, f"control_images[{index}]")
    return found


FACE_WITHOUT_PHOTOS = (
    "photos are set to steer by the face (FaceID), but no character has a reference photo: nothing is steered"
)


def photo_warnings(settings: Any, photos: Mapping[str, Image.Image]) -> list[str]:
    """What a run tells about its photo settings: FaceID chosen for a story without photos does nothing."""
    return [FACE_WITHOUT_PHOTOS] if settings.reference_adapter == "face" and not photos else []


def story_images(story: Story) -> dict[str, Image.Image]:
    """Before a model loads: every reference photo read (returned by name), and every control image's
    header checked by the image gate and the shape limit (the maps themselves are read at the run's size)."""
    from .controlnets import MAX_CONTROL_RATIO
    from .images import image_size

    for number, panel in enumerate(story.panels, start=1):
        if panel.control is not None:
            label = f"panel {number}: control.image ({panel.control.image})"
            image_size(panel.control.image, label, max_ratio=MAX_CONTROL_RATIO)
    return story_photos(story)


def reference_signature(
    story: Story, photos: Mapping[str, Image.Image], settings: Any = None, face_model: str | None = None
) -> dict[str, Any]:
    """The bank signature's entry for reference photos (photo and scale per character; the adapter and the
    face model's name when it is FaceID); empty without photos."""
    if not photos:
        return {}
    signed = {
        "references": {
            name: [pixel_fingerprint(photo), story.characters[name].reference_scale]
            for name, photo in sorted(photos.items())
        }
    }
    face = settings is not None and settings.reference_adapter == "face"
    return {**signed, "reference_adapter": "face", "face_model": face_model} if face else signed


def batch_references(
    story: Story, batch: Batch, mode: str, embeddings: Mapping[str, torch.Tensor]
) -> tuple[list[float], list[torch.Tensor | None]]:
    """Per batch image, the reference scale and photo embedding it is conditioned with (0 and None: none)."""
    scales: list[float] = []
    rows: list[torch.Tensor | None] = []
    for planned in batch.images:
        name = None
        if batch.kind == "identity":
            name = batch.character
        elif mode != "identity" and planned.panel_index is not None:
            shown = story.panels[planned.panel_index].characters
            name = shown[0] if len(shown) == 1 else None
        embedding = embeddings.get(name) if name is not None else None
        scales.append(story.characters[name].reference_scale if embedding is not None else 0.0)
        rows.append(embedding)
    return scales, rows
