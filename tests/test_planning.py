"""Planning (storydiffusion/planning.py): identity sets, batches, windows, and which image reads what."""

from __future__ import annotations

import pytest

from storydiffusion.errors import StoryError
from storydiffusion.planning import (
    Batch,
    derive_seed,
    identity_sets,
    panel_seed,
    plan_story,
    reference_source_id,
)
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text

CAST = "[Bob] a tall man with red hair\n[Alice] a young woman in a blue coat"
PANELS = "\n".join(
    [
        "[Bob] and [Alice] meet",  # 0: both
        "[Bob] walks",  # 1: Bob alone
        "[Alice] reads",  # 2: Alice alone
        "[Bob] runs",  # 3: Bob alone
        "[NC] an empty street",  # 4: nobody
        "[Bob] sleeps",  # 5: Bob alone
    ]
)


def make_story(panels: str = PANELS, cast: str = CAST):
    return story_from_text(cast, panels)


def settings(**values) -> GenerationSettings:
    return GenerationSettings(**{"id_images": 2, "window": 2, **values})


def panel_batches(plan: list[Batch]) -> list[Batch]:
    return [batch for batch in plan if batch.kind == "panels"]


def bank_reads(plan: list[Batch]) -> dict[int, tuple[int, ...]]:
    """source id -> the bank entries it reads, for every image of the plan."""
    return {slot.source_id: slot.reads_bank for batch in plan for slot in batch.slots}


def planned_panels(plan: list[Batch]) -> list[int]:
    return [image.panel_index for batch in plan for image in batch.images if image.panel_index is not None]


# ---------------------------------------------------------------------------------- identity sets


def test_identity_set_is_the_first_panels_showing_the_character_alone():
    sets = identity_sets(make_story(), settings())
    assert sets == {"Bob": [1, 3], "Alice": [2]}


@pytest.mark.parametrize("id_images, expected", [(1, [1]), (2, [1, 3]), (3, [1, 3, 5]), (4, [1, 3, 5])])
def test_identity_set_holds_at_most_id_images_panels(id_images, expected):
    assert identity_sets(make_story(), settings(id_images=id_images))["Bob"] == expected


def test_explicit_identity_panels_win_over_the_automatic_choice():
    story = make_story()
    story.identity_panels = {"Bob": [5, 0]}
    sets = identity_sets(story, settings())
    assert sets["Bob"] == [5, 0]
    assert sets["Alice"] == [2]


def test_character_never_shown_alone_gets_an_empty_set():
    story = make_story("[Bob] and [Alice] meet\n[Bob] walks\n[Alice] and [Bob] talk")
    assert identity_sets(story, settings()) == {"Bob": [1], "Alice": []}


def test_a_panel_cannot_be_in_two_identity_sets():
    story = make_story()
    story.identity_panels = {"Bob": [0], "Alice": [0]}
    with pytest.raises(StoryError, match="panel 1 is in the identity sets of both Bob and Alice"):
        identity_sets(story, settings())


# ---------------------------------------------------------------------------------- identity mode


def test_identity_batches_come_first_and_their_images_read_each_other_and_write():
    plan = plan_story(make_story(), settings())
    bob, alice = plan[0], plan[1]
    assert (bob.kind, bob.character) == ("identity", "Bob")
    assert [image.panel_index for image in bob.images] == [1, 3]
    assert [(s.source_id, s.reads_batch, s.reads_bank, s.writes) for s in bob.slots] == [
        (1, (1,), (), True),
        (3, (0,), (), True),
    ]
    assert (alice.kind, alice.character) == ("identity", "Alice")
    assert [(s.source_id, s.reads_batch, s.writes) for s in alice.slots] == [(2, (), True)]
    assert bob.consistent and alice.consistent


def test_every_panel_is_generated_once():
    plan = plan_story(make_story(), settings())
    assert sorted(planned_panels(plan)) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("window, sizes", [(1, [1, 1, 1]), (2, [2, 1]), (3, [3]), (64, [3])])
def test_panels_after_the_identity_pass_are_batched_by_window(window, sizes):
    plan = plan_story(make_story(), settings(window=window))
    batches = panel_batches(plan)
    assert [len(batch.images) for batch in batches] == sizes
    assert [image.panel_index for batch in batches for image in batch.images] == [0, 4, 5]


def test_a_panel_reads_the_bank_of_every_character_it_shows():
    reads = bank_reads(plan_story(make_story(), settings()))
    assert reads[0] == (1, 3, 2)  # Bob's set, then Alice's: the order the prompt names them
    assert reads[5] == (1, 3)


def test_a_panel_without_characters_reads_nothing_and_writes_nothing():
    plan = plan_story(make_story(), settings())
    (slot,) = [slot for batch in plan for slot in batch.slots if slot.source_id == 4]
    assert (slot.reads_batch, slot.reads_bank, slot.writes) == ((), (), False)


def test_panels_batches_read_only_the_bank_never_each_other():
    for batch in panel_batches(plan_story(make_story(), settings(window=3))):
        assert all(slot.reads_batch == () and not slot.writes for slot in batch.slots)


def test_character_never_alone_gets_hidden_reference_portraits():
    story = make_story("[Bob] and [Alice] meet\n[Bob] walks\n[Alice] and [Bob] talk")
    plan = plan_story(story, settings(id_images=3, seed=7))
    (alice,) = [batch for batch in plan if batch.character == "Alice"]
    assert alice.kind == "identity"
    assert [image.panel_index for image in alice.images] == [None, None, None]
    assert [image.character for image in alice.images] == ["Alice"] * 3
    # Alice is the second character of the story: number 1.
    ids = [reference_source_id(1, k) for k in range(3)]
    assert [image.source_id for image in alice.images] == ids
    assert [image.seed for image in alice.images] == [derive_seed(7, "reference", "Alice", k) for k in range(3)]
    assert all(slot.writes for slot in alice.slots)
    reads = bank_reads(plan)
    assert reads[0] == (1, *ids)
    assert reads[2] == (*ids, 1)  # Alice is named first in panel 3


def test_reference_portraits_are_never_shown_as_panels():
    story = make_story("[Bob] and [Alice] meet\n[Bob] walks")
    plan = plan_story(story, settings())
    assert sorted(planned_panels(plan)) == [0, 1]


def test_reference_ids_are_negative_and_distinct():
    ids = [reference_source_id(character, image) for character in range(8) for image in range(16)]
    assert all(i < 0 for i in ids)
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------------------------- regeneration


def test_a_subset_plans_only_the_identity_sets_its_characters_need():
    plan = plan_story(make_story(), settings(), panels=[5])
    assert [(batch.kind, batch.character) for batch in plan] == [("identity", "Bob"), ("panels", None)]
    assert [image.panel_index for image in panel_batches(plan)[0].images] == [5]
    assert bank_reads(plan)[5] == (1, 3)


def test_a_subset_of_panels_without_characters_plans_no_identity_pass():
    plan = plan_story(make_story(), settings(), panels=[4])
    assert [batch.kind for batch in plan] == ["panels"]


def test_a_requested_identity_panel_is_made_in_the_identity_pass():
    plan = plan_story(make_story(), settings(), panels=[3])
    assert [batch.kind for batch in plan] == ["identity"]
    assert planned_panels(plan) == [1, 3]


def test_reference_ids_keep_the_story_order_when_an_earlier_character_is_skipped():
    story = make_story("[Bob] and [Alice] meet\n[Bob] walks\n[NC] rain")
    plan = plan_story(story, settings(id_images=1), panels=[0])
    assert plan[1].character == "Alice"
    assert plan[1].images[0].source_id == reference_source_id(1, 0)


def test_subset_is_sorted_and_deduplicated():
    plan = plan_story(make_story(), settings(mode="off", window=8), panels=[5, 0, 5, 4])
    assert planned_panels(plan) == [0, 4, 5]


@pytest.mark.parametrize(
    "index, says",
    [(6, "panel 7 does not exist: the story has 6 panels"), (-1, "panel index -1 does not exist: .* indices 0..5")],
)
def test_a_panel_outside_the_story_is_refused(index, says):
    with pytest.raises(StoryError, match=says):
        plan_story(make_story(), settings(), panels=[index])


def test_banked_characters_are_not_generated_again():
    plan = plan_story(make_story(), settings(), panels=[0], banked={"Bob": [1, 3]})
    assert [(batch.kind, batch.character) for batch in plan] == [("identity", "Alice"), ("panels", None)]
    assert bank_reads(plan)[0] == (1, 3, 2)


def test_a_banked_identity_panel_is_regenerated_as_a_reader_of_the_others():
    plan = plan_story(make_story(), settings(), panels=[3], banked={"Bob": [1, 3]})
    assert [batch.kind for batch in plan] == ["panels"]
    assert bank_reads(plan)[3] == (1,)


# ------------------------------------------------------------------------------------ window mode


def test_window_mode_reads_the_window_and_the_previous_one():
    plan = plan_story(make_story(), settings(mode="window", window=2))
    assert [batch.kind for batch in plan] == ["window"] * 3
    assert [[image.panel_index for image in batch.images] for batch in plan] == [[0, 1], [2, 3], [4, 5]]
    first, second, last = plan
    assert [(s.reads_batch, s.reads_bank, s.writes) for s in first.slots] == [((1,), (), True), ((0,), (), True)]
    assert [(s.reads_batch, s.reads_bank, s.writes) for s in second.slots] == [
        ((1,), (0, 1), True),
        ((0,), (0, 1), True),
    ]
    assert [s.reads_bank for s in last.slots] == [(2, 3), (2, 3)]
    assert not any(s.writes for s in last.slots)  # nothing reads after the last window


def test_window_mode_forgets_the_window_before_the_previous_one():
    plan = plan_story(make_story(), settings(mode="window", window=2))
    assert [batch.forget_after for batch in plan] == [[], [0, 1], [2, 3]]


def test_window_mode_uneven_last_window():
    plan = plan_story(make_story(), settings(mode="window", window=4))
    assert [len(batch.images) for batch in plan] == [4, 2]
    assert [s.reads_bank for s in plan[1].slots] == [(0, 1, 2, 3)] * 2


def test_window_mode_has_no_identity_pass():
    plan = plan_story(make_story(), settings(mode="window", window=1))
    assert all(batch.kind == "window" and batch.character is None for batch in plan)
    assert planned_panels(plan) == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------------------- mode off


def test_mode_off_plans_plain_batches_that_share_nothing():
    plan = plan_story(make_story(), settings(mode="off", window=4))
    assert [batch.kind for batch in plan] == ["plain", "plain"]
    assert [len(batch.images) for batch in plan] == [4, 2]
    for batch in plan:
        assert not batch.consistent
        assert all(s.reads_batch == () and s.reads_bank == () and not s.writes for s in batch.slots)


# ------------------------------------------------------------------------------------------ seeds


def test_panel_seed_is_derived_from_the_story_seed_unless_the_panel_has_one():
    story = make_story()
    story.panels[2].seed = 1234
    assert panel_seed(story, 2, settings(seed=5)) == 1234
    assert panel_seed(story, 1, settings(seed=5)) == derive_seed(5, "panel", 1)
    assert panel_seed(story, 1, settings(seed=5)) != panel_seed(story, 1, settings(seed=6))
    assert panel_seed(story, 1, settings(seed=5)) != panel_seed(story, 3, settings(seed=5))


def test_derived_seeds_are_stable_and_fit_32_bits():
    assert derive_seed(3, "panel", 0) == derive_seed(3, "panel", 0)
    seeds = {derive_seed(3, "panel", i) for i in range(200)}
    assert len(seeds) == 200
    assert all(0 <= seed < 2**32 for seed in seeds)


def test_a_panel_keeps_its_seed_whatever_else_is_planned():
    full = {image.panel_index: image.seed for batch in plan_story(make_story(), settings()) for image in batch.images}
    longer = make_story(PANELS + "\n[Alice] waves")
    alone = plan_story(longer, settings(), panels=[5])
    assert {image.panel_index: image.seed for batch in alone for image in batch.images}[5] == full[5]


def test_planned_images_carry_their_panel_seed():
    story = make_story()
    story.panels[4].seed = 99
    plan = plan_story(story, settings(seed=11))
    seeds = {image.panel_index: image.seed for batch in plan for image in batch.images}
    assert seeds == {i: panel_seed(story, i, settings(seed=11)) for i in range(6)}
    assert seeds[4] == 99
