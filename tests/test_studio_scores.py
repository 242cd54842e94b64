"""The studio's consistency table: the operator's encoder, the rows a finished story gives, the defaults."""

import pytest

from storydiffusion.evaluation import evaluate_run, tiny_clip
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.streaming import RunFinished
from storydiffusion.studio import StudioSession
from storydiffusion.studio_scores import STORY_ROW, StoryScorer, score_rows
from storydiffusion.studio_server import server_options

CHARACTERS = "[Mia] a girl with curly black hair\n[Leo] a boy with round glasses"
STORY = "[Mia] flies a kite\n[Leo] reads\n[Mia] and [Leo] talk\n[Mia] sleeps"


@pytest.fixture(scope="module")
def drawn(tmp_path_factory, tiny_sdxl):
    session = StudioSession(workdir=tmp_path_factory.mktemp("scores") / "session")
    settings = GenerationSettings(style="none", id_images=1, window=2, steps=2)
    story = story_from_text(CHARACTERS, STORY, title="Kite", settings=settings)
    assert isinstance(list(session.generate(tiny_sdxl, story, settings, "tiny-sdxl"))[-1], RunFinished)
    yield session
    session.close()


def test_a_finished_story_gets_a_row_per_character_and_its_clip_t(drawn):
    update = StoryScorer("tiny", "cpu").table(drawn)
    assert update["visible"] is True and update["label"] == "Consistency (tiny)"
    scores = evaluate_run(drawn.run_dir, tiny_clip(), read_references=False)
    expected = [
        ["Mia", 3, f"{scores.characters['Mia'].clip_i:.3f}", "-"],
        ["Leo", 2, f"{scores.characters['Leo'].clip_i:.3f}", "-"],
        [STORY_ROW, 4, f"{scores.summary['clip_t']:.3f}", "-"],
    ]
    assert update["value"] == expected == score_rows(scores)


def test_a_story_drawn_sharing_only_its_characters_scores_their_crops_too(tmp_path, tiny_sdxl):
    """Subject consistency computes each character's mask: the studio keeps them, so the table's Crop column
    has a score (on each mask's box), after the run and after a panel is redrawn."""
    session = StudioSession(workdir=tmp_path / "session")
    settings = GenerationSettings(style="none", id_images=1, window=2, steps=2, consistency="subject")
    story = story_from_text(CHARACTERS, STORY, title="Kite", settings=settings)
    assert isinstance(list(session.generate(tiny_sdxl, story, settings, "tiny-sdxl"))[-1], RunFinished)
    masks = sorted(path.name for path in (session.run_dir / "masks").iterdir())
    assert len(masks) == 5  # one per character shown in each panel: Mia 3 panels, Leo 2
    rows = StoryScorer("tiny", "cpu").table(session)["value"]
    assert all(row[3] != "-" for row in rows[:2]) and rows[2][3] == "-"  # the story row has no crop
    session.regenerate_panel(tiny_sdxl, 2, seed=7)
    assert sorted(path.name for path in (session.run_dir / "masks").iterdir()) == masks
    assert all(row[3] != "-" for row in StoryScorer("tiny", "cpu").table(session)["value"][:2])
    session.close()


def test_without_an_encoder_or_a_drawn_story_the_table_stays_hidden(drawn, tmp_path):
    assert StoryScorer(None).table(drawn)["visible"] is False
    assert StoryScorer("tiny", "cpu").table(None)["visible"] is False
    empty = StudioSession(workdir=tmp_path / "empty")
    assert StoryScorer("tiny", "cpu").table(empty)["visible"] is False


def test_an_encoder_that_cannot_load_hides_the_table_and_keeps_the_run(drawn):
    update = StoryScorer("transformers:no-such/clip-model", "cpu").table(drawn)
    assert update["visible"] is False
    assert len(drawn.panels()) == 4


def test_the_operator_chooses_the_encoder_and_the_offline_demo_uses_the_tiny_one():
    assert server_options(["--offline-demo"]).scores_encoder == "tiny"
    assert server_options(["--offline-demo", "--scores-encoder", "none"]).scores_encoder is None
    assert (
        server_options(["--scores-encoder", "open_clip:ViT-B-32/openai"]).scores_encoder == "open_clip:ViT-B-32/openai"
    )
    assert server_options([]).scores_encoder is None  # the default CLIP is not in this machine's hub cache


def test_the_default_clip_is_used_when_its_files_are_in_the_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from storydiffusion.studio_scores import ENCODER_FILES, default_scores_encoder

    snapshot = tmp_path / "models--openai--clip-vit-large-patch14" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123", encoding="utf-8")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert default_scores_encoder("sdxl-base", "tiny-sdxl") is None
    for name in ENCODER_FILES:
        (snapshot / name).write_text("{}", encoding="utf-8")
    assert default_scores_encoder("sdxl-base", "tiny-sdxl") == "transformers:openai/clip-vit-large-patch14"
