"""A panel's pose or composition: a control image for ControlNet, its kind and how strongly it steers.

``openpose`` and ``depth`` maps are used as given (make them with any pose or depth tool); for
``canny`` any picture will do, its edges are found locally. The image path is relative to the story
file, like a reference photo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError, StoryError, shown
from ..settings import MAX_PATH_CHARS, SETTING_RANGES

CONTROL_KINDS = ("openpose", "canny", "depth")
CONTROL_KEYS = ("type", "image", "scale")
DEFAULT_CONTROL_SCALE = 0.8


@dataclass(frozen=True)
class PanelControl:
    """``kind`` of map (one of CONTROL_KINDS), the ``image`` file, and the ControlNet ``scale``."""

    kind: str
    image: str
    scale: float = DEFAULT_CONTROL_SCALE

    def to_value(self) -> dict[str, Any]:
        return {"type": self.kind, "image": self.image, "scale": self.scale}


def control_from_value(value: Any, where: str, base: Path | None = None) -> PanelControl:
    """``{type, image, scale}`` as a file gives it; a relative image path is taken from ``base``."""
    if not isinstance(value, dict):
        raise StoryError(f"{where} must be a mapping {{type, image, scale}}, got {shown(value)}")
    unknown = sorted(str(key) for key in value if key not in CONTROL_KEYS)
    if unknown:
        raise StoryError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(CONTROL_KEYS)}")
    image = value.get("image")
    if isinstance(image, str) and image.strip() and base is not None:
        image = os.path.abspath(base / image.strip())
    control = PanelControl(value.get("type"), image, value.get("scale", DEFAULT_CONTROL_SCALE))
    check_control(control, where)
    return control


def check_control(control: Any, where: str) -> None:
    """A control built in code or read from a file: a known kind, an image path, a scale in range."""
    if not isinstance(control, PanelControl):
        raise StoryError(f"{where} must be a PanelControl, got {shown(control)}")
    if control.kind is None:
        raise StoryError(f"{where}.type is missing: give one of {', '.join(CONTROL_KINDS)}")
    if control.kind not in CONTROL_KINDS:
        raise StoryError(f"{where}.type is {shown(control.kind)}: use one of {', '.join(CONTROL_KINDS)}")
    image = control.image
    if not isinstance(image, str) or not image.strip() or len(image) > MAX_PATH_CHARS or "\0" in image:
        raise StoryError(f"{where}.image must be the path of an image file, got {shown(image)}")
    try:
        SETTING_RANGES["control_scale"].check(f"{where}.scale", control.scale)
    except SettingsError as error:
        raise StoryError(str(error)) from None
