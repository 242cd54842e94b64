"""The animate settings checks: every range comes from ``storydiffusion.settings.SETTING_RANGES``.

The CLI, the web tab and the video pipeline all check through here, so a clip setting has one range
and one message wherever it is typed.
"""

from __future__ import annotations

from typing import Any

from .. import settings
from ..errors import SettingsError, StoryDiffusionError
from ..settings import SETTING_RANGES
from ..weight_sources import names_nothing

ANIMATE_MODELS = ("default", "tiny")


class AnimationError(StoryDiffusionError, ValueError):
    """Animation settings or inputs are unusable (frame count, size, panels)."""


def check_setting(name: str, label: str, value: Any) -> None:
    """Check ``value`` against ``SETTING_RANGES[name]``; the message names ``label`` (the flag a user typed)."""
    try:
        SETTING_RANGES[name].check(label, value)
    except SettingsError as error:
        raise AnimationError(str(error)) from error


def check_frames(frames: int, max_frames: int | None = None) -> None:
    """A clip holds both panels; a motion adapter also has its own limit (``motion_max_seq_length``)."""
    if max_frames is not None and isinstance(frames, int) and frames > max_frames:
        raise AnimationError(
            f"--frames {frames} is more than the motion adapter handles ({max_frames}); use at most {max_frames}"
        )
    check_setting("frames", "--frames", frames)


def check_denoising(steps: int | None = None, guidance: float | None = None, strength: float | None = None) -> None:
    """Steps, guidance and strength of a clip; ``None`` means "the default" and is not checked."""
    for name, label, value in (
        ("animation_steps", "--steps", steps),
        ("guidance", "--guidance", guidance),
        ("strength", "--strength", strength),
    ):
        if value is not None:
            check_setting(name, label, value)


def check_video_size(height: int, width: int) -> None:
    """The VAE works on multiples of 8; the image-size ranges of generation apply to the video too."""
    check_setting("height", "video height", height)
    check_setting("width", "video width", width)


def check_text(label: str, text: Any) -> None:
    """A prompt of a clip: the same rule as a story's text (settings.check_text), named by its flag."""
    try:
        settings.check_text(label, text)
    except SettingsError as error:
        raise AnimationError(str(error)) from error


def check_animate_model(model: str | None) -> None:
    """A clip's base model: ``default``, ``tiny``, an SD 1.5 folder that exists or a hub id; a typo is
    refused here, not after the video libraries have loaded."""
    if model not in (None, "", *ANIMATE_MODELS) and names_nothing(model):
        raise AnimationError(
            f"--model {model!r} is not {' or '.join(ANIMATE_MODELS)}, an SD 1.5 folder that exists, "
            "or a hub id of the form owner/name"
        )
