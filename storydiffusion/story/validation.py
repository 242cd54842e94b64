"""What makes a story valid: the checks the text and file readers share, and :func:`validate_story`.

The readers run these checks as they go, so an error can name the line it sits on; ``validate_story``
runs them again on the finished story, which also catches stories built in code.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from ..errors import SettingsError, StoryError, TooManyPanels, shown, wrong_kind
from ..invisible import shows_nothing
from ..settings import MAX_PATH_CHARS, MAX_TEXT_CHARS, SETTING_RANGES, control_character, control_character_message
from .control import check_control
from .model import DEFAULT_REFERENCE_SCALE, Character, DialogueLine, Panel, Story
from .names import (
    TAG,
    is_no_character,
    known_names,
    name_index,
    name_key,
    norm,
    odd_name_character,
    tidy_prompt,
    unknown_character_message,
    unknown_speaker_message,
)
from .regions import MAX_CHARACTERS_WITH_REGIONS, Region, box_from_value

NO_PANELS = "the story has no panels: write one panel per line (in a story file, list them under 'panels:')"
NO_CHARACTER_MESSAGE = "names no character: add a [Name] tag, or [NC] for a panel without characters"
MAX_NAME_CHARS = 100  # a name is shown in bubbles and messages: longer is a mistake


# ------------------------------------------------------------------------------------ shared checks


def check_name(raw: str, line: int | None) -> str:
    """A valid character name, trimmed; StoryError otherwise."""
    name = norm(raw)
    if not name:
        raise StoryError("a character name is empty: write the name inside the brackets, e.g. '[Bob] a tall man'", line)
    if len(name) > MAX_NAME_CHARS:
        raise StoryError(
            f"character name {shown(name)} is {len(name):,} characters long; at most {MAX_NAME_CHARS} are allowed",
            line,
        )
    if is_no_character(name):  # in any case and Unicode form (full-width ＮＣ too), as tags are matched
        raise StoryError("NC is reserved for panels without characters: choose another character name", line)
    if unicodedata.category(name[0]).startswith("M"):  # a lone accent (U+0301) is no name anyone can see
        raise StoryError(
            f"character name {name!r} starts with a combining mark: write the letter it belongs to first", line
        )
    if (ch := odd_name_character(name)) is not None:
        shown_char = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X} (an invisible character)"
        raise StoryError(
            f"character name {shown(name)} contains {shown_char}: names may only use letters, digits, spaces "
            "and - _ . '",
            line,
        )
    return name


def add_character(
    characters: dict[str, Character],
    name: str,
    description: Any,
    line: int | None,
    reference: Any = None,
    reference_scale: Any = DEFAULT_REFERENCE_SCALE,
) -> None:
    """Add ``name`` with its description (and reference photo) to ``characters``, refusing empty
    descriptions and duplicates."""
    if description is None or (isinstance(description, str) and not description.strip()):
        raise StoryError(
            f"character {name} has no description: write what they look like, e.g. '[{name}] a tall man with red hair'",
            line,
        )
    if not isinstance(description, str):
        raise StoryError(wrong_kind(f"characters.{name}.description", "text", description), line)
    description = norm(description)
    if "[" in description or "]" in description:
        raise StoryError(f"the description of character {name} may not contain '[' or ']': remove the brackets", line)
    if name_key(name) in name_index(characters):
        raise StoryError(
            f"character {name} is defined twice (names match whatever their case or Unicode form): define each character once",
            line,
        )
    character = Character(name, description, reference, reference_scale)
    check_reference(character, line)
    characters[name] = character


def check_reference(character: Character, line: int | None = None) -> None:
    """A reference photo is a file path (the image itself is read before the run) with a scale in range."""
    name, reference = character.name, character.reference
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        raise StoryError(f"characters.{name}.reference must be the path of an image file, got {shown(reference)}", line)
    if isinstance(reference, str) and (len(reference) > MAX_PATH_CHARS or "\0" in reference):
        raise StoryError(f"characters.{name}.reference is not a usable file path", line)
    try:
        SETTING_RANGES["reference_scale"].check(f"characters.{name}.reference_scale", character.reference_scale)
    except SettingsError as error:  # with why a value of the wrong kind is no number ("text is not a number")
        raise StoryError(str(error), line) from None


def check_brackets(text: str, label: str, line: int | None) -> None:
    """Every '[' closes with ']' before the next one opens."""
    open_at = None
    for column, ch in enumerate(text, 1):
        if ch == "[":
            if open_at is not None:
                raise StoryError(
                    f"{label} has an unbalanced '[' (column {open_at}): close each [Name] tag with ']' before the next '['",
                    line,
                )
            open_at = column
        elif ch == "]":
            if open_at is None:
                raise StoryError(f"{label} has an unbalanced ']' (column {column}): write tags as [Name]", line)
            open_at = None
    if open_at is not None:
        raise StoryError(f"{label} has an unbalanced '[' (column {open_at}): close the [Name] tag with ']'", line)


def resolve_tag(tag: str, characters: dict[str, Character], label: str, line: int | None) -> str:
    """Canonical name for a tag, case-insensitively; StoryError naming the known characters otherwise."""
    if not norm(tag):
        raise StoryError(
            f"{label} has an empty tag []: write a character name inside the brackets, or [NC] for a panel without characters",
            line,
        )
    name = name_index(characters).get(name_key(tag))
    if name is None:
        raise StoryError(unknown_character_message(label, tag, characters), line)
    return name


def resolve_speaker(raw: str, characters: dict[str, Character], label: str, line: int | None) -> str:
    """Canonical name of a speaker, case-insensitively; speakers must be characters."""
    name = name_index(characters).get(name_key(raw))
    if name is None:
        raise StoryError(unknown_speaker_message(label, norm(raw), characters), line)
    return name


def check_text_tags(text: str, characters: dict[str, Character], label: str, line: int | None) -> None:
    """Tags in captions and speech must name known characters (they are shown as the bare name)."""
    for tag in TAG.findall(text):
        if not is_no_character(tag):
            resolve_tag(tag, characters, label, line)


def panel_characters(prompt: str, characters: dict[str, Character], label: str, line: int | None) -> tuple[str, ...]:
    """The characters a prompt shows, by the rules of the text syntax (tags, [NC], implicit single character)."""
    names: list[str] = []
    no_character = False
    for tag in TAG.findall(prompt):
        if is_no_character(tag):
            no_character = True
            continue
        name = resolve_tag(tag, characters, label, line)
        if name not in names:
            names.append(name)
    if no_character and names:
        raise StoryError(
            f"{label} has [NC] together with [{names[0]}]: [NC] marks a panel without characters, "
            "so remove either [NC] or the other tags",
            line,
        )
    if not tidy_prompt(TAG.sub(" ", prompt)):
        raise StoryError(
            f"{label} has an empty prompt: describe what the panel shows after the [Name] tags and before any '#' caption",
            line,
        )
    if not names and not no_character:
        if len(characters) == 1:
            names = list(characters)
        else:
            raise StoryError(f"{label} {NO_CHARACTER_MESSAGE}", line)
    return tuple(names)


# ------------------------------------------------------------------------------------ validate_story


def validate_story(story: Story) -> None:
    """Raise StoryError for anything that would stop or spoil a run; do nothing for a good story.

    Catches what the parsers catch, for stories built in code, plus the settings, the panel limit
    and ``identity_panels``.
    """
    _validate_settings(story)
    _validate_characters(story.characters)
    _validate_panel_count(story)
    for i, panel in enumerate(story.panels):
        _validate_panel(panel, story.characters, f"panel {i + 1}")
    _validate_identity_panels(story)


def _validate_settings(story: Story) -> None:
    try:
        story.settings.validate()
    except SettingsError as exc:
        raise StoryError(str(exc)) from None
    if not isinstance(story.title, str):
        raise StoryError(wrong_kind("title", "text", story.title))
    check_length(story.title, "title")


def check_length(text: str, path: str) -> None:
    """Text longer than any prompt or caption can use is a mistake (a pasted file?), refused before it is
    stored; so is a control character, however the text came (a file's escape, a text box, an API client)."""
    if len(text) > MAX_TEXT_CHARS:
        raise StoryError(
            f"{path} is {len(text):,} characters long (it starts {shown(text[:40])}); "
            f"at most {MAX_TEXT_CHARS:,} are allowed"
        )
    if (found := control_character(text)) is not None:
        raise StoryError(control_character_message(path, found))


def _validate_characters(characters: dict[str, Character]) -> None:
    seen: set[str] = set()
    for name, character in characters.items():
        if not isinstance(character, Character) or character.name != name:
            raise StoryError(f"characters[{name!r}] must be Character({name!r}, description)")
        check_name(name, None)
        if norm(name) != name:
            raise StoryError(f"character name {name!r} has extra spaces: write it as {norm(name)!r}")
        if not isinstance(character.description, str) or not character.description.strip():
            raise StoryError(f"character {name} has no description: write what they look like")
        if "[" in character.description or "]" in character.description:
            raise StoryError(f"the description of character {name} may not contain '[' or ']': remove the brackets")
        check_length(character.description, f"characters.{name}.description")
        check_reference(character)
        if name_key(name) in seen:
            raise StoryError(
                f"character {name} is defined twice (names match whatever their case or Unicode form): define each character once"
            )
        seen.add(name_key(name))


def _validate_panel_count(story: Story) -> None:
    if not story.panels:
        raise StoryError(NO_PANELS)
    count = len(story.panels)
    if count > story.settings.max_panels:
        raise TooManyPanels(count, story.settings.max_panels)


def _validate_panel(panel: Panel, characters: dict[str, Character], label: str) -> None:
    if not isinstance(panel.prompt, str):
        raise StoryError(wrong_kind(f"{label}: prompt", "text", panel.prompt))
    check_length(panel.prompt, f"{label}: prompt")
    check_brackets(panel.prompt, label, None)
    _check_prompt_reads_back(panel.prompt, characters, label)
    expected = panel_characters(panel.prompt, characters, label, None)
    for name in panel.characters:
        if name not in characters:
            raise StoryError(unknown_character_message(label, name, characters))
    if tuple(panel.characters) != expected:
        raise StoryError(
            f"{label} lists characters ({', '.join(panel.characters) or 'none'}) but its prompt shows "
            f"({', '.join(expected) or 'none'}): make the characters match the [Name] tags of the prompt "
            "(and write [NC] in the prompt of a panel without characters)"
        )
    if panel.caption is not None:
        if not isinstance(panel.caption, str):
            raise StoryError(wrong_kind(f"{label}: caption", "text", panel.caption))
        check_length(panel.caption, f"{label}: caption")
        check_brackets(panel.caption, label, None)
        check_text_tags(panel.caption, characters, label, None)
    for n, line in enumerate(panel.dialogue, 1):
        _validate_speech(line, characters, label)
        check_length(line.text, f"{label}: dialogue {n}: text")
    seed = panel.seed
    if seed is not None and not SETTING_RANGES["seed"].contains(seed):
        raise StoryError(f"{label}: seed must be a whole number {SETTING_RANGES['seed'].describe()}, got {shown(seed)}")
    _validate_regions(panel, label)
    if panel.control is not None:
        check_control(panel.control, f"{label}: control")


def _check_prompt_reads_back(prompt: str, characters: dict[str, Character], label: str) -> None:
    """A prompt built in code must read back from the run's story.json as itself: there a '#' starts the
    caption and '@Name:' a speech, so a story that draws one text and records another is refused first."""
    from .text import refuse_speech_in_prompt

    if "#" in prompt:
        raise StoryError(
            f"{label}: the prompt holds '#', which starts the caption when a story is written and read back: "
            "put the caption in the panel's caption, and spell out a number sign ('number 7', not '#7')"
        )
    refuse_speech_in_prompt(prompt, characters, label, None)


def _validate_regions(panel: Panel, label: str) -> None:
    """Regions built in code meet the file's rules: shown characters, real boxes, plain text, at most four."""
    if not isinstance(panel.regions, dict):
        raise StoryError(wrong_kind(f"{label}: regions", "a mapping of character name to Region", panel.regions))
    if len(panel.regions) > MAX_CHARACTERS_WITH_REGIONS:
        raise StoryError(
            f"{label}: regions places {len(panel.regions)} characters; at most {MAX_CHARACTERS_WITH_REGIONS}"
        )
    for name, region in panel.regions.items():
        if name not in panel.characters:
            raise StoryError(f"{label}: regions.{name}: {name} is not in this panel's prompt; tag it, e.g. [{name}]")
        if not isinstance(region, Region):
            raise StoryError(wrong_kind(f"{label}: regions.{name}", "a Region", region))
        box_from_value(list(region.box), f"{label}: regions.{name}")
        if region.prompt is not None:
            if not isinstance(region.prompt, str) or "[" in region.prompt or "]" in region.prompt:
                raise StoryError(f"{label}: regions.{name}.prompt must be plain text without [tags]")
            check_length(region.prompt, f"{label}: regions.{name}.prompt")


def _validate_speech(line: DialogueLine, characters: dict[str, Character], label: str) -> None:
    if line.speaker not in characters:
        raise StoryError(unknown_speaker_message(label, line.speaker, characters))
    if not isinstance(line.text, str) or shows_nothing(line.text):
        raise StoryError(f"{label} has an empty speech line for @{line.speaker}: write what they say")
    check_brackets(line.text, label, None)
    check_text_tags(line.text, characters, label, None)


def _validate_identity_panels(story: Story) -> None:
    """Each listed panel exists, shows its character, and belongs to one character only."""
    owner: dict[int, str] = {}
    for name, indices in story.identity_panels.items():
        label = f"identity_panels.{name}"
        if name not in story.characters:
            raise StoryError(f"{label} names an unknown character; known characters: {known_names(story.characters)}")
        if isinstance(indices, (str, bytes)) or not isinstance(indices, (list, tuple)):
            raise StoryError(
                f"{label} must be a list of 0-based panel indexes (in code; 1-based in a file), not {shown(indices)}"
            )
        if not indices:
            raise StoryError(
                f"{label} is empty: list at least one panel number, or leave {name} out to choose automatically"
            )
        if len(set(indices)) != len(indices):
            raise StoryError(f"{label} lists the same panel twice: list each panel once")
        for index in indices:
            _validate_identity_index(story, name, index, label)
            if index in owner:
                raise StoryError(
                    f"identity_panels: panel {index + 1} is listed for both {owner[index]} and {name}: "
                    "give each character its own identity panels"
                )
            owner[index] = name


def _validate_identity_index(story: Story, name: str, index: Any, label: str) -> None:
    count = len(story.panels)
    if type(index).__module__ == "numpy" or isinstance(index, bool) or not isinstance(index, int):
        raise StoryError(f"{label}: {shown(index)} is not a panel index: give Python ints, e.g. int(value)")
    if not 0 <= index < count:
        panels = "1 panel" if count == 1 else f"{count} panels, numbered from 1"
        raise StoryError(f"{label}: panel {index + 1} does not exist; the story has {panels}")
    if name not in story.panels[index].characters:
        raise StoryError(f"{label}: panel {index + 1} does not show {name}: pick panels tagged [{name}]")
