"""The story's processors for every layer but consistent self-attention, and what they add to plain
attention at cross-attention layers: the maps subject masks are made from, each character's own text
inside its region, and a reference photo's IP-Adapter attention for the images a run conditions.

Each leaves diffusers' output as it is for every token it does not concern; the per-run state comes in
the ``ConsistencyContext`` (``attention.py``), as for consistent self-attention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, IPAdapterAttnProcessor2_0

from .subject_masks import cross_attention_probabilities

if TYPE_CHECKING:  # pragma: no cover - for type hints only
    from .attention_context import ConsistencyContext


class StoryAttnProcessor(AttnProcessor2_0):
    """Plain SDPA attention that accepts the ``story_context`` keyword.

    Installed on every layer that consistent attention leaves alone, so diffusers neither warns about
    nor drops the keyword on its way to the layers that use it. At a cross-attention layer of a run
    that tracks subjects it also hands the run the conditional half's attention maps; its output stays
    diffusers' own.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        story_context: ConsistencyContext | None = None,
    ) -> torch.Tensor:
        if story_context is not None and story_context.subject is not None and encoder_hidden_states is not None:
            record_cross_attention(attn, hidden_states, encoder_hidden_states, story_context)
        output = super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        places = story_context.places if story_context is not None else None
        if places is not None and places.texts and encoder_hidden_states is not None:
            output = regional_cross_attention(attn, hidden_states, output, story_context)
        return output


def story_processor(current: Any) -> Any:
    """The story's processor for a layer consistent attention leaves alone, given the one it has now:
    an IP-Adapter's is kept inside ``ReferenceAttnProcessor``, a story processor stays, anything else
    becomes ``StoryAttnProcessor``."""
    if isinstance(current, IPAdapterAttnProcessor2_0):
        return ReferenceAttnProcessor(current)
    if type(current) is StoryAttnProcessor or isinstance(current, ReferenceAttnProcessor):
        return current
    return StoryAttnProcessor()


class ReferenceAttnProcessor(torch.nn.Module):
    """A cross-attention layer with an IP-Adapter: the story's own processing of the text (maps, regions),
    plus, for each image the run gives a scale, ``scale`` times the adapter's attention to the image tokens.

    ``to_out(text + s * image) == to_out(text) + s * W_out(image)``: the image term is added after the
    output projection, so an image with scale 0 gets exactly the adapter-free result.
    """

    def __init__(self, adapter: IPAdapterAttnProcessor2_0):
        super().__init__()
        self.adapter = adapter  # holds to_k_ip / to_v_ip, loaded by diffusers
        self.text = StoryAttnProcessor()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        story_context: ConsistencyContext | None = None,
    ) -> torch.Tensor:
        image_states = None
        if isinstance(encoder_hidden_states, tuple):
            encoder_hidden_states, image_states = encoder_hidden_states
        output = self.text(attn, hidden_states, encoder_hidden_states, attention_mask, temb, story_context)
        scales = story_context.reference_scales if story_context is not None else None
        if image_states is None or scales is None or hidden_states.ndim != 3:
            return output
        images = len(scales)
        rows = [row for row in range(hidden_states.shape[0]) if scales[row % images] != 0]
        if not rows:
            return output
        index = torch.tensor(rows, device=hidden_states.device)
        term = self.image_attention(attn, hidden_states.index_select(0, index), image_states, index)
        row_scales = torch.tensor([scales[row % images] for row in rows], device=term.device, dtype=term.dtype)
        return output.index_add(0, index, term * row_scales[:, None, None])

    def image_attention(
        self, attn: Attention, hidden_states: torch.Tensor, image_states: list[torch.Tensor], rows: torch.Tensor
    ) -> torch.Tensor:
        """W_out of the attention of ``hidden_states`` to each adapter's image tokens (no bias, no residual)."""
        batch, _, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        head_dim = query.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        total = torch.zeros_like(query.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim))
        for states, to_k, to_v in zip(image_states, self.adapter.to_k_ip, self.adapter.to_v_ip):
            states = own_image_tokens(states, rows)
            key = to_k(states).view(batch, -1, attn.heads, head_dim).transpose(1, 2)
            value = to_v(states).view(batch, -1, attn.heads, head_dim).transpose(1, 2)
            attended = F.scaled_dot_product_attention(query, key, value)
            total = total + attended.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        return F.linear(total, attn.to_out[0].weight) / attn.rescale_output_factor


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


def own_image_tokens(states: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The adapter tokens of each of ``rows``: (rows, tokens, channels). A batch's photos come as the
    "images" of one prompt, every row holding all of them (rows, images, tokens, channels), and row ``r``
    reads image ``r % images``; 3-d states (one photo for every row, diffusers' own form) pass as they are."""
    picked = states.index_select(0, rows)
    if picked.ndim == 4:
        images = states.shape[1]
        picked = picked[torch.arange(len(rows), device=rows.device), rows % images]
    return picked
