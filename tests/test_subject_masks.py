"""Subject masks: found from the cross-attention maps of a character's description tokens, and what
consistent attention shares under ``consistency: subject``."""

import math

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from storydiffusion.attention import (
    ConsistencyContext,
    ConsistentSelfAttnProcessor,
    ImageSlot,
    StoryAttnProcessor,
    gather_sources,
    stable_hash,
)
from storydiffusion.bank import IdentityBank
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.subject_masks import (
    SubjectMaps,
    TrackedImage,
    normalised,
    otsu_threshold,
    phrase_positions,
    smooth,
    token_grid,
)
from storydiffusion.tokenizer import build_clip_tokenizer

CHANNELS, HEADS, TEXT, PROMPT_TOKENS = 32, 4, 24, 77
LATENT = (8, 8)  # 64 tokens at the latent, 16 at half of it


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def make_attention(cross: bool, seed: int = 0) -> Attention:
    generator = torch.Generator().manual_seed(seed)
    attn = Attention(
        query_dim=CHANNELS, cross_attention_dim=TEXT if cross else None, heads=HEADS, dim_head=CHANNELS // HEADS
    )
    with torch.no_grad():
        for parameter in attn.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return attn.eval()


# ---------------------------------------------------------------------------------- the parts


def test_phrase_positions_are_the_description_tokens_inside_the_prompt():
    tokenizer = build_clip_tokenizer()
    prompt = "comic style, a man with a red coat, walks along the harbour"
    positions = phrase_positions(tokenizer, prompt, "a man with a red coat")
    ids = tokenizer(prompt).input_ids
    words = tokenizer.convert_ids_to_tokens([ids[p] for p in positions])
    assert words == ["a</w>", "man</w>", "with</w>", "a</w>", "red</w>", "coat</w>"]
    assert positions == tuple(range(positions[0], positions[0] + 6)) and positions[0] == 4
    assert phrase_positions(tokenizer, prompt, "a woman with blue hair") == ()


def test_a_phrase_counts_only_whole_unless_the_77_token_limit_cuts_it():
    tokenizer = build_clip_tokenizer()
    assert phrase_positions(tokenizer, "a man walks with a", "a girl with red hair") == ()


def test_phrase_positions_stop_at_the_77_token_limit():
    tokenizer = build_clip_tokenizer()
    prompt = "word " * 72 + "a man with a red coat"
    positions = phrase_positions(tokenizer, prompt, "a man with a red coat")
    assert positions == (73, 74, 75)  # 76 is the end token; the rest of the description is cut off


def test_token_grids_halve_the_latent_rounding_up():
    assert token_grid((8, 6), 48) == (8, 6)
    assert token_grid((8, 6), 12) == (4, 3)
    assert token_grid((5, 5), 9) == (3, 3)
    with pytest.raises(ValueError):
        token_grid((8, 8), 20)


def test_otsu_splits_two_clusters_between_them():
    values = torch.cat([torch.full((60,), 0.1), torch.full((40,), 0.8)]) + seeded(100) * 0.02
    threshold = otsu_threshold(values.clamp(0, 1))
    assert 0.15 < threshold < 0.75


def test_smoothing_spreads_a_point_and_normalising_spans_zero_to_one():
    point = torch.zeros(1, 5, 5)
    point[0, 2, 2] = 16.0
    blurred = smooth(point)[0]
    assert blurred[2, 2] == 4.0 and blurred[1, 2] == 2.0 and blurred[1, 1] == 1.0 and blurred.sum() == 16.0
    scaled = normalised(blurred[None])[0]
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert normalised(torch.ones(1, 3, 3)).abs().sum() == 0  # flat: nothing stands out


# ----------------------------------------------------------------- masks follow the named tokens


def region_attention(regions: dict[int, slice], tokens: int = 16, grid=(4, 4)) -> torch.Tensor:
    """(1, tokens, 77) attention where the image tokens of each region attend to one prompt position."""
    probabilities = torch.full((1, tokens, PROMPT_TOKENS), 0.1 / PROMPT_TOKENS)
    for position, rows in regions.items():
        inside = torch.zeros(grid)
        inside[rows] = 1
        probabilities[0, inside.flatten().bool(), position] += 0.9
    return probabilities


def test_the_mask_is_where_the_image_attends_to_the_characters_tokens():
    maps = SubjectMaps([TrackedImage(0, (("Bob", 1, (3, 4)), ("Alice", 2, (9,))))], LATENT, threshold=0.5)
    attention = torch.full((1, 16, PROMPT_TOKENS), 0.1 / PROMPT_TOKENS)
    grid = torch.zeros(4, 4, dtype=torch.bool)
    bob, alice = grid.clone(), grid.clone()
    bob[:, :2], alice[:, 3:] = True, True
    attention[0, bob.flatten(), 3] += 0.9
    attention[0, bob.flatten(), 4] += 0.9
    attention[0, alice.flatten(), 9] += 0.9
    maps.record(step=2, probabilities=attention)
    assert maps.labels(0, step=2, num_tokens=16) is None  # a step uses the masks of the step before
    labels = maps.labels(0, step=3, num_tokens=16).view(4, 4)
    assert (labels[:, 0] == 1).all() and (labels[:, 3] == 2).all()
    assert torch.equal(maps.mask(0, 3, 16), labels.flatten() > 0)
    # At a finer layer the same masks, resized: the left quarter is Bob's, the right quarter Alice's.
    fine = maps.labels(0, 3, 64).view(8, 8)
    assert (fine[:, :2] == 1).all() and (fine[:, 7] == 2).all()
    assert set(maps.final_masks(0)) == {"Bob", "Alice"}


def test_an_image_whose_description_is_not_in_its_prompt_gets_no_mask():
    maps = SubjectMaps([TrackedImage(0, (("Bob", 1, ()),))], LATENT)
    maps.record(0, torch.rand(1, 16, PROMPT_TOKENS))
    assert not maps.mask(0, 1, 16).any()
    assert not maps.final_masks(0)["Bob"].any()


def naive_cross_attention(attn, hidden, text, positions):
    """softmax(q k^T / sqrt(d)) per head with explicit loops, mean over heads, mean over ``positions``."""
    head_dim = CHANNELS // HEADS
    query, key = attn.to_q(hidden), attn.to_k(text)
    per_head = []
    for head in range(HEADS):
        cols = slice(head * head_dim, (head + 1) * head_dim)
        per_head.append(torch.softmax(query[:, cols] @ key[:, cols].T / math.sqrt(head_dim), dim=-1))
    return torch.stack(per_head).mean(0)[:, list(positions)].mean(-1)


def test_a_cross_attention_layer_records_the_maps_of_the_conditional_half_and_keeps_its_output():
    attn = make_attention(cross=True)
    images, halves = 2, 2
    hidden = seeded(halves * images, 16, CHANNELS, seed=1)
    text = seeded(halves * images, PROMPT_TOKENS, TEXT, seed=2)
    maps = SubjectMaps([TrackedImage(1, (("Bob", 1, (5, 6, 7)),))], LATENT)
    context = ConsistencyContext([ImageSlot(0), ImageSlot(1)], seed=0, latent_tokens=64, total_steps=4, subject=maps)
    with torch.no_grad():
        output = StoryAttnProcessor()(attn, hidden, text, story_context=context)
        plain = AttnProcessor2_0()(attn, hidden, text)
        expected = naive_cross_attention(attn, hidden[3], text[3], (5, 6, 7))  # image 1, conditional half
    assert torch.equal(output, plain)
    resized = torch.nn.functional.interpolate(expected.view(1, 1, 4, 4), size=(4, 4), mode="bilinear")
    torch.testing.assert_close(maps._sums[0][1][0], resized[0, 0], rtol=1e-5, atol=1e-6)
    soft = maps.soft_maps(1, 0)[0]
    torch.testing.assert_close(soft, normalised(smooth(resized[0]))[0], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------- what subject consistency shares


class FixedMasks:
    """Stands for a batch's ``SubjectMaps``: the same mask for every image, no cross-attention recorded."""

    images: list[int] = []

    def __init__(self, mask):
        self.fixed = mask

    def mask(self, image, step, num_tokens):
        return self.fixed


def subject_context(slots, mask, bank=None, consistency="subject"):
    context = ConsistencyContext(
        slots,
        seed=7,
        latent_tokens=16,
        total_steps=10,
        rate_for_factor=lambda factor: 0.5,
        bank=bank,
        consistency=consistency,
        subject=FixedMasks(mask),
    )
    context.step = 1
    return context


def naive_masked_attention(attn, hidden, context, layer, mask):
    """Each image over its own tokens and, of every image it reads, the sample's masked tokens: the
    same random order as the uniform sample, the masked ones kept, at most the rate's count."""
    images = context.num_images
    halves = hidden.shape[0] // images
    grouped = hidden.view(halves, images, 16, CHANNELS)
    head_dim = CHANNELS // HEADS
    out = torch.zeros_like(grouped)
    for h in range(halves):
        for i, slot in enumerate(context.slots):
            rows = [grouped[h, i]]
            for q in slot.reads_batch:
                generator = torch.Generator().manual_seed(stable_hash(7, 1, layer, context.slots[q].source_id))
                order = torch.randperm(16, generator=generator)
                kept = sorted([int(t) for t in order if mask[t]][:8])
                rows.append(grouped[h, q, kept])
            kv = torch.cat(rows)
            query, key, value = attn.to_q(grouped[h, i]), attn.to_k(kv), attn.to_v(kv)
            heads = []
            for head in range(HEADS):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                weights = torch.softmax(query[:, cols] @ key[:, cols].T / math.sqrt(head_dim), dim=-1)
                heads.append(weights @ value[:, cols])
            out[h, i] = attn.to_out[0](torch.cat(heads, dim=-1))
    return out.reshape(hidden.shape)


@pytest.mark.parametrize("subject_tokens", [5, 12])
def test_processor_with_subject_masks_equals_the_naive_reference(subject_tokens):
    attn = make_attention(cross=False)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[torch.randperm(16, generator=torch.Generator().manual_seed(subject_tokens))[:subject_tokens]] = True
    slots = [ImageSlot(i, reads_batch=tuple(q for q in range(3) if q != i)) for i in range(3)]
    context = subject_context(slots, mask)
    hidden = seeded(6, 16, CHANNELS, seed=4)
    with torch.no_grad():
        fast = ConsistentSelfAttnProcessor(2)(attn, hidden, story_context=context)
        slow = naive_masked_attention(attn, hidden, context, 2, mask)
        uniform = ConsistentSelfAttnProcessor(2)(
            attn, hidden, story_context=subject_context(slots, mask, None, "uniform")
        )
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fast, uniform)


def test_written_samples_hold_only_subject_tokens():
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[1, 2, 5, 6, 9]] = True
    bank = IdentityBank()
    slots = [ImageSlot(10, reads_batch=(1,), writes=True), ImageSlot(11, reads_batch=(0,), writes=True)]
    context = subject_context(slots, mask, bank)
    hidden = torch.arange(2 * 2 * 16, dtype=torch.float32).view(2, 2, 16, 1).expand(-1, -1, -1, CHANNELS)
    gather_sources(hidden.contiguous(), context, layer_index=0)
    stored = bank.get(10, 1, 0, torch.device("cpu"))
    assert stored.shape == (2, 5, CHANNELS)  # fewer subject tokens than the rate's 8: all of them
    assert stored[0, :, 0].tolist() == [1.0, 2.0, 5.0, 6.0, 9.0]
    # An empty mask says nothing of where the subject is: the uniform sample.
    empty = subject_context(slots, torch.zeros(16, dtype=torch.bool), IdentityBank())
    assert len(empty.sample_indices(0, 10, 16, torch.device("cpu"), empty.subject_mask(0, 16))) == 8


# ------------------------------------------------------------------------------ a whole story


CHARACTERS = "[Bob] a man with a red coat and a grey beard\n[Alice] a woman with short blue hair and a yellow scarf"
PANELS = "[Bob] walks along the harbour\n[Bob] feeds the seagulls\n[Bob] sleeps on a bench\n[Bob] and [Alice] talk"


def make_story(**settings):
    options = dict(style="none", first_consistent_step=1, id_images=2, window=3, steps=4)
    options.update(settings)
    return story_from_text(CHARACTERS, PANELS, settings=GenerationSettings(**options))


def test_subject_consistency_changes_the_shared_panels_and_keeps_a_reader_exact(tiny_sdxl, tmp_path):
    subject = tiny_sdxl.generate(make_story(consistency="subject"), keep_masks=True)
    uniform = tiny_sdxl.generate(make_story())
    again = tiny_sdxl.generate(make_story(consistency="subject"))
    assert [p.image.tobytes() for p in subject.panels] == [p.image.tobytes() for p in again.panels]
    assert subject.panels[0].image.tobytes() != uniform.panels[0].image.tobytes()
    assert subject.bank.signature["consistency"] == "subject" and "consistency" not in uniform.bank.signature
    # Every panel has a mask per character it shows, the size of the panel, neither empty nor full here.
    masks = subject.panels[3].masks
    assert set(masks) == {"Bob", "Alice"} and masks["Bob"].size == subject.panels[3].image.size
    assert {value for value in np.unique(np.asarray(masks["Bob"]))} == {0, 255}
    assert not uniform.panels[0].masks
    # The bank holds fewer tokens where a subject is smaller than the rate's sample; saved and loaded,
    # a panel redrawn from it is the panel of the full run.
    assert subject.bank.nbytes() < uniform.bank.nbytes()
    subject.bank.save(tmp_path / "bank.safetensors")
    loaded = IdentityBank.load(tmp_path / "bank.safetensors")
    redrawn = tiny_sdxl.generate(make_story(consistency="subject"), panels=[2], bank=loaded)
    difference = np.abs(np.asarray(redrawn.panel(2).image, np.int16) - np.asarray(subject.panel(2).image, np.int16))
    assert difference.max() <= 1  # batch size 1 vs 2 rounds differently, as in uniform mode


def test_a_subject_bank_is_refused_by_a_uniform_run(tiny_sdxl):
    from storydiffusion.errors import BankError

    subject = tiny_sdxl.generate(make_story(consistency="subject"))
    with pytest.raises(BankError, match="consistency"):
        tiny_sdxl.generate(make_story(), panels=[2], bank=subject.bank)
