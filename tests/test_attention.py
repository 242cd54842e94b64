"""Consistent Self-Attention: numerics against a naive reference, sampling rules, installation."""

import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from storydiffusion.attention import (
    ConsistencyContext,
    ConsistentSelfAttnProcessor,
    ImageSlot,
    consistent_layer_names,
    gather_extra_tokens,
    install_consistent_attention,
)
from storydiffusion.bank import IdentityBank
from storydiffusion.models import full_size_unet_config

CHANNELS, HEADS, TOKENS = 32, 4, 16


def make_attention(seed: int = 0) -> Attention:
    generator = torch.Generator().manual_seed(seed)
    attn = Attention(query_dim=CHANNELS, heads=HEADS, dim_head=CHANNELS // HEADS)
    with torch.no_grad():
        for parameter in attn.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return attn.eval()


def batch_context(slots, bank=None, rate=0.5, step=3):
    context = ConsistencyContext(
        slots, seed=7, latent_tokens=TOKENS, total_steps=10, rate_for_factor=lambda f: rate, bank=bank
    )
    context.step = step
    return context


def all_others(count):
    return [ImageSlot(i, reads_batch=tuple(q for q in range(count) if q != i)) for i in range(count)]


def naive_attention(attn, hidden, context, layer):
    """Explicit loops: for each half, image and head, softmax(q k^T / sqrt(d)) v over own + sampled tokens."""
    halves = hidden.shape[0] // context.num_images
    grouped = hidden.view(halves, context.num_images, TOKENS, CHANNELS)
    head_dim = CHANNELS // HEADS
    out = torch.zeros(halves, context.num_images, TOKENS, CHANNELS)
    for h in range(halves):
        for i, slot in enumerate(context.slots):
            rows = [grouped[h, i]]
            for q in slot.reads_batch:
                idx = context.sample_indices(layer, context.slots[q].source_id, TOKENS, hidden.device)
                rows.append(grouped[h, q, idx])
            for sid in slot.reads_bank:
                rows.append(context.bank.get(sid, context.step, layer, hidden.device)[h])
            kv_in = torch.cat(rows)
            q_all, k_all, v_all = attn.to_q(grouped[h, i]), attn.to_k(kv_in), attn.to_v(kv_in)
            heads = []
            for head in range(HEADS):
                cols = slice(head * head_dim, (head + 1) * head_dim)
                q, k, v = q_all[:, cols], k_all[:, cols], v_all[:, cols]
                weights = torch.softmax(q @ k.T / math.sqrt(head_dim), dim=-1)
                heads.append(weights @ v)
            out[h, i] = attn.to_out[0](torch.cat(heads, dim=-1))
    return out.reshape(hidden.shape)


@pytest.mark.parametrize("halves", [1, 2])
def test_processor_equals_naive_reference_in_batch(halves):
    attn = make_attention()
    hidden = torch.randn(halves * 3, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(1))
    context = batch_context(all_others(3))
    with torch.no_grad():
        fast = ConsistentSelfAttnProcessor(5)(attn, hidden, story_context=context)
        slow = naive_attention(attn, hidden, context, 5)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_processor_equals_naive_reference_reading_bank():
    attn = make_attention(2)
    bank = IdentityBank()
    for sid in (10, 11):
        bank.put(sid, 3, 5, torch.randn(2, 8, CHANNELS, generator=torch.Generator().manual_seed(sid)))
    slots = [ImageSlot(0, reads_bank=(10, 11)), ImageSlot(1, reads_bank=(11,)), ImageSlot(2)]
    context = batch_context(slots, bank)
    hidden = torch.randn(6, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        fast = ConsistentSelfAttnProcessor(5)(attn, hidden, story_context=context)
        slow = naive_attention(attn, hidden, context, 5)
        plain = AttnProcessor2_0()(attn, hidden)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    # The image that reads nothing is plain self-attention; the others are not.
    torch.testing.assert_close(fast.view(2, 3, TOKENS, CHANNELS)[:, 2], plain.view(2, 3, TOKENS, CHANNELS)[:, 2])
    assert not torch.allclose(fast.view(2, 3, TOKENS, CHANNELS)[:, 0], plain.view(2, 3, TOKENS, CHANNELS)[:, 0])


def test_without_context_or_before_first_step_it_is_plain_attention():
    attn = make_attention()
    hidden = torch.randn(4, TOKENS, CHANNELS)
    processor = ConsistentSelfAttnProcessor(0)
    plain = AttnProcessor2_0()(attn, hidden)
    assert torch.equal(processor(attn, hidden), plain)
    context = ConsistencyContext(all_others(2), seed=1, latent_tokens=TOKENS, total_steps=10, first_consistent_step=2)
    context.step = 1
    assert torch.equal(processor(attn, hidden, story_context=context), plain)
    context.step = 2
    assert not torch.allclose(processor(attn, hidden, story_context=context), plain)


def test_zero_rate_is_plain_attention():
    attn = make_attention()
    hidden = torch.randn(4, TOKENS, CHANNELS)
    context = batch_context(all_others(2), rate=0.0)
    assert torch.equal(
        ConsistentSelfAttnProcessor(0)(attn, hidden, story_context=context), AttnProcessor2_0()(attn, hidden)
    )


def test_key_length_is_own_plus_sampled_tokens_from_other_images_of_same_half():
    images, halves = 4, 2
    hidden = torch.randn(halves, images, TOKENS, CHANNELS)  # every row is unique
    slots = [
        ImageSlot(0, reads_batch=(1, 2)),
        ImageSlot(1, reads_batch=(0,)),
        ImageSlot(2),
        ImageSlot(3, reads_batch=(0, 1, 2)),
    ]
    context = batch_context(slots, rate=0.25)
    per_source = context.sample_count(TOKENS)
    assert per_source == 4
    extras = gather_extra_tokens(hidden, context, layer_index=0)
    assert extras[2] is None
    for index, slot in enumerate(slots):
        if extras[index] is None:
            continue
        assert extras[index].shape == (halves, per_source * len(slot.reads_batch), CHANNELS)
        for half in range(halves):
            for row in extras[index][half]:
                matches = [
                    (h, q) for h in range(halves) for q in range(images) if (hidden[h, q] == row).all(dim=-1).any()
                ]
                assert len(matches) == 1
                found_half, found_image = matches[0]
                assert found_half == half and found_image in slot.reads_batch and found_image != index


def test_samples_depend_on_seed_step_layer_and_source_only():
    context = batch_context(all_others(2))
    first = context.sample_indices(3, source_id=9, num_tokens=64, device=torch.device("cpu"))
    again = batch_context([ImageSlot(9)]).sample_indices(3, source_id=9, num_tokens=64, device=torch.device("cpu"))
    assert torch.equal(first, again)
    assert len(first) == 32 and len(set(first.tolist())) == 32
    assert not torch.equal(first, context.sample_indices(4, 9, 64, torch.device("cpu")))
    assert not torch.equal(first, context.sample_indices(3, 8, 64, torch.device("cpu")))
    context.step += 1
    assert not torch.equal(first, context.sample_indices(3, 9, 64, torch.device("cpu")))


def test_rate_per_resolution():
    rates = {1: 0.5, 2: 0.25}
    context = ConsistencyContext(
        [], seed=0, latent_tokens=64 * 64, total_steps=4, rate_for_factor=lambda f: rates.get(f, 0.0)
    )
    assert context.sample_count(64 * 64) == 2048
    assert context.sample_count(32 * 32) == 256
    assert context.sample_count(16 * 16) == 0


def test_writing_images_store_their_sample_in_the_bank():
    bank = IdentityBank()
    slots = [ImageSlot(20, reads_batch=(1,), writes=True), ImageSlot(21, reads_batch=(0,), writes=True)]
    context = batch_context(slots, bank)
    hidden = torch.randn(2, 2, TOKENS, CHANNELS)
    extras = gather_extra_tokens(hidden, context, layer_index=4)
    assert bank.sources() == {20, 21}
    torch.testing.assert_close(bank.get(21, 3, 4, torch.device("cpu")), extras[0])
    assert bank.nbytes() == 2 * (2 * 8 * CHANNELS * 4)


def test_random_skip_is_deterministic_and_roughly_at_its_rate():
    def active(seed):
        context = ConsistencyContext([], seed=seed, latent_tokens=16, total_steps=100, skip_early=0.3, skip_late=0.1)
        pattern = []
        for step in range(100):
            context.step = step
            pattern.append([context.is_active(layer) for layer in range(36)])
        return torch.tensor(pattern)

    first = active(1)
    assert torch.equal(first, active(1))
    assert not torch.equal(first, active(2))
    assert 0.6 < first[:40].float().mean() < 0.8
    assert 0.82 < first[40:].float().mean() < 0.96


def count_up_layers(unet):
    return sum(isinstance(p, ConsistentSelfAttnProcessor) for p in unet.attn_processors.values())


@pytest.mark.parametrize("family,total_attn1,up_attn1", [("sdxl", 70, 36), ("sd15", 16, 9)])
def test_installs_on_full_size_unet_architectures(family, total_attn1, up_attn1):
    with torch.device("meta"):
        unet = UNet2DConditionModel(**full_size_unet_config(family))
    assert len(consistent_layer_names(unet, "all")) == total_attn1
    names = install_consistent_attention(unet, "up")
    assert len(names) == up_attn1 == count_up_layers(unet)
    assert all(name.startswith("up_blocks") and name.endswith("attn1.processor") for name in names)
    indices = [p.layer_index for p in unet.attn_processors.values() if isinstance(p, ConsistentSelfAttnProcessor)]
    assert sorted(indices) == list(range(up_attn1))


def test_unknown_block_set_is_refused_before_any_model_loads(monkeypatch):
    from storydiffusion import pipeline as pipeline_module
    from storydiffusion.errors import SettingsError

    with torch.device("meta"):
        unet = UNet2DConditionModel(**full_size_unet_config("sd15"))
    with pytest.raises(SettingsError, match="consistent_blocks: unknown block set.s. 'middle'; choose from"):
        consistent_layer_names(unet, "middle")

    def never_load(*args, **kwargs):
        raise AssertionError("the model loaded before the block sets were checked")

    monkeypatch.setattr(pipeline_module, "load_diffusers_pipeline", never_load)
    for blocks in ("nonsense", "up,middle", 3):
        with pytest.raises(SettingsError, match="^consistent_blocks"):
            pipeline_module.StoryPipeline.from_pretrained("tiny-sdxl", consistent_blocks=blocks)


def test_the_warm_up_is_what_the_readme_says_default_two_plain_steps_capped_at_half(tiny_sdxl):
    from storydiffusion.settings import GenerationSettings
    from storydiffusion.story import story_from_text

    story = story_from_text("[Bob] a man", "[Bob] walks")
    assert GenerationSettings().first_consistent_step == 2
    assert tiny_sdxl.resolve_settings(story, GenerationSettings(steps=30)).first_consistent_step == 2
    assert tiny_sdxl.resolve_settings(story, GenerationSettings(steps=3)).first_consistent_step == 1
    original = ConsistencyContext(all_others(2), seed=1, latent_tokens=TOKENS, total_steps=10, first_consistent_step=1)
    active = []
    for step in range(3):
        original.step = step
        active.append(original.is_active(0))
    assert active == [False, True, True]  # --first-consistent-step 1: the original's one plain step


def test_layer_factors_mirror_the_unets_levels_and_an_unused_rate_key_is_said():
    from storydiffusion.attention import layer_factors, sampling_rate_warnings

    sdxl = [f"up_blocks.{j}.attentions.0.transformer_blocks.0.attn1.processor" for j in (0, 1)]
    sd15 = [f"up_blocks.{j}.attentions.0.transformer_blocks.0.attn1.processor" for j in (1, 2, 3)]
    assert layer_factors(sdxl, 3) == [2, 4] and layer_factors(sd15, 4) == [1, 2, 4]
    assert layer_factors(["down_blocks.0.a", "mid_block.attentions.0.a"], 4) == [1, 8]
    assert (
        sampling_rate_warnings(0.5, sdxl, 3) == [] and sampling_rate_warnings({0: 0.3, 2: 0.5, 4: 0.6}, sdxl, 3) == []
    )
    (warning,) = sampling_rate_warnings({1: 0.3, 3: 0.5, 4: 0.6}, sdxl, 3)
    assert warning.startswith("sampling_rate 1, 3: ") and "not used (its layers: 2, 4; 0: the others)" in warning


def test_a_run_says_when_a_rate_of_its_sampling_rate_is_not_used(tiny_sdxl):
    from storydiffusion.settings import GenerationSettings
    from storydiffusion.story import story_from_text

    settings = GenerationSettings(style="none", id_images=1, steps=2, sampling_rate={1: 0.4, 8: 0.5})
    story = story_from_text("[Mia] a girl", "[Mia] runs", settings=settings)
    result = tiny_sdxl.generate(story, settings)
    assert [w for w in result.warnings if w.startswith("sampling_rate 8: ")]
    assert not [w for w in result.warnings if w.startswith("sampling_rate 1")]  # the tiny model's layers: 1, 2
