"""Subject masks: which image tokens show each character, read from the cross-attention maps of the
tokens of its description.

Consistent attention shares tokens between images. Shared uniformly (the paper's way), a panel reads
the other panels' backgrounds as much as their faces, and backgrounds and outfits bleed. Under
``consistency: subject`` an image shares only the tokens its characters occupy. Where they are comes
from the UNet itself: during each step every cross-attention layer says how much each image token
attends to each prompt token; averaged over the tokens of a character's description, the heads and
the layers, smoothed and thresholded, that is the character's mask. The masks a step uses are those of
the step before (a self-attention layer runs before the cross-attention of its own block), so the
first step after the warm-up already has one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

MAX_PROMPT_TOKENS = 77  # CLIP's context: begin, 75 words' tokens, end
HISTOGRAM_BINS = 64  # Otsu's threshold over the normalised map


@dataclass(frozen=True)
class TrackedImage:
    """An image of a batch whose characters get masks: per character, its label (1-based, the story's
    character order) and the positions of its description's tokens in the image's prompt."""

    image: int
    characters: tuple[tuple[str, int, tuple[int, ...]], ...]  # (name, label, token positions)


def phrase_positions(tokenizer: Any, prompt: str, phrase: str) -> tuple[int, ...]:
    """Positions in ``prompt``'s 77 CLIP tokens (0 is the start token) of every occurrence of ``phrase``'s
    tokens; CLIP's BPE splits word by word, so a description inside a prompt keeps its token ids.
    Occurrences cut off by the 77-token limit count only up to it."""
    prompt_ids = list(tokenizer(prompt, truncation=True, max_length=MAX_PROMPT_TOKENS).input_ids)
    phrase_ids = list(tokenizer(phrase, add_special_tokens=False).input_ids)
    if not phrase_ids:
        return ()
    found: list[int] = []
    last = len(prompt_ids) - 1  # the end token
    truncated = len(tokenizer(prompt, truncation=False).input_ids) > MAX_PROMPT_TOKENS
    for start in range(1, last):
        window = prompt_ids[start : min(start + len(phrase_ids), last)]
        cut_off = truncated and start + len(phrase_ids) > last  # only the limit may shorten an occurrence
        if window and (window == phrase_ids or (cut_off and window == phrase_ids[: len(window)])):
            found.extend(range(start, start + len(window)))
    return tuple(sorted(set(found)))


def token_grid(latent_size: tuple[int, int], num_tokens: int) -> tuple[int, int]:
    """The (height, width) of a layer's feature map with ``num_tokens`` tokens: the latent halved (rounding
    up, as a stride-2 convolution does) until it has that many."""
    height, width = latent_size
    while height * width > num_tokens and height * width > 1:
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    if height * width != num_tokens:
        raise ValueError(f"{num_tokens} tokens are no downscaled grid of a {latent_size[0]}x{latent_size[1]} latent")
    return height, width


def otsu_threshold(values: torch.Tensor) -> float:
    """The threshold that best splits ``values`` (in [0, 1]) into two classes (Otsu's method)."""
    histogram = torch.histc(values.float().flatten(), bins=HISTOGRAM_BINS, min=0.0, max=1.0)
    probability = histogram / histogram.sum().clamp_min(1)
    centres = (torch.arange(HISTOGRAM_BINS, dtype=torch.float32, device=values.device) + 0.5) / HISTOGRAM_BINS
    below = probability.cumsum(0)
    mean_below = (probability * centres).cumsum(0)
    total_mean = mean_below[-1]
    between = (total_mean * below - mean_below) ** 2 / (below * (1 - below)).clamp_min(1e-12)
    best = int(between[:-1].argmax())
    return float((best + 1) / HISTOGRAM_BINS)


def smooth(maps: torch.Tensor) -> torch.Tensor:
    """A 3x3 Gaussian blur of (count, height, width) maps, so one stray token neither joins nor leaves a mask."""
    kernel = torch.tensor([1.0, 2.0, 1.0], device=maps.device)
    kernel = (kernel[:, None] * kernel[None, :]) / 16.0
    padded = F.pad(maps[:, None].float(), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel[None, None]).squeeze(1)


def normalised(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1]; a flat map is all zeros (nothing stands out as the subject)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


class SubjectMaps:
    """One batch's cross-attention maps per step, and the character masks drawn from them.

    ``record`` is called by each cross-attention layer with the attention of the tracked images'
    conditional half; ``mask``/``labels`` give, at a self-attention layer's resolution, the masks of the
    latest step recorded before the current one (None before the first). ``threshold`` None picks each
    map's threshold by Otsu's method.
    """

    def __init__(self, tracked: Sequence[TrackedImage], latent_size: tuple[int, int], threshold: float | None = None):
        self.tracked = {entry.image: entry for entry in tracked if entry.characters}
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.grid = (math.ceil(self.latent_size[0] / 2), math.ceil(self.latent_size[1] / 2))
        self.threshold = threshold
        self._sums: dict[int, dict[int, torch.Tensor]] = {}  # step -> image -> (characters, grid) summed maps
        self._counts: dict[int, int] = {}
        self._soft: dict[tuple[int, int], torch.Tensor] = {}  # (step, image) -> normalised smoothed maps
        self._resized: dict[tuple[int, int, int], torch.Tensor] = {}  # (step, image, tokens) -> labels

    @property
    def images(self) -> list[int]:
        """Batch positions of the tracked images, in order."""
        return sorted(self.tracked)

    def record(self, step: int, probabilities: torch.Tensor) -> None:
        """Add one layer's attention: (tracked images, image tokens, prompt tokens), heads averaged."""
        num_tokens = probabilities.shape[1]
        height, width = token_grid(self.latent_size, num_tokens)
        sums = self._sums.setdefault(step, {})
        for row, image in enumerate(self.images):
            positions = [list(entry[2]) for entry in self.tracked[image].characters]
            maps = torch.stack(
                [probabilities[row][:, p].mean(dim=-1) if p else probabilities.new_zeros(num_tokens) for p in positions]
            ).float()
            maps = F.interpolate(maps.view(1, -1, height, width), size=self.grid, mode="bilinear", align_corners=False)
            sums[image] = sums[image] + maps[0] if image in sums else maps[0]
        self._counts[step] = self._counts.get(step, 0) + 1
        for old in [s for s in self._sums if s < step - 1]:  # keep the step being written and the one before
            self._forget(old)

    def _forget(self, step: int) -> None:
        self._sums.pop(step, None)
        self._counts.pop(step, None)
        self._soft = {key: value for key, value in self._soft.items() if key[0] != step}
        self._resized = {key: value for key, value in self._resized.items() if key[0] != step}

    def _source_step(self, step: int) -> int | None:
        earlier = [s for s in self._sums if s < step]
        return max(earlier) if earlier else None

    def soft_maps(self, image: int, step: int | None = None) -> torch.Tensor | None:
        """(characters, grid) maps in [0, 1] of ``image`` recorded at ``step`` (default: the latest)."""
        if step is None:
            step = max(self._sums, default=None)
        if step is None or image not in self._sums.get(step, {}):
            return None
        key = (step, image)
        if key not in self._soft:
            self._soft[key] = normalised(smooth(self._sums[step][image] / self._counts[step]))
        return self._soft[key]

    def labels(self, image: int, step: int, num_tokens: int) -> torch.Tensor | None:
        """Per token of a ``num_tokens`` layer, the label of the character it shows (0: none), from the
        masks of the step before ``step``; None when ``image`` is not tracked or no step was recorded yet."""
        source = self._source_step(step)
        if source is None or image not in self.tracked:
            return None
        key = (source, image, num_tokens)
        if key not in self._resized:
            self._resized[key] = self._labels_at(self.soft_maps(image, source), image, num_tokens)
        return self._resized[key]

    def _labels_at(self, soft: torch.Tensor, image: int, num_tokens: int) -> torch.Tensor:
        size = token_grid(self.latent_size, num_tokens)
        resized = F.interpolate(soft[None], size=size, mode="bilinear", align_corners=False)[0].flatten(1)
        inside = torch.stack([resized[k] >= self.threshold_of(soft[k]) for k in range(len(soft))])
        strongest = torch.where(inside, resized, torch.full_like(resized, -1.0)).argmax(dim=0)
        labels = torch.tensor([entry[1] for entry in self.tracked[image].characters], device=soft.device)
        return torch.where(inside.any(dim=0), labels[strongest], torch.zeros_like(strongest))

    def threshold_of(self, soft_map: torch.Tensor) -> float:
        """The threshold of one character's normalised map: the fixed one, or Otsu's (never 0: a flat
        map selects nothing)."""
        if soft_map.max() <= 0:
            return math.inf
        return self.threshold if self.threshold is not None else otsu_threshold(soft_map)

    def mask(self, image: int, step: int, num_tokens: int) -> torch.Tensor | None:
        """Per token of a ``num_tokens`` layer, whether it shows any of the image's characters."""
        labels = self.labels(image, step, num_tokens)
        return None if labels is None else labels > 0

    def final_masks(self, image: int) -> dict[str, torch.Tensor]:
        """Each character's mask of the last recorded step at the latent's half resolution: what
        ``--save-masks`` writes."""
        soft = self.soft_maps(image)
        if soft is None:
            return {}
        return {
            entry[0]: soft[k] >= self.threshold_of(soft[k]) for k, entry in enumerate(self.tracked[image].characters)
        }


def cross_attention_probabilities(
    attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, rows: list[int]
) -> torch.Tensor:
    """softmax(q k^T * scale) of the ``rows`` of a batch, averaged over heads: (rows, image tokens, prompt
    tokens). Computed apart from the layer's own output, which stays exactly diffusers'."""
    index = torch.tensor(rows, device=hidden_states.device)
    hidden = hidden_states.index_select(0, index)
    context = encoder_hidden_states.index_select(0, index)
    if attn.norm_cross:
        context = attn.norm_encoder_hidden_states(context)
    query, key = attn.to_q(hidden), attn.to_k(context)
    head_dim = query.shape[-1] // attn.heads
    query = query.view(len(rows), -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(len(rows), -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    scores = (query.float() @ key.float().transpose(-1, -2)) * attn.scale
    return scores.softmax(dim=-1).mean(dim=1)


def subject_signature(settings: Any) -> dict[str, Any]:
    """The bank signature's entries for subject consistency; none under uniform, so banks saved before
    it existed still read."""
    if settings.consistency == "uniform":
        return {}
    return {"consistency": settings.consistency, "subject_threshold": settings.subject_threshold}
