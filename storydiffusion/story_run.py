"""One ``generate`` call while it walks its plan: prompts, progress, cancellation, the panels it keeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from PIL import Image

from .bank import IdentityBank
from .errors import GenerationCancelled
from .planning import Batch, PlannedImage
from .prompts import image_prompts
from .results import PanelImage, Progress
from .settings import GenerationSettings
from .story import Story
from .styles import Style
from .subject_masks import SubjectMaps

Cancel = threading.Event | Callable[[], bool] | None


def is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


@dataclass
class StoryRun:
    """One ``generate`` call while it walks its plan: what to draw, for whom, and whom to tell."""

    story: Story
    settings: GenerationSettings
    style: Style
    bank: IdentityBank
    plan: list[Batch]
    wanted: set[int]
    callback: Callable[[Progress], None] | None
    on_panel: Callable[[PanelImage], None] | None
    cancel: Cancel
    keep_masks: bool = False
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)  # reference photos' embeddings by character
    control_maps: dict[int, Image.Image] = field(default_factory=dict)  # panels' ControlNet maps by panel index

    @property
    def total(self) -> int:
        return sum(1 for batch in self.plan for image in batch.images if image.panel_index in self.wanted)

    def prompts(self, planned: PlannedImage) -> tuple[str, str]:
        return image_prompts(self.story, self.style, self.settings, planned)

    def raise_if_cancelled(self) -> None:
        if is_cancelled(self.cancel):
            raise GenerationCancelled()

    def step_callback(self, number: int, batch: Batch, done: int) -> Callable[[int], None]:
        """Called after each step of batch ``number``: report progress, then stop if cancelled."""
        panels = [image.panel_index for image in batch.images if image.panel_index is not None]
        batches, steps, total = len(self.plan), self.settings.steps, self.total

        def on_step(step: int) -> None:
            if self.callback is not None:
                self.callback(Progress(number, batches, step, steps, panels, batch.kind, done, total))
            self.raise_if_cancelled()

        return on_step

    def remember(self, batch: Batch) -> None:
        """Record a finished identity set in the bank, and forget the sources the plan no longer needs."""
        if batch.kind == "identity":
            self.bank.characters[batch.character] = [image.source_id for image in batch.images]
            self.bank.descriptions[batch.character] = self.story.characters[batch.character].description
        if batch.forget_after:
            self.bank.drop(batch.forget_after)

    def finished_panels(
        self, batch: Batch, images: list[Image.Image], subject: SubjectMaps | None = None
    ) -> list[PanelImage]:
        """The wanted story panels among a batch's images (reference portraits are not panels), with
        their masks when the run keeps them."""
        panels = []
        for position, (planned, image) in enumerate(zip(batch.images, images)):
            if planned.panel_index is None or planned.panel_index not in self.wanted:
                continue
            prompt, negative = self.prompts(planned)
            panels.append(
                PanelImage(
                    index=planned.panel_index,
                    image=image,
                    seed=planned.seed,
                    prompt=prompt,
                    negative_prompt=negative,
                    characters=tuple(self.story.panels[planned.panel_index].characters),
                    identity=batch.kind == "identity",
                    masks=mask_images(subject, position, image.size) if self.keep_masks else {},
                )
            )
        return panels


def mask_images(subject: SubjectMaps | None, position: int, size: tuple[int, int]) -> dict[str, Image.Image]:
    """Each character's final mask of batch image ``position`` as a black and white picture of ``size``."""
    if subject is None:
        return {}
    pictures = {}
    for name, mask in subject.final_masks(position).items():
        pixels = (mask.to("cpu", dtype=torch.uint8) * 255).numpy()
        pictures[name] = Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST)
    return pictures
