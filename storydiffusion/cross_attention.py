"""What the story's cross-attention layers add to plain attention: the maps subject masks are made from,
and each character's own text inside its region.

Both leave diffusers' output as it is for every token they do not concern; the per-run state comes in
the ``ConsistencyContext`` (``attention.py``), as for consistent self-attention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from .subject_masks import cross_attention_probabilities

if TYPE_CHECKING:  # pragma: no cover - for type hints only
    from .attention import ConsistencyContext


def regional_cross_attention(
    attn: Attention, hidden_states: torch.Tensor, output: torch.Tensor, context: ConsistencyContext
) -> torch.Tensor:
    """``output`` with the conditional-half tokens of each character's region attending to that character's
    own text instead of the panel's: the same layer on those tokens only, with the region's prompt."""
    places, images = context.places, context.num_images
    if hidden_states.ndim != 3 or hidden_states.shape[0] % images:
        return output
    last_half = hidden_states.shape[0] - images
    output = output.clone()
    for image, texts in places.texts.items():
        labels = places.labels(image, context.step, hidden_states.shape[1], hidden_states.device)
        if labels is None:
            continue
        row = last_half + image
        for text in texts:
            tokens = (labels == text.label).nonzero().squeeze(1)
            if len(tokens):
                inside = hidden_states[row : row + 1].index_select(1, tokens)
                embeddings = text.embeddings.to(hidden_states.device, hidden_states.dtype)
                output[row, tokens] = AttnProcessor2_0()(attn, inside, embeddings)[0]
    return output


def record_cross_attention(
    attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, context: ConsistencyContext
) -> None:
    """Give the run's ``SubjectMaps`` this layer's attention of the tracked images (conditional half, the
    last one of the batch), at the current step."""
    images = context.subject.images
    if not images or hidden_states.ndim != 3 or hidden_states.shape[0] % context.num_images:
        return
    last_half = hidden_states.shape[0] - context.num_images
    with torch.no_grad():
        rows = [last_half + image for image in images]
        probabilities = cross_attention_probabilities(attn, hidden_states, encoder_hidden_states, rows)
    context.subject.record(context.step, probabilities)
