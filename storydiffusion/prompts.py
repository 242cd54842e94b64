"""The text each image is drawn from: a panel's prompt or a reference portrait, in the story's style.

CLIP reads 77 tokens and silently drops the rest; ``long_prompt_warnings`` says which panels lose
words, so the user can shorten them instead of wondering why a detail is missing.
"""

from __future__ import annotations

from typing import Any

from .planning import PlannedImage
from .settings import GenerationSettings
from .story import Story
from .styles import Style

CLIP_MAX_TOKENS = 77


def image_prompts(story: Story, style: Style, settings: GenerationSettings, planned: PlannedImage) -> tuple[str, str]:
    """The styled prompt and negative prompt of one planned image (a panel, or a hidden reference portrait)."""
    if planned.panel_index is not None:
        text = story.panel_prompt(planned.panel_index)
    else:
        text = f"portrait of {story.characters[planned.character].description}, facing the viewer"
    return style.apply(text, settings.negative_prompt)


def long_prompt_warnings(tokenizer: Any, story: Story, style: Style, panels: set[int]) -> list[str]:
    """One warning per panel whose styled prompt is longer than CLIP reads, naming the dropped tokens."""
    warnings = []
    for index in sorted(panels):
        prompt, _ = style.apply(story.panel_prompt(index))
        count = len(tokenizer(prompt, truncation=False, verbose=False).input_ids)  # counting: no warning of its own
        if count > CLIP_MAX_TOKENS:
            warnings.append(
                f"panel {index + 1}: the prompt is {count - 2} tokens but CLIP reads {CLIP_MAX_TOKENS - 2}; "
                f"the last {count - CLIP_MAX_TOKENS} tokens are dropped. Shorten the prompt or the character description."
            )
    return warnings
