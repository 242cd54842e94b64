"""How a run reads the bank fast: grouped readers, cached projections, the side-stream prefetch, a compilable core.

The speed itself is measured in benchmarks/ (attention_overhead.py, gpu.py); these tests hold the
mechanisms to their promise: the same numbers as before, each projection made once, copies taken.
"""

from __future__ import annotations

import pytest
import torch
from test_attention import CHANNELS, TOKENS, batch_context, make_attention, naive_attention

from storydiffusion.attention import ConsistentSelfAttnProcessor, ImageSlot, attend_group, reader_groups
from storydiffusion.bank import IdentityBank
from storydiffusion.bank_prefetch import BankPrefetcher
from storydiffusion.bank_projections import ProjectionCache, default_projection_budget

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def filled_bank(device: str = "cpu") -> IdentityBank:
    bank = IdentityBank(storage=device)
    for sid in (10, 11):
        for layer in (5, 6, 7):
            generator = torch.Generator().manual_seed(sid * 10 + layer)
            bank.put(sid, 3, layer, torch.randn(2, 8, CHANNELS, generator=generator).to(device))
    return bank


class CountingLinear(torch.nn.Module):
    """A projection that counts the rows it is given."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.linear, self.rows = linear, 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.rows += tokens.shape[:-1].numel()
        return self.linear(tokens)


def test_readers_of_the_same_sources_form_one_group_in_batch_order():
    reads = [[("bank", 1), ("bank", 2)], [("bank", 1), ("bank", 2)], [("batch", 0)], [("bank", 1), ("bank", 2)]]
    assert reader_groups(reads) == [([0, 1, 3], (("bank", 1), ("bank", 2))), ([2], (("batch", 0),))]


@pytest.mark.parametrize("panels", [1, 4])
def test_a_read_batch_equals_the_naive_reference_with_and_without_cached_projections(panels):
    attn = make_attention(2)
    hidden = torch.randn(2 * panels, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(3))
    slots = [ImageSlot(k, reads_bank=(10, 11)) for k in range(panels)]
    outputs = []
    with torch.no_grad():
        for budget in (None, 0, 2**30):
            bank = filled_bank()
            if budget is not None:
                bank.start_reads("cpu", projection_budget=budget)
            context = batch_context(slots, bank)
            outputs.append(ConsistentSelfAttnProcessor(5)(attn, hidden, story_context=context))
            slow = naive_attention(attn, hidden, context, 5)
            torch.testing.assert_close(outputs[-1], slow, rtol=1e-4, atol=1e-5)
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[1], outputs[2])


def test_cached_projections_are_made_once_per_run_and_give_the_same_bytes():
    attn = make_attention(4)
    counting_k = attn.to_k = CountingLinear(attn.to_k)
    hidden = torch.randn(2, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(5))
    bank = filled_bank().start_reads("cpu", projection_budget=2**30)
    context = batch_context([ImageSlot(0, reads_bank=(10, 11))], bank)
    with torch.no_grad():
        first = ConsistentSelfAttnProcessor(5)(attn, hidden, story_context=context)
        rows_first = counting_k.rows
        second = ConsistentSelfAttnProcessor(5)(attn, hidden, story_context=context)
    own_rows = 2 * TOKENS
    assert rows_first == own_rows + 2 * (2 * 8)  # own tokens, then the two bank sources once
    assert counting_k.rows - rows_first == own_rows  # the second batch projects its own tokens only
    assert torch.equal(first, second)
    assert bank.projections.hits == 2 and len(bank.projections) == 2
    bank.end_reads()
    assert bank.projections is None and bank.prefetcher is None


def test_the_projection_cache_stops_at_its_budget_and_still_answers():
    cache = ProjectionCache(budget=100)  # room for one (keys, values) pair of 8 float32 each: 64 bytes
    project = lambda t: (t * 2, t * 3)  # noqa: E731
    for key in ((1, 0, 0), (2, 0, 0)):
        keys, values = cache.keys_values(key, lambda: torch.ones(8), project)
        assert torch.equal(values, torch.full((8,), 3.0))
    assert len(cache) == 1 and cache.held == 64
    cache.keys_values((2, 0, 0), lambda: torch.ones(8), project)
    assert cache.misses == 3 and cache.hits == 0


def test_cached_projections_go_with_the_tokens_the_bank_replaces_or_drops():
    """Window mode reads each window once and drops it: its projections must not pile up over the story."""
    attn = make_attention(4)
    project = lambda t: (attn.to_k(t), attn.to_v(t))  # noqa: E731
    bank = filled_bank().start_reads("cpu", projection_budget=2**30)
    with torch.no_grad():
        for sid in (10, 11):
            bank.keys_values(sid, 3, 5, torch.device("cpu"), project)
        assert len(bank.projections) == 2 and bank.projections.held > 0
        bank.drop([10])
        assert len(bank.projections) == 1
        replacement = torch.zeros(2, 8, CHANNELS)
        bank.put(11, 3, 5, replacement)
        assert len(bank.projections) == 0 and bank.projections.held == 0
        keys, _ = bank.keys_values(11, 3, 5, torch.device("cpu"), project)
    assert torch.equal(keys, attn.to_k(replacement))  # the new tokens' projection, not the old one


def test_no_projection_cache_under_a_host_memory_limit_or_from_host_to_gpu():
    limited = filled_bank().limit_host_memory(10**9).start_reads("cpu")
    assert limited.projections.budget == 0
    assert default_projection_budget(torch.device("cuda"), torch.device("cpu")) == 0
    assert default_projection_budget(torch.device("cpu"), torch.device("cpu")) > 0


def test_the_prefetcher_does_nothing_off_cuda():
    bank = filled_bank().start_reads("cpu")
    assert bank.prefetcher is None
    prefetcher = BankPrefetcher(torch.device("cpu"))
    assert not prefetcher.enabled and prefetcher.take((10, 3, 5)) is None
    prefetcher.after_read((10, 3, 5), lambda: [(10, 4, 5)], lambda key: torch.zeros(1))
    assert prefetcher.misses == 0 and prefetcher.take((10, 4, 5)) is None


def test_attend_group_compiles_whole_without_graph_breaks():
    attn = make_attention(6)
    generator = torch.Generator().manual_seed(7)
    query, key, value = (torch.randn(2, 3, TOKENS, CHANNELS, generator=generator) for _ in range(3))
    extra = [(torch.randn(2, 8, CHANNELS, generator=generator), torch.randn(2, 8, CHANNELS, generator=generator))]
    torch._dynamo.reset()
    compiled = torch.compile(attend_group, fullgraph=True, backend="aot_eager")  # fullgraph: a break is an error
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(attn, query, key, value, extra), attend_group(attn, query, key, value, extra)
        )


@CUDA
def test_prefetched_reads_equal_direct_reads_and_each_step_is_copied_ahead():
    def two_steps() -> IdentityBank:
        bank = filled_bank("cpu")
        for sid in (10, 11):
            for layer in (5, 6, 7):
                bank.put(sid, 4, layer, torch.randn(2, 8, CHANNELS, generator=torch.Generator().manual_seed(layer)))
        return bank

    host = two_steps().move_to("cpu", pin=True).start_reads("cuda", prefetch=True)
    assert two_steps().start_reads("cuda").prefetcher is None  # prefetch is asked for
    direct = two_steps()
    order = [(sid, step, layer) for step in (3, 4) for layer in (5, 6, 7) for sid in (10, 11)]
    read = [host.get(*key, torch.device("cuda")) for key in order]
    expected = [direct.get(*key, torch.device("cuda")) for key in order]
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(read, expected))
    assert host.prefetcher.misses == 6 and host.prefetcher.hits == 6  # step 3 read directly, step 4 prefetched


@CUDA
def test_a_story_on_the_gpu_is_byte_identical_with_the_bank_on_host_with_or_without_prefetch_and_on_device(tiny_sdxl):
    from storydiffusion.settings import GenerationSettings
    from storydiffusion.story import story_from_text

    pipeline = tiny_sdxl
    pipeline.pipe.to("cuda")
    try:
        story = story_from_text("[Mia] a girl in red\n", "\n".join(f"[Mia] scene {n}" for n in range(6)))
        settings = GenerationSettings(steps=4, height=64, width=64, id_images=2, window=2)
        host = pipeline.generate(story, settings)
        prefetched = pipeline.generate(story, settings, bank_prefetch=True)
        device = pipeline.generate(story, settings, bank_storage="device")
    finally:
        pipeline.pipe.to("cpu")
    expected = [p.image.tobytes() for p in host.panels]
    assert [p.image.tobytes() for p in prefetched.panels] == expected
    assert [p.image.tobytes() for p in device.panels] == expected
