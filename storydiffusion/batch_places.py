"""Who is where in one batch of a run: the subject masks to measure, and the places of the characters
of panels that show several (``places.Places``), built from the story.

Masks are measured only where they are used: under ``consistency: subject`` for the images whose
tokens others sample, for panels of several characters without regions (their tokens are placed by
the masks), and for every panel when the run keeps its masks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .bank import IdentityBank
from .places import Places, RegionalText
from .planning import Batch, PlannedImage
from .story import Story
from .story_run import StoryRun
from .subject_masks import SubjectMaps, TrackedImage, phrase_positions


def character_labels(story: Story) -> dict[str, int]:
    """Each character's label in masks and places: its number in the story, from 1 (0 is nobody)."""
    return {name: number for number, name in enumerate(story.characters, start=1)}


def placed_by_masks(story: Story, batch: Batch) -> set[int]:
    """Batch positions of panels that show several characters, give no regions and read identities."""
    found = set()
    for position, (planned, slot) in enumerate(zip(batch.images, batch.slots)):
        if planned.panel_index is None or not (slot.reads_batch or slot.reads_bank):
            continue
        panel = story.panels[planned.panel_index]
        if len(panel.characters) > 1 and not panel.regions:
            found.add(position)
    return found


def subject_maps(
    run: StoryRun, batch: Batch, prompts: list[str], tokenizer: Any, latent_size: tuple[int, int]
) -> SubjectMaps | None:
    """The batch's subject masks where they are used; None when no image needs them (nothing is measured)."""
    sampled = {q for slot in batch.slots for q in slot.reads_batch}
    sampled |= {position for position, slot in enumerate(batch.slots) if slot.writes}
    subject = run.settings.consistency == "subject" and batch.consistent
    by_masks = placed_by_masks(run.story, batch)
    tracked = []
    for position, (planned, prompt) in enumerate(zip(batch.images, prompts)):
        kept = run.keep_masks and planned.panel_index in run.wanted
        if kept or position in by_masks or (subject and position in sampled):
            tracked.append(TrackedImage(position, characters_in(run.story, planned, prompt, tokenizer)))
    if not any(entry.characters for entry in tracked):
        return None
    return SubjectMaps(tracked, latent_size, run.settings.subject_threshold)


def characters_in(story: Story, planned: PlannedImage, prompt: str, tokenizer: Any) -> tuple:
    """(name, label, positions of its description's tokens in ``prompt``) of each character of an image."""
    names = (planned.character,) if planned.panel_index is None else story.panels[planned.panel_index].characters
    labels = character_labels(story)
    return tuple(
        (name, labels[name], phrase_positions(tokenizer, prompt, story.characters[name].description))
        for name in names
        if name in labels
    )


def batch_places(
    run: StoryRun,
    batch: Batch,
    subject: SubjectMaps | None,
    latent_size: tuple[int, int],
    encode: Callable[[list[str]], torch.Tensor],
) -> Places | None:
    """Where the characters of the batch's panels stand: their regions (each with its own text, encoded
    by ``encode``) or, without regions, their subject masks; None when no panel places anyone."""
    labels = character_labels(run.story)
    regions, texts = {}, {}
    for position, planned in enumerate(batch.images):
        if planned.panel_index is None or not run.story.panels[planned.panel_index].regions:
            continue
        panel_regions = run.story.panels[planned.panel_index].regions
        regions[position] = [(labels[name], region) for name, region in panel_regions.items()]
        styled = [run.style.apply(run.story.region_text(planned.panel_index, name))[0] for name in panel_regions]
        embeddings = encode(styled)
        texts[position] = [RegionalText(label, embeddings[k : k + 1]) for k, (label, _) in enumerate(regions[position])]
    by_masks = placed_by_masks(run.story, batch)
    if not regions and not by_masks:
        return None
    return Places(latent_size, regions, frozenset(by_masks), subject, identity_owners(run.story, run.bank), texts)


def identity_owners(story: Story, bank: IdentityBank) -> dict[int, int]:
    """The label of the one character each source image shows: identity images as the bank records them,
    panels of one character; panels of several are nobody's (0), so only unplaced tokens read them."""
    labels = character_labels(story)
    owners = {index: labels[p.characters[0]] for index, p in enumerate(story.panels) if len(p.characters) == 1}
    for name, sources in bank.characters.items():
        owners.update((source, labels[name]) for source in sources if name in labels)
    return owners
