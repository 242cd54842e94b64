"""Prompts of panels and reference portraits, styled; warnings for prompts CLIP cuts short."""

from storydiffusion.planning import PlannedImage
from storydiffusion.prompts import CLIP_MAX_TOKENS, image_prompts, long_prompt_warnings
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.styles import Style
from storydiffusion.tokenizer import build_clip_tokenizer

COMIC = Style("comic", "comic panel, {prompt}", "photo")


def make_story(panels: str):
    settings = GenerationSettings(style="none", negative_prompt="blurry")
    return story_from_text("[Bob] a man with a red coat", panels, settings=settings)


def test_panel_prompt_is_styled_with_both_negatives():
    story = make_story("[Bob] walks\n[NC] a street")
    prompt, negative = image_prompts(story, COMIC, story.settings, PlannedImage(1, 5, panel_index=1))
    assert prompt == f"comic panel, {story.panel_prompt(1)}"
    assert negative == "blurry, photo"


def test_reference_portrait_shows_the_character_facing_the_viewer():
    story = make_story("[Bob] walks")
    portrait = PlannedImage(-1, 5, panel_index=None, character="Bob")
    prompt, _ = image_prompts(story, COMIC, story.settings, portrait)
    assert prompt == "comic panel, portrait of a man with a red coat, facing the viewer"


def test_only_prompts_longer_than_clip_reads_are_reported():
    long_text = ", ".join(["walks past a very tall old red brick lighthouse"] * 10)
    story = make_story(f"[Bob] sits\n[Bob] {long_text}\n[Bob] eats")
    tokenizer = build_clip_tokenizer()
    warnings = long_prompt_warnings(tokenizer, story, COMIC, {0, 1, 2})
    assert len(warnings) == 1 and warnings[0].startswith("panel 2:")
    count = len(tokenizer(COMIC.apply(story.panel_prompt(1))[0], truncation=False).input_ids)
    assert f"the last {count - CLIP_MAX_TOKENS} tokens are dropped" in warnings[0]
    assert long_prompt_warnings(tokenizer, story, COMIC, {0, 2}) == []
