"""Style presets from configs/styles.yaml: plain prompt templates applied to every panel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import SettingsError, shown
from .resources import data_path

STYLES_FILE = data_path("configs", "styles.yaml")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative: str = ""

    def apply(self, prompt: str, negative_prompt: str = "") -> tuple[str, str]:
        """The styled prompt and the negative prompt with the style's own negatives appended."""
        styled = self.prompt.replace("{prompt}", prompt)
        negatives = ", ".join(part for part in (negative_prompt.strip(), self.negative.strip()) if part)
        return styled, negatives


def load_styles(path: str | Path | None = None) -> tuple[dict[str, Style], str]:
    """All presets and the default preset's name."""
    with open(path or STYLES_FILE, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    styles = {
        name: Style(name, entry.get("prompt", "{prompt}"), entry.get("negative", ""))
        for name, entry in data["styles"].items()
    }
    for style in styles.values():
        if "{prompt}" not in style.prompt:
            raise SettingsError(f"style {style.name!r} in {path or STYLES_FILE} has no {{prompt}} placeholder")
    return styles, data.get("default", "none")


def get_style(name: str | None, path: str | Path | None = None) -> Style:
    """The named preset (None means the file's default), or a SettingsError listing the presets."""
    styles, default = load_styles(path)
    key = default if name is None else name
    if key not in styles:
        raise SettingsError(f"unknown style {shown(name)}; choose one of: {', '.join(styles)}")
    return styles[key]


def check_style_name(name: str, label: str = "style") -> None:
    """Refuse a style the presets do not have, naming ``label`` (a flag or a key path): checked with the
    other settings, before a model loads or an output folder changes."""
    styles, _ = load_styles()
    if name not in styles:
        raise SettingsError(f"{label}: unknown style {shown(name)}; choose one of: {', '.join(styles)}")
