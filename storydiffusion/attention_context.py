"""The per-run state Consistent Self-Attention reads: which image reads or writes whose tokens, and the
seeded sample of tokens each image shares at a step and layer.

It travels to the processors through ``cross_attention_kwargs={"story_context": context}``; the
processors hold none of it, so two stories can be drawn at once with one UNet.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .bank import IdentityBank
from .places import Places
from .settings import CONSISTENCY_KINDS
from .subject_masks import SubjectMaps

SourceKey = tuple[str, int]  # ("batch", slot) or ("bank", source id)


@dataclass(frozen=True)
class ImageSlot:
    """What one image of a batch does in consistent attention.

    ``source_id`` names the image in the story (its sample is keyed by it); ``reads_batch`` are the
    slots of the same batch whose sampled tokens it attends to; ``reads_bank`` are source ids whose
    cached tokens it attends to; ``writes`` stores its own sample into the bank.
    """

    source_id: int
    reads_batch: tuple[int, ...] = ()
    reads_bank: tuple[int, ...] = ()
    writes: bool = False


def stable_hash(*parts: object) -> int:
    """A 63-bit integer from the parts, stable across processes (unlike ``hash``)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class ConsistencyContext:
    """Per-batch state of one run: slots, the current step, sampling rates, the bank.

    The pipeline advances ``step`` from its step callback; it is never inferred from processor calls.
    """

    def __init__(
        self,
        slots: list[ImageSlot],
        *,
        seed: int,
        latent_tokens: int,
        total_steps: int,
        rate_for_factor: Callable[[int], float] = lambda factor: 0.5,
        first_consistent_step: int = 0,
        skip_early: float = 0.0,
        skip_late: float = 0.0,
        bank: IdentityBank | None = None,
        consistency: str = "uniform",
        subject: SubjectMaps | None = None,
        places: Places | None = None,
        reference_scales: list[float] | None = None,
    ):
        if consistency not in CONSISTENCY_KINDS:
            raise ValueError(f"consistency must be one of {', '.join(CONSISTENCY_KINDS)}, got {consistency!r}")
        self.slots = list(slots)
        self.seed = int(seed)
        self.latent_tokens = int(latent_tokens)
        self.total_steps = int(total_steps)
        self.rate_for_factor = rate_for_factor
        self.first_consistent_step = int(first_consistent_step)
        self.skip_early = float(skip_early)
        self.skip_late = float(skip_late)
        self.bank = bank
        self.consistency = consistency
        self.subject = subject  # the batch's cross-attention maps and the masks drawn from them
        self.places = places  # which character each token of a several-character panel belongs to
        self.reference_scales = reference_scales  # per image, how strongly its reference photo conditions it
        self.step = 0
        for slot in self.slots:
            if (slot.writes or slot.reads_bank) and bank is None:
                raise ValueError("a slot reads or writes the identity bank but the context has none")

    @property
    def num_images(self) -> int:
        return len(self.slots)

    @property
    def shares(self) -> bool:
        """Whether any image reads or writes another's tokens (else every layer is plain attention)."""
        return any(slot.reads_batch or slot.reads_bank or slot.writes for slot in self.slots)

    def subject_mask(self, image: int, num_tokens: int) -> torch.Tensor | None:
        """Under ``consistency="subject"``, the tokens of batch image ``image`` that show its characters at
        a ``num_tokens`` layer (the previous step's masks); None: sample from every token."""
        if self.consistency != "subject" or self.subject is None:
            return None
        return self.subject.mask(image, self.step, num_tokens)

    def token_owners(self, image: int, num_tokens: int, device: torch.device) -> torch.Tensor | None:
        """Per token of batch image ``image``, the label of the character it belongs to (0: none), or None
        when its tokens may read every source it reads."""
        if self.places is None:
            return None
        return self.places.labels(image, self.step, num_tokens, device)

    def source_owner(self, source: SourceKey) -> int:
        """The label of the character whose identity a source holds (0: several or none)."""
        kind, number = source
        source_id = self.slots[number].source_id if kind == "batch" else number
        return self.places.owner(source_id) if self.places is not None else 0

    def is_active(self, layer_index: int) -> bool:
        """Consistent attention at this step and layer, or plain (warm-up steps, random skip)?"""
        if self.step < self.first_consistent_step:
            return False
        skip = self.skip_early if self.step < 0.4 * self.total_steps else self.skip_late
        if skip <= 0.0:
            return True
        draw = stable_hash(self.seed, "skip", self.step, layer_index) / float(2**63)
        return draw >= skip

    def sample_count(self, num_tokens: int) -> int:
        """How many tokens of each source image a reader gets at this layer's resolution."""
        factor = max(1, round(math.sqrt(self.latent_tokens / num_tokens)))
        return int(round(self.rate_for_factor(factor) * num_tokens))

    def sample_indices(
        self, layer_index: int, source_id: int, num_tokens: int, device: torch.device, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Sorted token indices of ``source_id`` that readers see at the current step and layer.

        With a ``mask`` (subject consistency) the sample keeps, of the same random order, only masked
        tokens: as many as the rate gives, or all of them when the subject is smaller. An empty mask
        says nothing about where the subject is, so the sample is then the unmasked one.
        """
        generator = torch.Generator(device="cpu").manual_seed(stable_hash(self.seed, self.step, layer_index, source_id))
        order = torch.randperm(num_tokens, generator=generator)
        if mask is not None and bool(mask.any()):
            order = order[mask.cpu()[order]]
        chosen = order[: self.sample_count(num_tokens)]
        return chosen.sort().values.to(device)
