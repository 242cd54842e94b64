"""What a run gives back: progress after each step, finished panels, and the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from .bank import IdentityBank
from .models import ModelSpec
from .settings import GenerationSettings
from .story import Story


@dataclass
class Progress:
    """What a progress callback is told after each denoising step."""

    batch: int
    batches: int
    step: int
    steps: int
    panels: list[int]  # 0-based indices of the story panels in this batch
    kind: str
    panels_done: int
    panels_total: int

    @property
    def fraction(self) -> float:
        return ((self.batch + self.step / max(self.steps, 1)) / max(self.batches, 1)) if self.batches else 1.0

    def drawing(self) -> str:
        """What this step draws, as progress lines say it: ``panels 1-4``, ``panels 2, 5``, ``panel 3``,
        ``reference portraits``; ``(identity set)`` after the panels whose images the others will read."""
        if not self.panels:
            return "reference portraits"
        numbers = [index + 1 for index in self.panels]
        consecutive = len(numbers) > 1 and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
        listed = f"{numbers[0]}-{numbers[-1]}" if consecutive else ", ".join(map(str, numbers))
        shown = f"{'panel' if len(numbers) == 1 else 'panels'} {listed}"
        return shown + (" (identity set)" if self.kind == "identity" else "")


@dataclass
class PanelImage:
    index: int  # 0-based
    image: Image.Image
    seed: int
    prompt: str
    negative_prompt: str
    characters: tuple[str, ...]
    identity: bool  # generated in its character's identity set
    # Per character shown, where it is in the image (white) as its subject mask found it, when kept
    # (``generate(keep_masks=True)``, ``--save-masks``); empty otherwise.
    masks: dict[str, Image.Image] = field(default_factory=dict)


@dataclass
class StoryResult:
    """Panels of one run plus everything needed to reproduce or continue it."""

    story: Story
    settings: GenerationSettings
    model: ModelSpec
    panels: list[PanelImage]
    bank: IdentityBank | None
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False
    scheduler: str = ""
    consistent_layers: int = 0
    seconds: float = 0.0
    # Photos and control images the run was given in memory for fields whose story names no file, by field
    # (``characters.Nora.reference``, ``panels[3].control.image``): a saved run keeps them in inputs/.
    pictures: dict[str, Image.Image] = field(default_factory=dict, repr=False)

    def panel(self, index: int) -> PanelImage:
        for panel in self.panels:
            if panel.index == index:
                return panel
        raise KeyError(f"panel {index + 1} was not generated in this run")
