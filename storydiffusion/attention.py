"""Consistent Self-Attention (StoryDiffusion) as diffusers attention processors.

Inside a self-attention layer, each image's keys and values are its own tokens plus a random sample
of the tokens of the other images it should stay consistent with; queries are unchanged. The sample
of an image depends only on (run seed, step, layer, image), so every reader of that image sees the
same tokens whether the image is in the same batch or cached in an identity bank.

The per-run state (``ConsistencyContext``) reaches the processors through the pipeline's
``cross_attention_kwargs={"story_context": context}``: the processors themselves hold no run state,
so two stories can be generated at once with the same UNet.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_processor import Attention

from .attention_context import ConsistencyContext, ImageSlot, SourceKey, stable_hash
from .attention_kernels import Kernel, pick_kernel, sdpa_kernel, xformers_kernel
from .cross_attention import StoryAttnProcessor, story_processor
from .errors import SettingsError, shown

__all__ = [
    "LAYER_SETS",
    "ConsistencyContext",
    "ConsistentSelfAttnProcessor",
    "ImageSlot",
    "SourceKey",
    "attend_by_owner",
    "attend_group",
    "check_block_sets",
    "consistent_layer_names",
    "consistent_self_attention",
    "gather_extra_tokens",
    "gather_sources",
    "install_consistent_attention",
    "project_sources",
    "reader_groups",
    "stable_hash",
]

LAYER_SETS = ("up", "down", "mid", "all")


def gather_sources(
    grouped: torch.Tensor, context: ConsistencyContext, layer_index: int, bank_tokens: bool = True
) -> tuple[dict[SourceKey, torch.Tensor], list[list[SourceKey]]]:
    """Each source's sampled tokens (once), and per image the sources it reads, in order.

    ``grouped`` is (halves, images, tokens, channels): CFG halves are kept apart, so a sample never
    crosses from the unconditional half to the conditional one. Tokens are (halves, sampled,
    channels), before projection. Writing images store their sample in the bank on the way.
    Without ``bank_tokens`` the bank's sources are named in the reads but not fetched.
    """
    _, _, num_tokens, _ = grouped.shape
    if context.sample_count(num_tokens) == 0:
        return {}, [[] for _ in context.slots]
    reads = [
        [("batch", q) for q in slot.reads_batch] + [("bank", sid) for sid in slot.reads_bank] for slot in context.slots
    ]
    sampled = {q for slot in context.slots for q in slot.reads_batch}
    sampled |= {index for index, slot in enumerate(context.slots) if slot.writes}
    sources: dict[SourceKey, torch.Tensor] = {}
    for index in sorted(sampled):
        slot = context.slots[index]
        mask = context.subject_mask(index, num_tokens)
        chosen = context.sample_indices(layer_index, slot.source_id, num_tokens, grouped.device, mask)
        tokens = grouped[:, index].index_select(1, chosen)
        if slot.writes:
            context.bank.put(slot.source_id, context.step, layer_index, tokens)
        sources[("batch", index)] = tokens
    if bank_tokens:
        for sid in sorted({sid for slot in context.slots for sid in slot.reads_bank}):
            sources[("bank", sid)] = context.bank.get(sid, context.step, layer_index, grouped.device)
    return sources, reads


def gather_extra_tokens(
    grouped: torch.Tensor, context: ConsistencyContext, layer_index: int
) -> list[torch.Tensor | None]:
    """Per image, the other images' sampled tokens it attends to (halves, extra, channels), or None."""
    sources, reads = gather_sources(grouped, context, layer_index)
    return [torch.cat([sources[key] for key in keys], dim=1) if keys else None for keys in reads]


def reader_groups(reads: list[list[SourceKey]]) -> list[tuple[list[int], tuple[SourceKey, ...]]]:
    """Images that read the same sources, in batch order: each group is one attention call.

    Panels of a read batch usually read the same identity images, so the whole batch is one group and
    the bank's keys and values are expanded to it, not copied per panel.
    """
    groups: dict[tuple[SourceKey, ...], list[int]] = {}
    for index, keys in enumerate(reads):
        groups.setdefault(tuple(keys), []).append(index)
    return [(members, keys) for keys, members in groups.items()]


class ConsistentSelfAttnProcessor(StoryAttnProcessor):
    """Consistent Self-Attention for one self-attention (``attn1``) layer.

    Without a context, before the first consistent step, or at a skipped layer it is exactly
    diffusers' ``AttnProcessor2_0``.
    """

    def __init__(self, layer_index: int, layer_name: str = "", xformers: Kernel | None = None):
        super().__init__()
        self.layer_index = layer_index
        self.layer_name = layer_name
        self.xformers = xformers  # used on CUDA when given (``attention_kernels``)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        story_context: ConsistencyContext | None = None,
    ) -> torch.Tensor:
        plain = (
            story_context is None
            or not story_context.shares
            or encoder_hidden_states is not None
            or attention_mask is not None
            or hidden_states.ndim != 3
            or attn.spatial_norm is not None
            or attn.group_norm is not None
            or not story_context.is_active(self.layer_index)
        )
        if plain:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        kernel = pick_kernel(hidden_states.device, self.xformers)
        return consistent_self_attention(attn, hidden_states, story_context, self.layer_index, kernel)


def consistent_self_attention(
    attn: Attention,
    hidden_states: torch.Tensor,
    context: ConsistencyContext,
    layer_index: int,
    kernel: Kernel = sdpa_kernel,
) -> torch.Tensor:
    """Self-attention where image i's keys/values also include its sampled tokens of other images."""
    batch, num_tokens, channels = hidden_states.shape
    images = context.num_images
    if batch % images != 0:
        raise ValueError(f"batch of {batch} does not split into {images} images per CFG half")
    halves = batch // images
    grouped = hidden_states.view(halves, images, num_tokens, channels)
    sources, reads = gather_sources(grouped, context, layer_index, bank_tokens=False)
    projected = project_sources(attn, sources, reads, context, layer_index, hidden_states.device)

    query = attn.to_q(hidden_states)
    key = attn.to_k(hidden_states)
    value = attn.to_v(hidden_states)
    inner_dim = key.shape[-1]
    query = query.view(halves, images, num_tokens, inner_dim)
    key = key.view(halves, images, num_tokens, inner_dim)
    value = value.view(halves, images, num_tokens, inner_dim)
    owners = {i: context.token_owners(i, num_tokens, hidden_states.device) for i in range(images) if reads[i]}
    owners = {i: labels for i, labels in owners.items() if labels is not None}
    groups = reader_groups(reads)
    if len(groups) == 1 and not owners:
        output = attend_group(attn, query, key, value, [projected[k] for k in groups[0][1]], kernel)
    else:
        output = torch.empty_like(query)
        for members, keys in groups:
            members = [m for m in members if m not in owners]
            if members:
                part = [_images(tensor, members) for tensor in (query, key, value)]
                output[:, members] = attend_group(attn, *part, [projected[k] for k in keys], kernel)
        for image, labels in owners.items():
            sources = [(projected[k], context.source_owner(k)) for k in reads[image]]
            parts = (query[:, image], key[:, image], value[:, image])
            output[:, image] = attend_by_owner(attn, *parts, sources, labels, kernel)

    output = output.reshape(batch, num_tokens, inner_dim).to(query.dtype)
    output = attn.to_out[0](output)
    output = attn.to_out[1](output)
    if attn.residual_connection:
        output = output + hidden_states
    return output / attn.rescale_output_factor


def project_sources(
    attn: Attention,
    sources: dict[SourceKey, torch.Tensor],
    reads: list[list[SourceKey]],
    context: ConsistencyContext,
    layer_index: int,
    device: torch.device,
) -> dict[SourceKey, tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values of every source read, each projected once per layer however many images read it;
    the bank's come through its run cache (``bank_projections``) when it keeps them."""

    def project(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return attn.to_k(tokens), attn.to_v(tokens)

    projected = {}
    for source in dict.fromkeys(key for keys in reads for key in keys):
        kind, number = source
        if kind == "batch":
            projected[source] = project(sources[source])
        else:
            projected[source] = context.bank.keys_values(number, context.step, layer_index, device, project)
    return projected


def attend_group(
    attn: Attention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    extra: list[tuple[torch.Tensor, torch.Tensor]],
    kernel: Kernel = sdpa_kernel,
) -> torch.Tensor:
    """Multi-head attention of a group of images (halves, images, tokens, inner) over their own keys/values
    and the ``extra`` (halves, tokens, inner) ones they all read, expanded to the group without a copy.

    Pure tensor code, so ``torch.compile(attend_group, fullgraph=True)`` traces it whole.
    """
    halves, group, num_tokens, inner_dim = query.shape
    head_dim = inner_dim // attn.heads
    if extra:
        key = torch.cat([key, _expanded([k for k, _ in extra], group)], dim=2)
        value = torch.cat([value, _expanded([v for _, v in extra], group)], dim=2)

    def heads(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.reshape(halves * group, -1, attn.heads, head_dim)

    q, k, v = heads(query), heads(key), heads(value)
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    return kernel(q, k, v).reshape(halves, group, num_tokens, inner_dim)


def attend_by_owner(
    attn: Attention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    sources: list[tuple[tuple[torch.Tensor, torch.Tensor], int]],
    labels: torch.Tensor,
    kernel: Kernel = sdpa_kernel,
) -> torch.Tensor:
    """One image's attention (halves, tokens, inner) where a token labelled with a character reads, besides
    its own image, only the sources that hold that character's identity; unlabelled tokens (0) read all.
    Queries are independent of each other, so each label's tokens are one attention call of their own."""
    output = torch.empty_like(query)
    for label in labels.unique().tolist():
        rows = (labels == label).nonzero().squeeze(1)
        extra = [keys_values for keys_values, owner in sources if label == 0 or owner == label]
        part = attend_group(attn, query.index_select(1, rows)[:, None], key[:, None], value[:, None], extra, kernel)
        output[:, rows] = part[:, 0]
    return output


def _images(tensor: torch.Tensor, members: list[int]) -> torch.Tensor:
    """The ``members`` images of a (halves, images, ...) tensor: a view when they are consecutive."""
    if members == list(range(members[0], members[0] + len(members))):
        return tensor[:, members[0] : members[0] + len(members)]
    return tensor.index_select(1, torch.tensor(members, device=tensor.device))


def _expanded(parts: list[torch.Tensor], group: int) -> torch.Tensor:
    """(halves, tokens, inner) parts side by side, seen by each of ``group`` images: a view, not copies."""
    joined = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return joined.unsqueeze(1).expand(-1, group, -1, -1)


def check_block_sets(blocks: Any) -> set[str]:
    """The block sets of ``consistent_blocks`` ("up", "down,mid", ...), or SettingsError naming the unknown ones:
    checked before a model loads, since a typo would otherwise surface only after minutes of loading."""
    if not isinstance(blocks, str):
        raise SettingsError(f"consistent_blocks must be text such as 'up' or 'down,mid', got {shown(blocks)}")
    wanted = set(part.strip() for part in blocks.split(","))
    unknown = wanted - set(LAYER_SETS)
    if unknown:
        raise SettingsError(
            f"consistent_blocks: unknown block set(s) {', '.join(map(repr, sorted(unknown)))}; "
            f"choose from {', '.join(LAYER_SETS)} (several joined by commas)"
        )
    return wanted


def layer_factors(layer_names: list[str], levels: int) -> list[int]:
    """How many times coarser than the latent (per side) the named layers' tokens are, in a UNet of ``levels``
    resolutions: ``down_blocks.i`` 2**i, ``mid_block`` the coarsest, ``up_blocks.j`` mirrored. What a
    per-layer ``sampling_rate`` is keyed by."""
    factors = set()
    for name in layer_names:
        block, _, rest = name.partition(".")
        index = int(rest.partition(".")[0]) if block in ("down_blocks", "up_blocks") else levels - 1
        factors.add(2 ** (levels - 1 - index if block == "up_blocks" else index))
    return sorted(factors)


def sampling_rate_warnings(sampling_rate: Any, layer_names: list[str], levels: int) -> list[str]:
    """A per-layer rate keyed by a factor none of the model's consistent layers has does nothing: said, with
    the keys that do something (a story written for SD 1.5, whose layers reach factor 1, drawn with SDXL)."""
    if not isinstance(sampling_rate, dict):
        return []
    factors = layer_factors(layer_names, levels)
    unused = sorted(factor for factor in sampling_rate if factor != 0 and factor not in factors)
    if not unused:
        return []
    return [
        f"sampling_rate {', '.join(map(str, unused))}: this model has no consistent layer that many times coarser "
        f"than the latent, so that rate is not used (its layers: {', '.join(map(str, factors))}; 0: the others)"
    ]


def consistent_layer_names(unet: torch.nn.Module, blocks: str = "up") -> list[str]:
    """Names of the self-attention processors that get consistent attention.

    ``blocks`` is "up" (decoder, the paper's default), "down", "mid", "all", or a comma-separated mix.
    """
    wanted = check_block_sets(blocks)
    prefixes = {"up": ("up_blocks",), "down": ("down_blocks",), "mid": ("mid_block",)}
    chosen = (
        tuple(p for values in prefixes.values() for p in values)
        if "all" in wanted
        else tuple(p for name in wanted for p in prefixes[name])
    )
    return [name for name in unet.attn_processors if name.endswith("attn1.processor") and name.startswith(chosen)]


def install_consistent_attention(unet: torch.nn.Module, blocks: str = "up") -> list[str]:
    """Put ConsistentSelfAttnProcessor on the chosen ``attn1`` layers and StoryAttnProcessor elsewhere (an
    IP-Adapter's cross-attention processor is kept, inside ``ReferenceAttnProcessor``).
    Consistent layers attend with xformers' kernel on CUDA when it is installed, else with SDPA.

    Returns the names of the consistent layers, in the UNet's order (their index is their layer id).
    """
    consistent = consistent_layer_names(unet, blocks)
    index_of = {name: index for index, name in enumerate(consistent)}
    xformers = xformers_kernel()
    processors = {
        name: ConsistentSelfAttnProcessor(index_of[name], name, xformers)
        if name in index_of
        else story_processor(current)
        for name, current in unet.attn_processors.items()
    }
    unet.set_attn_processor(processors)
    return consistent
