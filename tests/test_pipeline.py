"""StoryPipeline on tiny offline models: equivalence with diffusers, exact bank, determinism, concurrency."""

import threading

import numpy as np
import pytest
import torch

from storydiffusion.attention import ImageSlot
from storydiffusion.bank import IdentityBank
from storydiffusion.errors import BankError
from storydiffusion.models import build_tiny_sd15_pipeline, build_tiny_sdxl_pipeline
from storydiffusion.planning import identity_sets
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text

CHARACTERS = "[Bob] a man with a red coat and a grey beard\n[Alice] a woman with short blue hair and a yellow scarf"
PANELS = "\n".join(
    [
        "[Bob] walks along the harbour",
        "[Alice] reads in a cafe",
        "[Bob] feeds the seagulls",
        "[Alice] rides a bicycle",
        "[Bob] and [Alice] share an umbrella",
        "[NC] an empty street at night",
        "[Bob] sleeps on a bench",
    ]
)


def make_story(panels=PANELS, **settings):
    options = dict(style="none", first_consistent_step=0, id_images=2, window=3)
    options.update(settings)
    return story_from_text(CHARACTERS, panels, settings=GenerationSettings(**options))


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_consistency_off_gives_the_plain_diffusers_images(tiny_sdxl):
    story = make_story("[Bob] walks\n[Alice] reads\n[NC] a street", mode="off")
    result = tiny_sdxl.generate(story)
    plain = build_tiny_sdxl_pipeline()
    plain.set_progress_bar_config(disable=True)
    expected = plain(
        prompt=[story.panel_prompt(i) for i in range(3)],
        num_inference_steps=result.settings.steps,
        guidance_scale=result.settings.guidance,
        height=64,
        width=64,
        generator=[torch.Generator().manual_seed(panel.seed) for panel in result.panels],
    ).images
    for panel, image in zip(result.panels, expected):
        assert np.array_equal(pixels(panel.image), pixels(image))


@pytest.mark.parametrize("family", ["sdxl", pytest.param("sd15", marks=pytest.mark.slow)])
def test_zero_sampling_rate_gives_the_plain_diffusers_images(family, tiny_sdxl, tiny_sd15):
    pipeline = tiny_sdxl if family == "sdxl" else tiny_sd15
    plain = build_tiny_sdxl_pipeline() if family == "sdxl" else build_tiny_sd15_pipeline()
    plain.set_progress_bar_config(disable=True)
    settings = pipeline.resolve_settings(make_story(sampling_rate=0.0))
    prompts, seeds = ["a man walks", "a man eats", "a man sleeps"], [11, 12, 13]
    slots = [ImageSlot(i, reads_batch=tuple(q for q in range(3) if q != i)) for i in range(3)]
    ours = pipeline.denoise(prompts, [""] * 3, seeds, settings, slots, output_type="np")
    expected = plain(
        prompt=prompts,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        height=64,
        width=64,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    assert np.array_equal(np.stack(ours), expected)
    # ...while a positive rate changes them.
    shared = pipeline.denoise(prompts, [""] * 3, seeds, settings.merged(sampling_rate=0.5), slots, output_type="np")
    assert not np.allclose(np.stack(shared), expected)


@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_panel_read_from_bank_equals_panel_generated_with_identity_images_in_its_batch(tiny_sdxl, guidance):
    settings = tiny_sdxl.resolve_settings(make_story(guidance=guidance))
    identity_prompts, identity_seeds = ["a man walks", "a man eats", "a man runs"], [1, 2, 3]
    writers = [ImageSlot(i, reads_batch=tuple(q for q in range(3) if q != i), writes=True) for i in range(3)]
    bank = IdentityBank()
    identity_images = tiny_sdxl.denoise(
        identity_prompts, [""] * 3, identity_seeds, settings, writers, bank, output_type="np"
    )
    assert bank.sources() == {0, 1, 2}

    from_bank = tiny_sdxl.denoise(
        ["a man sleeps"], [""], [9], settings, [ImageSlot(9, reads_bank=(0, 1, 2))], bank, output_type="np"
    )

    uncached_slots = [ImageSlot(i, reads_batch=tuple(q for q in range(3) if q != i)) for i in range(3)]
    uncached_slots.append(ImageSlot(9, reads_batch=(0, 1, 2)))
    uncached = tiny_sdxl.denoise(
        identity_prompts + ["a man sleeps"], [""] * 4, identity_seeds + [9], settings, uncached_slots, output_type="np"
    )

    np.testing.assert_allclose(from_bank[0], uncached[3], atol=1e-5)
    np.testing.assert_allclose(np.stack(identity_images), np.stack(uncached[:3]), atol=1e-5)
    alone = tiny_sdxl.denoise(["a man sleeps"], [""], [9], settings, None, output_type="np")
    assert np.abs(from_bank[0] - alone[0]).max() > 1e-3


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_images(tiny_sdxl):
    first = tiny_sdxl.generate(make_story())
    again = tiny_sdxl.generate(make_story())
    other = tiny_sdxl.generate(make_story(seed=5))
    assert [p.image.tobytes() for p in first.panels] == [p.image.tobytes() for p in again.panels]
    assert all(a.image.tobytes() != b.image.tobytes() for a, b in zip(first.panels, other.panels))
    assert [p.seed for p in first.panels] != [p.seed for p in other.panels]


@pytest.mark.slow
def test_two_stories_in_two_threads_equal_the_sequential_results(tiny_sdxl):
    stories = [make_story(), make_story(seed=3, sampling_rate=0.3)]
    sequential = [tiny_sdxl.generate(story) for story in stories]
    results = [None, None]

    def run(k):
        results[k] = tiny_sdxl.generate(stories[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for expected, got in zip(sequential, results):
        assert [p.image.tobytes() for p in expected.panels] == [p.image.tobytes() for p in got.panels]


class RecordingBank(IdentityBank):
    """A bank that remembers which sources were read and written."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads, self.writes, self.most_sources = [], [], 0

    def get(self, source_id, step, layer, device):
        self.reads.append(source_id)
        return super().get(source_id, step, layer, device)

    def put(self, source_id, step, layer, tokens):
        self.writes.append(source_id)
        super().put(source_id, step, layer, tokens)
        self.most_sources = max(self.most_sources, len(self.sources()))


def test_identity_mode_builds_one_bank_per_character_and_panels_read_every_bank_they_show(tiny_sdxl):
    story = make_story(
        "[Bob] and [Alice] share an umbrella\n[Bob] walks\n[Alice] reads\n[Bob] eats\n[Alice] sings\n[NC] a street"
    )
    settings = tiny_sdxl.resolve_settings(story)
    bank = RecordingBank(tiny_sdxl.bank_signature(settings))
    calls = []
    original = bank.get

    def get(source_id, step, layer, device):
        calls.append((source_id, step, layer))
        return original(source_id, step, layer, device)

    bank.get = get
    result = tiny_sdxl.generate(story, bank=bank)
    assert result.bank.characters == {"Bob": [1, 3], "Alice": [2, 4]}
    assert set(bank.writes) == {1, 2, 3, 4}
    # Panel 1 (both characters) is the only reader: it reads all four identity images.
    assert {source for source, _, _ in calls} == {1, 2, 3, 4}
    assert [p.index for p in result.panels] == list(range(6))
    assert [p.identity for p in result.panels] == [False, True, True, True, True, False]


@pytest.mark.slow
def test_bank_size_does_not_grow_with_the_number_of_panels(tiny_sdxl):
    short = tiny_sdxl.generate(
        make_story("\n".join(["[Bob] walks"] * 2 + ["[Bob] and [Alice] talk"] * 2 + ["[Alice] reads"] * 2))
    )
    long = tiny_sdxl.generate(
        make_story("\n".join(["[Bob] walks"] * 2 + ["[Bob] and [Alice] talk"] * 10 + ["[Alice] reads"] * 2))
    )
    assert short.bank.nbytes() == long.bank.nbytes() > 0
    assert len(long.panels) == 14


def test_window_mode_keeps_only_the_previous_window(tiny_sdxl):
    story = make_story("\n".join(["[Bob] walks"] * 8), mode="window", window=2)
    settings = tiny_sdxl.resolve_settings(story)
    bank = RecordingBank(tiny_sdxl.bank_signature(settings))
    result = tiny_sdxl.generate(story, bank=bank)
    assert len(result.panels) == 8
    assert bank.most_sources <= 2 * 2
    assert set(bank.reads) == set(range(6))  # every window but the first reads the one before


def test_regenerating_one_panel_with_the_bank_equals_the_full_run(tiny_sdxl):
    story = make_story()
    full = tiny_sdxl.generate(story)
    bank = RecordingBank(full.bank.signature)
    bank._tokens, bank.characters = dict(full.bank._tokens), dict(full.bank.characters)
    again = tiny_sdxl.generate(story, panels=[4], bank=bank)
    assert bank.writes == []  # no identity pass
    assert [p.index for p in again.panels] == [4]
    assert np.abs(pixels(again.panels[0].image) - pixels(full.panel(4).image)).max() <= 1

    story.panels[4].seed = 1234
    changed = tiny_sdxl.generate(story, panels=[4], bank=bank)
    assert changed.panels[0].seed == 1234
    assert changed.panels[0].image.tobytes() != full.panel(4).image.tobytes()


def test_bank_round_trips_through_safetensors(tiny_sdxl, tmp_path):
    story = make_story()
    full = tiny_sdxl.generate(story)
    full.bank.save(tmp_path / "bank.safetensors")
    loaded = IdentityBank.load(tmp_path / "bank.safetensors")
    assert loaded.characters == full.bank.characters and loaded.signature == full.bank.signature
    assert loaded.nbytes() == full.bank.nbytes()
    again = tiny_sdxl.generate(story, panels=[6], bank=loaded)
    assert np.abs(pixels(again.panels[0].image) - pixels(full.panel(6).image)).max() <= 1


def test_a_bank_from_other_settings_is_refused_naming_them_before_any_step(tiny_sdxl):
    story = make_story()
    full = tiny_sdxl.generate(story)
    steps = []
    with pytest.raises(BankError, match=r"steps: bank \d+, now 3"):
        tiny_sdxl.generate(story, story.settings.merged(steps=3), panels=[6], bank=full.bank, callback=steps.append)
    assert steps == []
    with pytest.raises(BankError, match="steps: bank"):
        tiny_sdxl.check_bank(full.bank, story, story.settings.merged(steps=3), panels=[6])


def test_cancel_keeps_the_finished_panels(tiny_sdxl):
    cancel = threading.Event()
    result = tiny_sdxl.generate(make_story(), on_panel=lambda panel: cancel.set(), cancel=cancel)
    assert result.cancelled
    assert 1 <= len(result.panels) < 7


def test_progress_reports_every_step_of_every_batch(tiny_sdxl):
    updates = []
    result = tiny_sdxl.generate(make_story(), callback=updates.append)
    steps = result.settings.steps
    batches = updates[0].batches
    assert len(updates) == steps * batches
    assert [u.step for u in updates[:steps]] == list(range(1, steps + 1))
    assert updates[-1].fraction == pytest.approx(1.0)


def test_character_without_a_solo_panel_gets_hidden_reference_portraits(tiny_sdxl):
    story = make_story("[Bob] and [Alice] talk\n[Bob] and [Alice] walk\n[NC] a street")
    result = tiny_sdxl.generate(story)
    assert [p.index for p in result.panels] == [0, 1, 2]
    assert all(source < 0 for sources in result.bank.characters.values() for source in sources)
    assert len(result.bank.characters["Bob"]) == story.settings.id_images


def test_explicit_identity_panels_are_used(tiny_sdxl):
    story = make_story()
    story.identity_panels = {"Bob": [2, 6]}
    assert identity_sets(story, story.settings)["Bob"] == [2, 6]
    result = tiny_sdxl.generate(story)
    assert result.bank.characters["Bob"] == [2, 6]


def test_long_prompts_are_reported_with_the_panel_and_dropped_tokens(tiny_sdxl):
    long_prompt = "[Bob] " + ", ".join(["walks past a very tall old red brick lighthouse"] * 10)
    result = tiny_sdxl.generate(make_story(long_prompt + "\n[Bob] sits"))
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("panel 1:") and "dropped" in result.warnings[0]


@pytest.mark.slow
def test_sd15_story_runs_in_identity_mode(tiny_sd15):
    result = tiny_sd15.generate(make_story())
    assert len(result.panels) == 7 and result.bank.nbytes() > 0
    assert result.panels[0].image.size == (64, 64)
