"""Stories: characters, panels, captions and dialogue, read from text boxes or a YAML/JSON file.

The pipeline only ever sees a validated :class:`Story`, so every mistake a user can make in a story
is caught here and reported with the line it sits on and what to write instead.

Text syntax (one panel per line, as in the original StoryDiffusion demo)::

    [Bob] opens the door, [Alice] waits outside # Late again. @Bob: Sorry! @Alice: Come in.

See ``docs/story-format.md`` for the full reference. The modules: ``model`` (the data classes and
the prompts built from them), ``names`` (how names and tags match), ``text`` (the text syntax),
``files`` and ``mapping`` (story files), ``validation`` (the rules a story must follow).
"""

from ..errors import StoryError
from .files import load_story
from .mapping import PANEL_KEYS, STORY_KEYS
from .model import DEFAULT_TITLE, Character, DialogueLine, Panel, Story
from .names import NO_CHARACTER
from .text import parse_characters, parse_panels, story_from_text, story_to_text
from .validation import validate_story

__all__ = [
    "Character",
    "DialogueLine",
    "Panel",
    "Story",
    "StoryError",
    "load_story",
    "parse_characters",
    "parse_panels",
    "story_from_text",
    "story_to_text",
    "validate_story",
    "NO_CHARACTER",
    "DEFAULT_TITLE",
    "STORY_KEYS",
    "PANEL_KEYS",
]
