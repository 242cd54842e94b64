"""``storydiffusion evaluate RUN``: a run folder's panels scored, ``metrics.json`` written, a table printed.

The run's own records decide what is read: ``story.json`` names the panels and their subject masks
(``--save-masks``), the story gives the prompts, the characters each panel shows and their regions.
Every picture goes through the image gate. ``metrics.json`` is this tool's file (listed by
``rundir.written_files``), written atomically; a file of that name that is not ours is never replaced.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..atomic import write_json
from ..errors import ImageInputError, StoryDiffusionError, counted
from ..images import read_image
from ..run_inputs import altered_copies
from ..run_manifest import manifest_panels, read_manifest, run_folder_manifest, story_from_manifest
from ..rundir import MASKS_DIR, METRICS_FORMAT, METRICS_NAME, mask_filename
from ..story import Story
from .encoders import ImageEmbedder, StoryEncoder
from .story_metrics import Crop, StoryScores, score_story

MASK_LEVEL = 128  # a saved mask pixel at or above this is the character's
MIN_CROP_PIXELS = 16  # a crop narrower or shorter than this says nothing about a character


def check_run(run_dir: str | os.PathLike) -> tuple[Story, dict[int, dict[str, Any]], list[str]]:
    """The story of a run folder, its manifest's panel entries and notes, checked before any encoder loads.
    A reference photo whose copy in the run folder is gone or changed is left out of the story, with a note:
    a score against it would not be a score against the photo the run was drawn from."""
    manifest = read_manifest(run_folder_manifest(run_dir, "evaluate"))
    story = story_from_manifest(manifest, base=run_dir)  # the photos it copied are in its inputs/
    altered = {field: (name, state) for field, name, state in altered_copies(story, manifest, run_dir)}
    notes = []
    for character, entry in story.characters.items():
        why = None
        if f"characters.{character}.reference" in altered:
            name, state = altered[f"characters.{character}.reference"]
            why = "is missing from the run folder" if state == "missing" else "is not the photo the run was drawn from"
        elif entry.reference is not None and _unrecorded_picture(entry.reference, manifest, run_dir):
            name, why = Path(entry.reference).name, "is not a photo the run recorded (story.json was edited)"
        if why is not None:
            story.characters[character] = dataclasses.replace(entry, reference=None)
            notes.append(f"{character}'s reference photo ({name}) {why}: no similarity to it")
    return story, {i: entry for i, entry in manifest_panels(manifest).items() if i < len(story.panels)}, notes


def _unrecorded_picture(path: str, manifest: dict[str, Any], run_dir: str | os.PathLike) -> bool:
    """A picture a run's story names that its record does not keep: a run that copied its pictures into
    inputs/ records each one, so any other path was written into story.json by hand."""
    from ..run_records import recorded_inputs

    if not recorded_inputs(manifest):  # no copies on record (an older run, a studio's): nothing to compare with
        return False
    folder = Path(os.path.abspath(run_dir))
    inside = Path(path).is_relative_to(folder)
    return not inside or Path(path).relative_to(folder).as_posix() not in recorded_inputs(manifest)


def load_run(
    run_dir: str | os.PathLike,
) -> tuple[Story, dict[int, Image.Image], dict[tuple[int, str], Crop], list[str]]:
    """The story of a run folder, its drawn panels, each character's crop where the run knows it, and notes."""
    run = Path(run_dir)
    story, entries, notes = check_run(run)
    images: dict[int, Image.Image] = {}
    for index, entry in sorted(entries.items()):
        path = run / entry["file"]
        if path.is_file():
            images[index] = read_image(path)
    missing = len(story.panels) - len(images)
    if missing:
        notes.append(
            f"{missing} of {counted(len(story.panels), 'panel')} {'is' if missing == 1 else 'are'} not drawn: the scores are of the drawn ones"
        )
    if not images:
        raise StoryDiffusionError(f"{run} has no drawn panel to evaluate")
    crops: dict[tuple[int, str], Crop] = {}
    too_small: dict[str, list[int]] = {}  # a region (whose crop the user expects) too small to say anything
    for index, image in images.items():
        panel = story.panels[index]
        masks = entries[index].get("masks") if isinstance(entries[index].get("masks"), dict) else {}
        for number, name in enumerate(panel.characters):
            crop = _region_crop(image, panel.regions[name].box) if name in panel.regions else None
            crop = crop or _mask_crop(run, image, masks, index, number, name)
            if crop is not None:
                crops[(index, name)] = crop
            elif name in panel.regions:
                too_small.setdefault(name, []).append(index + 1)
    for name, numbers in too_small.items():
        notes.append(
            f"{name}'s region in panel(s) {', '.join(map(str, numbers))} is under {MIN_CROP_PIXELS} px on a side: "
            "no crop of it is scored"
        )
    return story, images, crops, notes


def _region_crop(image: Image.Image, box: tuple[float, float, float, float]) -> Crop | None:
    width, height = image.size
    pixels = (round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height))
    if pixels[2] - pixels[0] < MIN_CROP_PIXELS or pixels[3] - pixels[1] < MIN_CROP_PIXELS:
        return None
    return image.crop(pixels), "region"


def _mask_crop(run: Path, image: Image.Image, masks: dict, index: int, number: int, name: str) -> Crop | None:
    """The bounding box of a saved subject mask, when the record names exactly this tool's file for it."""
    expected = f"{MASKS_DIR}/{mask_filename(index, number)}"
    if masks.get(name) != expected or not (run / expected).is_file():
        return None
    try:
        mask = np.asarray(read_image(run / expected).convert("L").resize(image.size, Image.NEAREST))
    except ImageInputError:
        return None
    rows, cols = np.nonzero(mask >= MASK_LEVEL)
    if rows.size == 0 or np.ptp(cols) + 1 < MIN_CROP_PIXELS or np.ptp(rows) + 1 < MIN_CROP_PIXELS:
        return None
    return image.crop((int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)), "mask"


def reference_photos(story: Story) -> tuple[dict[str, Image.Image], list[str]]:
    """The characters' reference photos that can still be read, and a note for each that cannot."""
    photos, notes = {}, []
    for name, character in story.characters.items():
        if character.reference is None:
            continue
        try:
            photos[name] = read_image(character.reference)
        except ImageInputError:
            notes.append(f"{name}'s reference photo is not readable here: no similarity to it")
    return photos, notes


def evaluate_run(
    run_dir: str | os.PathLike,
    encoder: StoryEncoder,
    *,
    dreamsim: ImageEmbedder | None = None,
    faces: Any | None = None,
    read_references: bool = True,
    references: Mapping[str, Image.Image] | None = None,
    text_prefix: str = "",
    image_encoder: ImageEmbedder | None = None,
) -> StoryScores:
    """Every score of a run folder (``story_metrics``); nothing is written.

    ``references`` are pictures to score each character against; without them, the story's reference
    photos that can be read (unless ``read_references`` is False, as on a shared server)."""
    story, images, crops, notes = load_run(run_dir)
    if references is not None:
        photos, photo_notes = dict(references), []
    else:
        photos, photo_notes = reference_photos(story) if read_references else ({}, [])
    scores = score_story(
        story,
        images,
        encoder,
        crops=crops,
        references=photos,
        dreamsim=dreamsim,
        faces=faces,
        text_prefix=text_prefix,
        image_encoder=image_encoder,
    )
    scores.notes = notes + photo_notes + scores.notes
    return scores


def metrics_record(scores: StoryScores) -> dict[str, Any]:
    """``metrics.json``'s content, with its own digest: edited by its user, it is theirs and stays."""
    from ..run_records import with_own_digest

    return with_own_digest({"format": METRICS_FORMAT, **scores.to_dict()})


def write_metrics(run_dir: str | os.PathLike, scores: StoryScores) -> Path:
    """``metrics.json`` in the run folder, atomically; a file of that name that is not ours stays untouched."""
    path = check_metrics_file(run_dir)
    write_json(path, metrics_record(scores))
    return path


def check_metrics_file(run_dir: str | os.PathLike) -> Path:
    """Where ``metrics.json`` goes, when no file of the user's is there (checked before any encoder loads)."""
    path = Path(run_dir) / METRICS_NAME
    if path.is_symlink() or (path.exists() and not _is_ours(path)):
        raise StoryDiffusionError(
            f"{path} exists and was not written by storydiffusion evaluate: move it, or print the scores with --no-write"
        )
    if path.exists() and not _unedited(path):
        raise StoryDiffusionError(
            f"{path} was edited since storydiffusion evaluate wrote it: move it to keep your edits (or delete it), "
            "or print the scores with --no-write"
        )
    return path


def _is_ours(path: Path) -> bool:
    from ..run_records import read_record

    record = read_record(path)
    return record is not None and record.get("format") == METRICS_FORMAT


def _unedited(path: Path) -> bool:
    from ..run_records import read_record, unedited

    record = read_record(path)
    return record is not None and unedited(record)


def _number(value: float | None, width: int = 9) -> str:
    return f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"


def format_scores(scores: StoryScores) -> str:
    """The scores as the CLI prints them: the story, each character, each panel."""
    lines = [f"encoder: {scores.encoder}"]
    if scores.image_encoder not in (None, scores.encoder):
        lines.append(f"between pictures: {scores.image_encoder}")
    lines.append("")
    summary = scores.summary
    lines.append("story     " + "".join(f"{key:>17}" for key in summary))
    lines.append("          " + "".join(_number(value, 17) for value in summary.values()))
    lines += ["", f"{'character':<16}{'panels':>7}{'CLIP-I':>9}{'crop':>9}{'photo':>9}{'DreamSim':>9}{'face':>9}"]
    for name, c in scores.characters.items():
        values = (c.clip_i, c.clip_i_crop, c.clip_i_reference, c.dreamsim, c.face)
        lines.append(f"{name[:15]:<16}{len(c.panels):>7}" + "".join(_number(v) for v in values))
    lines += ["", f"{'panel':>5}{'CLIP-T':>9}{'CLIPScore':>10}  CLIP-I per character"]
    for p in scores.panels:
        per_character = ", ".join(f"{name} {value:.4f}" for name, value in p.clip_i.items())
        lines.append(f"{p.panel:>5}{_number(p.clip_t)}{_number(p.clip_score, 10)}  {per_character}")
    lines += [f"note: {note}" for note in scores.notes]
    return "\n".join(lines)
