"""The story data model: characters, panels, dialogue, and the prompts and captions built from them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoryError
from ..settings import GenerationSettings
from .control import PanelControl
from .names import TAG, is_no_character, name_index, name_key, names_for_tags, tidy_prompt, unknown_character_message
from .regions import Region

DEFAULT_TITLE = "Untitled story"


DEFAULT_REFERENCE_SCALE = 0.6


@dataclass(frozen=True)
class Character:
    """A recurring character: the description replaces its ``[Name]`` tag in every prompt, so the
    model is told the same appearance each time. ``reference`` is a photo (a file path) its identity
    images are conditioned on through IP-Adapter, ``reference_scale`` how strongly."""

    name: str
    description: str
    reference: str | None = None
    reference_scale: float = DEFAULT_REFERENCE_SCALE

    def to_value(self) -> Any:
        """As a story file writes it: the description, or a mapping when it has a reference photo."""
        if self.reference is None:
            return self.description
        return {"description": self.description, "reference": self.reference, "reference_scale": self.reference_scale}


@dataclass(frozen=True)
class DialogueLine:
    """One speech bubble; kept apart from the caption so the layout can draw it next to the speaker."""

    speaker: str
    text: str


@dataclass
class Panel:
    """One image of the story.

    ``prompt`` is kept as written (with ``[Name]`` tags) so the story can be saved and edited again;
    :meth:`Story.panel_prompt` gives the text the model sees. ``characters`` are the canonical names
    shown in the panel, in order of first appearance, and decide which identity each panel shares;
    it is empty for a panel without characters (``[NC]``).
    """

    prompt: str
    caption: str | None = None
    dialogue: list[DialogueLine] = field(default_factory=list)
    # An explicit seed for this panel only; None lets the pipeline derive one from the story seed.
    seed: int | None = None
    characters: tuple[str, ...] = ()
    # Where characters stand (``story/regions.py``), by canonical name. A panel of several characters
    # without regions places them by their subject masks; with regions, tokens outside them are nobody's.
    regions: dict[str, Region] = field(default_factory=dict)
    # A pose or composition for ControlNet (``story/control.py``), or None.
    control: PanelControl | None = None


@dataclass
class Story:
    """A titled list of panels with the characters they show and the settings to draw them with."""

    title: str = DEFAULT_TITLE
    characters: dict[str, Character] = field(default_factory=dict)
    panels: list[Panel] = field(default_factory=list)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    # 0-based panel indices per character to build its identity from; an empty dict lets the
    # pipeline choose (the first panels that show the character).
    identity_panels: dict[str, list[int]] = field(default_factory=dict)

    def panel_prompt(self, i: int) -> str:
        """The prompt for panel ``i`` as the model sees it: tags replaced by descriptions.

        A character listed in the panel but not tagged in its prompt (the implicit character of a
        one-character story) has its description put in front.
        """
        panel = self.panels[i]
        index = name_index(self.characters)
        tagged: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if is_no_character(match.group(1)):
                return ""
            name = index.get(name_key(match.group(1)))
            if name is None:
                raise StoryError(unknown_character_message(f"panel {i + 1}", match.group(1), self.characters))
            tagged.append(name)
            return _apart(self.characters[name].description, panel.prompt, match)

        text = TAG.sub(replace, panel.prompt)
        untagged = [
            self.characters[n].description for n in panel.characters if n not in tagged and n in self.characters
        ]
        return tidy_prompt(", ".join([*untagged, text]))

    def region_text(self, i: int, name: str) -> str:
        """The text a character's region of panel ``i`` is conditioned on: its description, the region's
        own prompt when it has one, then the panel's scene (its prompt without character tags), so the
        region keeps the place and the action while reading no other character's description."""
        region = self.panels[i].regions[name]
        scene = TAG.sub("", self.panels[i].prompt)
        return tidy_prompt(", ".join([self.characters[name].description, region.prompt or "", scene]))

    def panel_caption(self, i: int) -> str | None:
        """The caption of panel ``i`` with ``[Name]`` tags shown as bare names (never raw tags)."""
        caption = self.panels[i].caption
        if caption is None:
            return None
        return names_for_tags(caption, self.characters) or None

    def panel_dialogue(self, i: int) -> list[DialogueLine]:
        """The speech lines of panel ``i`` with any ``[Name]`` tags in their text shown as names."""
        return [DialogueLine(d.speaker, names_for_tags(d.text, self.characters)) for d in self.panels[i].dialogue]

    def character_panels(self) -> dict[str, list[int]]:
        """0-based indices of the panels each character appears in, for every character."""
        return {name: [i for i, p in enumerate(self.panels) if name in p.characters] for name in self.characters}

    def to_dict(self, base: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """A JSON-serialisable dict in the story file format, so it can be saved and loaded again.

        ``identity_panels`` are written 1-based, as a user writes them in a story file. A loaded story holds
        its photos and control images by absolute path; with ``base`` (the folder the file is saved in), those
        inside it are written relative to it, as ``from_dict(data, base)`` and ``load_story`` read them, so
        the saved story names no folder of this machine and moves with its pictures.
        """
        data = {
            "title": self.title,
            "characters": {name: c.to_value() for name, c in self.characters.items()},
            "panels": [
                {
                    "prompt": p.prompt,
                    "caption": p.caption,
                    "dialogue": [{"speaker": d.speaker, "text": d.text} for d in p.dialogue],
                    "seed": p.seed,
                    **({"regions": {name: r.to_value() for name, r in p.regions.items()}} if p.regions else {}),
                    **({"control": p.control.to_value()} if p.control is not None else {}),
                }
                for p in self.panels
            ],
            "settings": self.settings.to_dict(),
            "identity_panels": {name: [i + 1 for i in idx] for name, idx in self.identity_panels.items()},
        }
        if base is not None:
            folder = Path(os.path.abspath(base))
            pictures = [c for c in data["characters"].values() if isinstance(c, dict) and c.get("reference")]
            for holder, key in [(c, "reference") for c in pictures] + [
                (panel["control"], "image") for panel in data["panels"] if "control" in panel
            ]:
                path = Path(os.path.abspath(holder[key]))
                holder[key] = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else holder[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: str | os.PathLike[str] | None = None) -> Story:
        """Build and validate a story from a dict in the story file format (what :meth:`to_dict` gives);
        relative paths of reference photos and control images are taken from ``base`` when it is given."""
        # The reader of the file format builds Story objects, so it is imported here, not at the top.
        from .mapping import story_from_dict

        return story_from_dict(data, None if base is None else Path(base))


def _apart(description: str, prompt: str, tag: re.Match[str]) -> str:
    """A tag's description with a space on each side that touches a word or another tag (``[Bob]runs``,
    ``[Mia][Leo]``), so the model never reads words glued together ("a manruns")."""
    before = prompt[tag.start() - 1] if tag.start() > 0 else " "
    after = prompt[tag.end()] if tag.end() < len(prompt) else " "
    glued_before = before.isalnum() or before == "]"
    glued_after = after.isalnum() or after == "["
    return f"{' ' if glued_before else ''}{description}{' ' if glued_after else ''}"
