"""Several characters in one panel: regions from the story file, token labels, and consistent attention
that lets a character's tokens read only that character's identity."""

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from storydiffusion import attention
from storydiffusion.attention import ConsistencyContext, ConsistentSelfAttnProcessor, ImageSlot, StoryAttnProcessor
from storydiffusion.bank import IdentityBank
from storydiffusion.errors import StoryError
from storydiffusion.places import Places, RegionalText, region_labels
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import Story
from storydiffusion.story.regions import NAMED_REGIONS, Region, region_from_value

CHANNELS, TEXT = 8, 12
BOB, ALICE = 1, 2


# ------------------------------------------------------------------------------------- the file


def story_with(regions, prompt="[Bob] and [Alice] talk"):
    return Story.from_dict(
        {"characters": {"Bob": "a man", "Alice": "a woman"}, "panels": [{"prompt": prompt, "regions": regions}]}
    )


def test_regions_are_names_boxes_or_mappings_with_text_and_round_trip():
    story = story_with({"bob": "Left", "Alice": {"region": [0.5, 0.25, 1, 1], "prompt": " waving "}})
    regions = story.panels[0].regions
    assert regions["Bob"] == Region(NAMED_REGIONS["left"], name="left")
    assert regions["Alice"] == Region((0.5, 0.25, 1.0, 1.0), "waving")
    # Each region reads its own description and text, and the panel's scene without the other's description.
    assert (
        story.region_text(0, "Alice") == "a woman, waving, and talk"
        and story.region_text(0, "Bob") == "a man, and talk"
    )
    again = Story.from_dict(story.to_dict())
    assert again.panels[0].regions == regions
    assert story.to_dict()["panels"][0]["regions"] == {
        "Bob": "left",
        "Alice": {"region": [0.5, 0.25, 1.0, 1.0], "prompt": "waving"},
    }


@pytest.mark.parametrize(
    "regions,expected",
    [
        ({"Bob": "middle"}, "regions.Bob is 'middle': name one of left, right, center, top, bottom"),
        ({"Bob": [0.5, 0, 0.2, 1]}, "0 <= x0 < x1 <= 1"),
        ({"Bob": [0, 0, 1]}, "a box [x0, y0, x1, y1] of four numbers"),
        ({"Bob": [0, 0, 1, float("nan")]}, "four numbers"),
        ({"Bob": [0, 0, True, 1]}, "four numbers"),
        ({"Carl": "left"}, "regions.Carl names an unknown character; known characters: Bob, Alice"),
        ({"Bob": {"region": "left", "prompt": "[Alice] x"}}, "holds a [tag]"),
        ({"Bob": {"place": "left"}}, "unknown key(s) place"),
        ({"Bob": {"region": "left", "prompt": 3}}, "prompt must be text"),
        (["left"], "regions must be a mapping of character name to place"),
    ],
)
def test_a_bad_region_is_refused_by_panel_and_key(regions, expected):
    with pytest.raises(StoryError) as info:
        story_with(regions)
    assert str(info.value).startswith("panel 1: ") and expected in str(info.value)


def test_a_region_for_a_character_the_panel_does_not_show_is_refused():
    with pytest.raises(StoryError, match=r"regions.Alice: Alice is not in this panel's prompt; tag it, e.g. \[Alice\]"):
        story_with({"Alice": "left"}, prompt="[Bob] walks")


def test_the_text_syntax_places_a_character_in_its_tag_and_writes_it_back():
    from storydiffusion.story import story_from_text, story_to_text

    story = story_from_text("[Bob] a man\n[Alice] a woman", "[bob@left] and [Alice@0.5,0.5,1,1: waving] talk # Hi.")
    panel = story.panels[0]
    assert panel.prompt == "[bob] and [Alice] talk" and panel.characters == ("Bob", "Alice")
    assert panel.regions == {
        "Bob": Region(NAMED_REGIONS["left"], name="left"),
        "Alice": Region((0.5, 0.5, 1, 1), "waving"),
    }
    assert story_to_text(story)[1] == "[bob@left] and [Alice@0.5,0.5,1,1: waving] talk # Hi."


@pytest.mark.parametrize(
    "line,expected",
    [
        ("x\n[Bob@up] walks", "line 2: panel: [Bob@up] is 'up': name one of left, right, center"),
        ("[@left] walks", "line 1: panel: [@left] places no character"),
        ("[Bob@left] and [bob@right]", "line 1: panel places [bob] twice"),
        ("[Bob@0,0,2,1] walks", "line 1: panel: [Bob@0,0,2,1] is [0.0, 0.0, 2.0, 1.0]: a box is"),
        ("[Carl@left] walks", "line 1: panel names unknown character [Carl]"),
    ],
)
def test_a_bad_place_in_the_text_syntax_is_refused_on_its_line(line, expected):
    from storydiffusion.story import story_from_text

    with pytest.raises(StoryError) as info:
        story_from_text("[Bob] a man", line)
    assert str(info.value).startswith(expected)


def test_regions_built_in_code_are_checked_like_the_files():
    from storydiffusion.story.validation import validate_story

    story = story_with({"Bob": "left"})
    story.panels[0].regions["Alice"] = Region((0.5, 0.0, 0.2, 1.0))
    with pytest.raises(StoryError, match="regions.Alice is"):
        validate_story(story)
    story.panels[0].regions["Alice"] = Region((0.5, 0.0, 1.0, 1.0), "with [Bob]")
    with pytest.raises(StoryError, match="plain text without"):
        validate_story(story)


# -------------------------------------------------------------------------------- token labels


def test_tokens_belong_to_the_region_holding_their_centre_the_nearest_centre_among_several():
    placed = [(BOB, region_from_value("left", "r")), (ALICE, region_from_value("right", "r"))]
    labels = region_labels(placed, (2, 4)).view(2, 4)
    assert labels.tolist() == [[1, 1, 2, 2], [1, 1, 2, 2]]
    three = [(1, region_from_value(n, "r")) for n in ("left",)] + [(2, region_from_value("center", "r"))]
    three.append((3, region_from_value("right", "r")))
    assert region_labels(three, (1, 8)).tolist() == [1, 1, 1, 2, 2, 3, 3, 3]
    corner = [(BOB, region_from_value([0, 0, 0.5, 0.5], "r"))]
    assert region_labels(corner, (2, 2)).tolist() == [1, 0, 0, 0]


# ----------------------------------------------------- a character's tokens read its own identity


def marker_attention() -> Attention:
    """One head whose values are the tokens themselves: the output's channel k is the attention weight
    on tokens whose channel k is 1, so a zero there proves those tokens were never read."""
    attn = Attention(query_dim=CHANNELS, heads=1, dim_head=CHANNELS)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        attn.to_q.weight.copy_(torch.randn(CHANNELS, CHANNELS, generator=generator))
        attn.to_k.weight.copy_(torch.randn(CHANNELS, CHANNELS, generator=generator))
        attn.to_v.weight.copy_(torch.eye(CHANNELS))
        attn.to_out[0].weight.copy_(torch.eye(CHANNELS))
        attn.to_out[0].bias.zero_()
    return attn.eval()


def marked_bank():
    bank = IdentityBank()
    for source, channel in ((10, 0), (11, 1)):
        tokens = torch.rand(2, 4, CHANNELS, generator=torch.Generator().manual_seed(source)) * 0.1
        tokens[..., :2] = 0
        tokens[..., channel] = 1.0
        bank.put(source, 3, 0, tokens)
    return bank


def placed_context(labels, bank, owners={10: BOB, 11: ALICE}):  # noqa: B006 - read only
    places = Places((4, 4), regions={0: labels}, owners=owners)
    context = ConsistencyContext(
        [ImageSlot(5, reads_bank=(10, 11))], seed=0, latent_tokens=16, total_steps=6, bank=bank, places=places
    )
    context.step = 3
    return context


def test_a_characters_tokens_never_read_the_other_characters_identity():
    bank = marked_bank()
    hidden = torch.rand(2, 16, CHANNELS, generator=torch.Generator().manual_seed(1))
    hidden[..., :2] = 0
    corner = [(BOB, region_from_value([0, 0, 0.5, 1], "r")), (ALICE, region_from_value([0.5, 0, 1, 0.5], "r"))]
    labels = region_labels(corner, (4, 4))  # bottom right: nobody's
    with torch.no_grad():
        out = ConsistentSelfAttnProcessor(0)(marker_attention(), hidden, story_context=placed_context(corner, bank))
    read_bob, read_alice = out[..., 0], out[..., 1]
    assert (read_bob[:, labels == BOB] > 0).all() and (read_alice[:, labels == BOB] == 0).all()
    assert (read_alice[:, labels == ALICE] > 0).all() and (read_bob[:, labels == ALICE] == 0).all()
    assert (read_bob[:, labels == 0] > 0).all() and (read_alice[:, labels == 0] > 0).all()


def naive_restricted(attn, hidden, bank, labels):
    """Per half and token: softmax over the image's own tokens and the bank sources of the token's owner."""
    out = torch.zeros_like(hidden)
    owners = {10: BOB, 11: ALICE}
    for half in range(hidden.shape[0]):
        for token in range(hidden.shape[1]):
            label = int(labels[token])
            rows = [hidden[half]] + [bank.get(s, 3, 0, "cpu")[half] for s in (10, 11) if label in (0, owners[s])]
            keys_in = torch.cat(rows)
            query = attn.to_q(hidden[half, token])
            weights = torch.softmax(attn.to_k(keys_in) @ query / math.sqrt(CHANNELS), dim=0)
            out[half, token] = attn.to_out[0](weights @ attn.to_v(keys_in))
    return out


def test_the_placed_processor_equals_a_naive_per_token_reference():
    attn = Attention(query_dim=CHANNELS, heads=1, dim_head=CHANNELS).eval()
    bank = marked_bank()
    hidden = torch.randn(2, 16, CHANNELS, generator=torch.Generator().manual_seed(2))
    placed = [(BOB, region_from_value("left", "r")), (ALICE, region_from_value([0.5, 0.5, 1, 1], "r"))]
    with torch.no_grad():
        fast = ConsistentSelfAttnProcessor(0)(attn, hidden, story_context=placed_context(placed, bank))
        slow = naive_restricted(attn, hidden, bank, region_labels(placed, (4, 4)))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def test_each_region_is_conditioned_on_its_own_text_and_the_rest_on_the_panels():
    attn = Attention(query_dim=CHANNELS, cross_attention_dim=TEXT, heads=2, dim_head=4).eval()
    hidden = torch.randn(4, 16, CHANNELS, generator=torch.Generator().manual_seed(3))  # 2 images, 2 halves
    panel_text = torch.randn(4, 7, TEXT, generator=torch.Generator().manual_seed(4))
    bob_text = torch.randn(1, 7, TEXT, generator=torch.Generator().manual_seed(5))
    placed = [(BOB, region_from_value("left", "r"))]
    places = Places((4, 4), regions={1: placed}, texts={1: [RegionalText(BOB, bob_text)]})
    context = ConsistencyContext([ImageSlot(0), ImageSlot(1)], seed=0, latent_tokens=16, total_steps=4, places=places)
    with torch.no_grad():
        out = StoryAttnProcessor()(attn, hidden, panel_text, story_context=context)
        plain = AttnProcessor2_0()(attn, hidden, panel_text)
        own = AttnProcessor2_0()(attn, hidden[3:4], bob_text)[0]
    left = region_labels(placed, (4, 4)) == BOB
    torch.testing.assert_close(out[3, left], own[left])  # image 1, conditional half, Bob's region
    assert torch.equal(out[3, ~left], plain[3, ~left])
    assert torch.equal(out[:3], plain[:3])  # the other image, and every unconditional token


# ---------------------------------------------------------------------------------- a whole story


def two_character_story(regions=None):
    panels = ["[Bob] walks", "[Alice] reads", {"prompt": "[Bob] and [Alice] talk"}]
    if regions:
        panels[2]["regions"] = regions
    return Story.from_dict(
        {
            "characters": {"Bob": "a man with a red coat", "Alice": "a woman with blue hair"},
            "panels": panels,
            "settings": GenerationSettings(steps=4, id_images=1, first_consistent_step=1, style="none").to_dict(),
        }
    )


@pytest.mark.parametrize("regions", [{"Bob": "left", "Alice": {"region": "right", "prompt": "smiling"}}, None])
def test_a_panel_of_two_reads_each_identity_only_where_its_character_is(tiny_sdxl, monkeypatch, regions):
    calls = []
    original = attention.attend_by_owner

    def recording(attn, query, key, value, sources, labels, kernel=attention.sdpa_kernel):
        calls.append((set(labels.unique().tolist()), [owner for _, owner in sources]))
        return original(attn, query, key, value, sources, labels, kernel)

    monkeypatch.setattr(attention, "attend_by_owner", recording)
    result = tiny_sdxl.generate(two_character_story(regions))
    bob, alice = result.bank.characters["Bob"], result.bank.characters["Alice"]
    assert (bob, alice) == ([0], [1])
    assert calls, "the panel of two never went through the placed attention"
    assert all(owners == [BOB, ALICE] for _, owners in calls)  # Bob's identity image, then Alice's
    labels_seen = set().union(*(labels for labels, _ in calls))
    assert {BOB, ALICE} <= labels_seen
    plain = tiny_sdxl.generate(two_character_story(regions), GenerationSettings(steps=4, mode="off", style="none"))
    assert result.panel(2).image.tobytes() != plain.panel(2).image.tobytes()
