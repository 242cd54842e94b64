"""A character from a reference photo: diffusers' IP-Adapter, per image, on tiny random-weight models."""

import json

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, IPAdapterAttnProcessor2_0
from PIL import Image, ImageDraw

from storydiffusion.attention import ConsistencyContext, ImageSlot
from storydiffusion.cli import main
from storydiffusion.cross_attention import ReferenceAttnProcessor
from storydiffusion.errors import BankError, ImageInputError, StoryError
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.story import Story, load_story

CHANNELS, TEXT, IMAGE_TOKENS = 16, 12, 4


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def adapter_and_layer():
    attn = Attention(query_dim=CHANNELS, cross_attention_dim=TEXT, heads=2, dim_head=8).eval()
    adapter = IPAdapterAttnProcessor2_0(hidden_size=CHANNELS, cross_attention_dim=TEXT, num_tokens=(IMAGE_TOKENS,))
    with torch.no_grad():
        for k, parameter in enumerate([*attn.parameters(), *adapter.parameters()]):
            parameter.copy_(seeded(*parameter.shape, seed=k) * 0.3)
    return attn, adapter


@pytest.mark.parametrize("scales", [[0.7, 0.7], [0.0, 0.9], [0.0, 0.0]])
def test_the_reference_processor_is_diffusers_ip_adapter_per_image(scales):
    attn, adapter = adapter_and_layer()
    hidden = seeded(4, 9, CHANNELS, seed=10)  # two images, two guidance halves
    text = seeded(4, 7, TEXT, seed=11)
    photo_tokens = [seeded(4, 1, IMAGE_TOKENS, TEXT, seed=12)]
    context = ConsistencyContext([ImageSlot(0), ImageSlot(1)], seed=0, latent_tokens=9, total_steps=4)
    context.reference_scales = scales
    with torch.no_grad():
        ours = ReferenceAttnProcessor(adapter)(attn, hidden, (text, photo_tokens), story_context=context)
        plain = AttnProcessor2_0()(attn, hidden, text)
        for image, scale in enumerate(scales):
            rows = [image, image + 2]
            if scale == 0:
                assert torch.equal(ours[rows], plain[rows])  # exactly the adapter-free layer
            else:
                adapter.scale = [scale]
                theirs = adapter(attn, hidden[rows], (text[rows], [photo_tokens[0][rows]]))
                torch.testing.assert_close(ours[rows], theirs, rtol=1e-5, atol=1e-6)


def test_without_a_run_the_reference_processor_is_the_plain_layer():
    attn, adapter = adapter_and_layer()
    hidden, text = seeded(2, 9, CHANNELS, seed=1), seeded(2, 7, TEXT, seed=2)
    with torch.no_grad():
        out = ReferenceAttnProcessor(adapter)(attn, hidden, (text, [seeded(2, 1, IMAGE_TOKENS, TEXT)]))
        assert torch.equal(out, AttnProcessor2_0()(attn, hidden, text))


# ------------------------------------------------------------------------------------ the story


def portrait(path, colour="orange"):
    image = Image.new("RGB", (48, 64), "white")
    ImageDraw.Draw(image).ellipse((8, 8, 40, 56), fill=colour)
    image.save(path)
    return path


def story_with_photo(photo, scale=0.6, mode="identity"):
    alice = {"description": "a woman with blue hair", "reference": str(photo), "reference_scale": scale}
    return Story.from_dict(
        {
            "characters": {"Bob": "a man with a red coat", "Alice": alice if photo else alice["description"]},
            "panels": ["[Bob] walks", "[Alice] reads", "[Alice] sits", "[Bob] sleeps", "[Bob] and [Alice] talk"],
            "settings": {"steps": 3, "id_images": 1, "first_consistent_step": 1, "style": "none", "mode": mode},
        }
    )


@pytest.fixture(scope="module")
def with_adapter():
    pipeline = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")
    pipeline.attach_references()
    return pipeline


def test_a_photo_changes_its_characters_identity_and_what_reads_it_and_nothing_else(with_adapter, tiny_sdxl, tmp_path):
    photo = portrait(tmp_path / "alice.png")
    without = tiny_sdxl.generate(story_with_photo(None))  # no adapter loaded at all
    zero = with_adapter.generate(story_with_photo(photo, 0.0))
    conditioned = with_adapter.generate(story_with_photo(photo, 0.8))
    same = [a.image.tobytes() == b.image.tobytes() for a, b in zip(without.panels, zero.panels)]
    assert all(same)  # scale 0: the adapter changes nothing
    changed = [a.image.tobytes() != b.image.tobytes() for a, b in zip(without.panels, conditioned.panels)]
    # Alice's identity image (panel 2) and the panels that read it (3, 5); Bob's panels (1, 4) untouched.
    assert changed == [False, True, True, False, True]
    assert conditioned.bank.signature["references"]["Alice"][1] == 0.8


def test_in_window_mode_the_photo_conditions_the_panels_of_its_character_alone(with_adapter, tmp_path):
    photo = portrait(tmp_path / "alice.png")
    zero = with_adapter.generate(story_with_photo(photo, 0.0, mode="window"))
    conditioned = with_adapter.generate(story_with_photo(photo, 0.8, mode="window"))
    changed = [a.image.tobytes() != b.image.tobytes() for a, b in zip(zero.panels, conditioned.panels)]
    assert changed[1] and changed[2]  # Alice alone: conditioned, and read by the rest of her window


def test_a_bank_made_with_one_photo_is_refused_by_a_run_with_another(with_adapter, tmp_path):
    first = with_adapter.generate(story_with_photo(portrait(tmp_path / "a.png")))
    other = story_with_photo(portrait(tmp_path / "b.png", "green"))
    with pytest.raises(BankError, match="references"):
        with_adapter.generate(other, panels=[2], bank=first.bank)
    again = with_adapter.generate(story_with_photo(tmp_path / "a.png"), panels=[2], bank=first.bank)
    assert again.panels[0].index == 2


def test_photos_given_by_name_take_the_place_of_files(with_adapter, tmp_path):
    photo = portrait(tmp_path / "alice.png")
    from_file = with_adapter.generate(story_with_photo(photo, 0.8))
    story = story_with_photo(tmp_path / "missing.png", 0.8)
    given = with_adapter.generate(story, references={"Alice": Image.open(photo)})
    assert [p.image.tobytes() for p in given.panels] == [p.image.tobytes() for p in from_file.panels]


# ------------------------------------------------------------------------------- files and checks


def test_reference_paths_are_relative_to_the_story_file_and_round_trip(tmp_path):
    folder = tmp_path / "story"
    folder.mkdir()
    portrait(folder / "nora.png")
    (folder / "s.yaml").write_text(
        "characters:\n  Nora: {description: a tall woman, reference: nora.png, reference_scale: 0.7}\n"
        "panels: ['[Nora] waves']\n",
        encoding="utf-8",
    )
    story = load_story(folder / "s.yaml")
    assert story.characters["Nora"].reference == str(folder / "nora.png")
    assert story.characters["Nora"].reference_scale == 0.7
    assert Story.from_dict(story.to_dict()).characters == story.characters
    listed = Story.from_dict(
        {"characters": [{"name": "Nora", "description": "a woman", "reference": "n.png"}], "panels": ["[Nora] x"]}
    )
    assert listed.characters["Nora"].reference == "n.png" and listed.characters["Nora"].reference_scale == 0.6


@pytest.mark.parametrize(
    "nora,expected",
    [
        ({"description": "a", "reference": ""}, "characters.Nora.reference must be the path of an image file"),
        ({"description": "a", "reference": ["x"]}, "characters.Nora.reference must be the path of an image file"),
        ({"description": "a", "reference": "n.png", "reference_scale": 3}, "reference_scale must be between 0 and 2"),
        ({"description": "a", "photo": "n.png"}, "unknown key(s) photo; known keys: description, reference"),
        ({"reference": "n.png"}, "character Nora has no description"),
    ],
)
def test_a_bad_reference_is_refused_by_key(nora, expected):
    with pytest.raises(StoryError) as info:
        Story.from_dict({"characters": {"Nora": nora}, "panels": ["[Nora] waves"]})
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "photo,expected",
    [
        (None, "'nora.png' does not exist: check the name; a relative path is read from the folder of s.json"),
        (b"not an image at all", "not an image this tool reads"),
        ("wide", "a long side more than 8 times the short one"),
    ],
)
def test_a_bad_photo_exits_2_naming_the_character_before_the_folder_changes(tmp_path, capsys, photo, expected):
    path = tmp_path / "nora.png"
    if isinstance(photo, bytes):
        path.write_bytes(photo)
    elif photo == "wide":
        Image.new("RGB", (900, 100)).save(path)
    story = tmp_path / "s.json"
    story.write_text(
        json.dumps({"characters": {"Nora": {"description": "a", "reference": "nora.png"}}, "panels": ["[Nora] x"]})
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code = main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet", "--overwrite"])
    error = capsys.readouterr().err
    assert code == 2 and "characters.Nora.reference" in error and expected in error
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_a_story_with_a_photo_runs_from_the_command_line_and_records_it(tmp_path, monkeypatch):
    import storydiffusion.pipeline_steering as steering

    encoded = []
    embed = steering.reference_embeddings
    monkeypatch.setattr(steering, "reference_embeddings", lambda *a, **k: encoded.append(1) or embed(*a, **k))
    story = tmp_path / "s.yaml"
    portrait(tmp_path / "nora.png")
    story.write_text(
        "characters:\n  Nora: {description: a woman, reference: nora.png}\npanels: ['[Nora] waves', '[Nora] sits']\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert main(["generate", str(story), "--out", str(out), "--model", "tiny-sdxl", "--quiet", "--steps", "2"]) == 0
    manifest = json.loads((out / "story.json").read_text(encoding="utf-8"))
    recorded = manifest["story"]["characters"]["Nora"]["reference"]  # the run's own copy, no path of the machine
    assert recorded.startswith("inputs/") and str(tmp_path) not in (out / "story.json").read_text(encoding="utf-8")
    assert (out / recorded).read_bytes() == (tmp_path / "nora.png").read_bytes()
    assert len(list((out / "panels").glob("*.png"))) == 2
    assert len(encoded) == 1  # the whole photo is encoded once, by the run: its check cannot fail


def test_reading_a_photo_checks_it_like_every_image():
    from storydiffusion.reference_adapter import read_reference

    with pytest.raises(ImageInputError, match="Nora's photo: not an image"):
        read_reference(b"\x89PNG broken", "Nora's photo")


@pytest.mark.parametrize("mode", ["identity", "window", "off"])
def test_a_photo_conditions_its_identity_images_or_without_them_the_panels_of_its_character_alone(mode):
    from storydiffusion.planning import plan_story
    from storydiffusion.story_references import batch_references

    story = story_with_photo("unread.png", 0.8, mode=mode)
    photo = torch.ones(1, 32)
    conditioned = set()
    for batch in plan_story(story, story.settings.merged(steps=3)):
        scales, rows = batch_references(story, batch, mode, {"Alice": photo})
        for planned, scale, row in zip(batch.images, scales, rows):
            assert (scale == 0.8) == (row is photo) and scale in (0.0, 0.8)
            if scale:
                conditioned.add((batch.kind, planned.panel_index))
    expected = (
        {("identity", 1)}
        if mode == "identity"
        else {(("window" if mode == "window" else "plain"), 1), (("window" if mode == "window" else "plain"), 2)}
    )
    assert conditioned == expected


def test_a_shared_server_never_reads_a_file_a_story_names(tiny_sdxl, tmp_path):
    """read_files=False: a reference or control image must come as an image, never as a path to read."""
    secret = portrait(tmp_path / "secret.png")
    with pytest.raises(StoryError, match="characters.Alice.reference names a file"):
        tiny_sdxl.generate(story_with_photo(secret), read_files=False)
    posed = Story.from_dict(
        {
            "characters": {"Bob": "a man"},
            "panels": [{"prompt": "[Bob] waves", "control": {"type": "canny", "image": str(secret)}}],
            "settings": {"steps": 2, "style": "none"},
        }
    )
    with pytest.raises(StoryError, match="panel 1: control.image names a file"):
        tiny_sdxl.generate(posed, read_files=False)
    given = tiny_sdxl.generate(posed, control_images={0: Image.open(secret)}, read_files=False)
    assert given.panel(0).image.size == (64, 64)
