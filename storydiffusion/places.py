"""Which character each image token belongs to, in a batch of panels that show several characters.

A panel with several characters reads all their identity images; without care, Bob's face reads
Alice's tokens and the two drift towards each other. Here each token of such a panel gets a label, the
story's number of the character it belongs to (0: nobody's): from the regions the story gives
(``story/regions.py``), else from the subject masks of the step before (``subject_masks``). Consistent
attention then lets a labelled token read only the identity images of its own character, and with
explicit regions cross-attention conditions it on its own character's text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .story.regions import Region, region_of_token
from .subject_masks import SubjectMaps, token_grid


@dataclass
class RegionalText:
    """One character's own text for the tokens of its region: its label and the encoded prompt
    (1, prompt tokens, channels) the cross-attention of those tokens reads instead of the panel's."""

    label: int
    embeddings: torch.Tensor


@dataclass
class Places:
    """Per batch image, the character of each token: explicit ``regions`` (label, region) or, for the
    images in ``from_masks``, the subject masks; ``owners`` says whose identity each source image holds."""

    latent_size: tuple[int, int]
    regions: Mapping[int, Sequence[tuple[int, Region]]] = field(default_factory=dict)
    from_masks: frozenset[int] = frozenset()
    subject: SubjectMaps | None = None
    owners: Mapping[int, int] = field(default_factory=dict)
    texts: Mapping[int, Sequence[RegionalText]] = field(default_factory=dict)
    _cache: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    def labels(self, image: int, step: int, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """Per token of a ``num_tokens`` layer of batch image ``image``, its character's label (0: none);
        None: the image's tokens read every source it reads (one character, or no masks yet)."""
        if image in self.regions:
            key = (image, num_tokens)
            if key not in self._cache:
                self._cache[key] = region_labels(self.regions[image], token_grid(self.latent_size, num_tokens))
            return self._cache[key].to(device)
        if image in self.from_masks and self.subject is not None:
            labels = self.subject.labels(image, step, num_tokens)
            return None if labels is None else labels.to(device)
        return None

    def owner(self, source_id: int) -> int:
        """The label of the character whose identity a source image holds (0: several or none)."""
        return self.owners.get(source_id, 0)


def region_labels(regions: Sequence[tuple[int, Region]], grid: tuple[int, int]) -> torch.Tensor:
    """Per token of a (height, width) grid, the label of the region holding the token's centre (0: none)."""
    height, width = grid
    boxes = [region for _, region in regions]
    labels = torch.zeros(height * width, dtype=torch.long)
    for row in range(height):
        for column in range(width):
            found = region_of_token(boxes, (column + 0.5) / width, (row + 0.5) / height)
            if found is not None:
                labels[row * width + column] = regions[found][0]
    return labels
