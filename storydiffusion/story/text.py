"""The text syntax of the web UI's two boxes: one character per line, one panel per line.

A panel line is ``prompt with [Name] tags # caption @Name: speech @Name: speech``; a tag may place its
character, ``[Name@left]`` or ``[Name@0.5,0.5,1,1: text of its own]``. Errors name the line of the box
they sit on.
"""

from __future__ import annotations

import re

from ..errors import StoryError
from ..invisible import shows_nothing
from ..settings import GenerationSettings
from .model import DEFAULT_TITLE, Character, DialogueLine, Panel, Story
from .names import CharacterTable, name_index, name_key, norm
from .regions import MAX_CHARACTERS_WITH_REGIONS, placed_tags, split_placed_tags
from .validation import (
    NO_PANELS,
    add_character,
    check_brackets,
    check_name,
    check_text_tags,
    panel_characters,
    resolve_speaker,
    validate_story,
)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CHARACTER_LINE = re.compile(r"\[([^\[\]]*)\](.*)\Z", re.S)
# "@Name:" starts a speech line; the "@" may not follow a letter or digit, so "bob@example.com:" is text.
_SPEECH = re.compile(r"(?<![\w@])@([^\s@:\[\]][^@:\[\]\n]*?)\s*:")


def box_lines(text: str) -> list[str]:
    """The lines of a text box, as a story file's panels are lines: broken at a newline (``\\n``, ``\\r\\n``
    or ``\\r``) only; a page or line separator pasted into a line is a space there, as in a JSON story.
    A byte-order mark at the start (pasted from a file) is no character."""
    return _LINE_BREAK.split(text.removeprefix("\ufeff"))


def parse_characters(text: str) -> dict[str, Character]:
    """Characters from text, one per line: ``[Name] description``. Lines starting with '#' are comments."""
    characters: dict[str, Character] = CharacterTable()  # finds each tag's name in one step
    for number, raw in enumerate(box_lines(text), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _CHARACTER_LINE.match(stripped)
        if match is None:
            raise StoryError(
                "a character line must start with a [Name] tag followed by a description, "
                "e.g. '[Bob] a tall man with red hair'",
                number,
            )
        name = check_name(match.group(1), number)
        add_character(characters, name, match.group(2), number)
    return characters


def parse_panels(text: str, characters: dict[str, Character]) -> list[Panel]:
    """Panels from text, one per non-blank line: ``prompt with [Name] tags # caption @Name: speech``."""
    panels = []
    for number, raw in enumerate(box_lines(text), 1):
        if raw.strip():
            panels.append(parse_panel_line(raw, characters, "panel", number))
    if not panels:
        raise StoryError(NO_PANELS)
    return panels


def parse_panel_line(text: str, characters: dict[str, Character], label: str, line: int | None) -> Panel:
    """One panel line; story files use it too, for panels written as a single string."""
    check_brackets(text, label, line)
    prompt, has_caption, rest = text.partition("#")
    refuse_speech_in_prompt(prompt, characters, label, line)
    prompt, placed = split_placed_tags(prompt.strip(), label, line)
    names = panel_characters(prompt, characters, label, line)
    caption, dialogue = _split_caption(rest, characters, label, line) if has_caption else (None, [])
    index = name_index(characters)
    regions = {index[key]: region for key, region in placed.items()}  # panel_characters knows every tag
    if len(regions) > MAX_CHARACTERS_WITH_REGIONS:
        raise StoryError(f"{label} places {len(regions)} characters; at most {MAX_CHARACTERS_WITH_REGIONS}", line)
    return Panel(prompt=prompt, caption=caption, dialogue=dialogue, characters=names, regions=regions)


def refuse_speech_in_prompt(prompt: str, characters: dict[str, Character], label: str, line: int | None) -> None:
    """A character's speech typed before the '#' would be drawn as words of the prompt, and no bubble made."""
    index = name_index(characters)
    for match in _SPEECH.finditer(prompt):
        name = index.get(name_key(match.group(1)))
        if name is not None:
            raise StoryError(
                f"{label} has the speech '@{name}:' before '#': speech comes after it, as in "
                f"'[{name}] waves # A caption. @{name}: Hello!' (before '#' it would be drawn as words of the prompt)",
                line,
            )


def _split_caption(
    text: str, characters: dict[str, Character], label: str, line: int | None
) -> tuple[str | None, list[DialogueLine]]:
    """Caption part of a panel line: the text up to the first '@Name:', then speech lines."""
    speeches = list(_SPEECH.finditer(text))
    caption = norm(text[: speeches[0].start()] if speeches else text)
    caption = None if shows_nothing(caption) else caption  # only joiners or marks: nothing to letter
    if caption is not None:
        check_text_tags(caption, characters, label, line)
    dialogue = []
    for n, match in enumerate(speeches):
        speaker = resolve_speaker(match.group(1), characters, label, line)
        end = speeches[n + 1].start() if n + 1 < len(speeches) else len(text)
        said = norm(text[match.end() : end])
        if shows_nothing(said):
            raise StoryError(
                f"{label} has an empty speech line for @{speaker}: write what they say after "
                f"'@{speaker}:' or remove it",
                line,
            )
        check_text_tags(said, characters, label, line)
        dialogue.append(DialogueLine(speaker, said))
    return caption, dialogue


def story_from_text(
    characters_text: str,
    panels_text: str,
    *,
    title: str = DEFAULT_TITLE,
    settings: GenerationSettings | None = None,
) -> Story:
    """A validated story from the two text boxes of the web UI."""
    characters = parse_characters(characters_text)
    panels = parse_panels(panels_text, characters)
    story = Story(
        title=norm(title) or DEFAULT_TITLE,
        characters=characters,
        panels=panels,
        settings=settings if settings is not None else GenerationSettings(),
    )
    validate_story(story)
    return story


def story_to_text(story: Story) -> tuple[str, str]:
    """The characters and panels text boxes for ``story``, as ``story_from_text`` reads them: characters,
    prompts, captions and speech (the boxes hold no seeds, photos, control images or identity panels)."""
    characters = "\n".join(f"[{c.name}] {c.description}" for c in story.characters.values())
    lines = []
    for panel in story.panels:
        extra = " ".join(
            part for part in [panel.caption or ""] + [f"@{d.speaker}: {d.text}" for d in panel.dialogue] if part
        )
        prompt = placed_tags(panel.prompt, panel.regions, story.characters)
        lines.append(f"{prompt} # {extra}" if extra else prompt)
    return characters, "\n".join(lines)
