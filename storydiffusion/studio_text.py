"""What the studio page reads and writes: widget values to settings, and every line of text it shows.

Kept out of ``app.py`` so that the page's wording and the reading of its widgets are tested like the
rest of the library, and the web app stays wiring only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from .errors import SettingsError, StoryDiffusionError, StoryError, TooManyPanels, shown
from .invisible import TEXT_REORDERING
from .layout.template_files import list_templates
from .model_pool import shown_name
from .results import PanelImage
from .settings import (
    CONSISTENCY_KINDS,
    REFERENCE_ADAPTERS,
    SETTING_RANGES,
    GenerationSettings,
    SettingRange,
    control_character,
    control_character_message,
)
from .story import Story, parse_characters, story_from_text, story_to_text
from .structured import MAX_NUMBER_CHARS, plain_digits
from .styles import load_styles

EXAMPLE_PANEL_LINE = "[Mia] flies a kite # A windy day. @Mia: Look!"
# The numeric settings the studio shows, in the order of its widgets (each reads its range from SETTING_RANGES).
UI_SETTINGS = ("steps", "guidance", "width", "height", "seed", "sampling_rate", "id_images", "window")
CONSISTENCY_LABEL = "Share between panels"
PHOTO_ADAPTER_LABEL = "Photos steer by"
NO_FACE_MODEL_MESSAGE = (
    f"{PHOTO_ADAPTER_LABEL}: the face (FaceID) needs a face model, and this studio has none: choose the whole photo"
)
SETTING_LABELS = {
    "steps": "Steps",
    "guidance": "Guidance",
    "width": "Width",
    "height": "Height",
    "seed": "Seed",
    "sampling_rate": "Sampling rate",
    "id_images": "Identity images",
    "window": "Window (panels per batch)",
    "frames": "Frames",
    "fps": "Frames per second",
    "reference_scale": "Photo strength",
    "control_scale": "Control strength",
}

SYNTAX_HELP = """
**Characters**: one per line, `[Name] description`, e.g. `[Bob] a tall man with red hair and a green jacket`.

**Story**: one panel per line. `[Name]` tags (any number) are replaced by the description; `[NC]` marks a
panel without characters; the caption follows `#`; speech lines `@Name: text` follow the caption.

`[Bob] opens the door, [Alice] waits outside # Late again. @Bob: Sorry! @Alice: Come in.`

**Places**: in a panel of several characters, `[Bob@left]` puts Bob in the left half (also `right`,
`center`, `top`, `bottom`, or a box `[Bob@0.5,0,1,1]` of fractions from the top left); his part of the
picture then reads only his own identity. `[Bob@left: holding an umbrella]` adds text for his part alone.

**Photos and poses**: under *Reference photos and poses*, a photo named after its character (`Bob.png`)
gives that character its look; an image named after its panel and kind (`3-openpose.png`, `5-canny.jpg`,
`7-depth.png`) gives that panel its pose or composition.
"""


MAX_BOX_CHARS = 200_000  # one text box: far above any story, far below what would hurt a shared server
_EMPTY_MEANS_ZERO = ("seed",)  # a box the user may clear; sliders always hold a value
_TYPED_AS_TEXT = ("seed",)  # a text box of digits (a browser's numbers lose integers above 2**53)


def setting_value(name: str, value: Any, label: str | None = None) -> int | float:
    """A widget's number as the setting wants it, checked against SETTING_RANGES under the widget's label.

    Values also arrive from API clients, so anything that is not a number is refused by name here,
    before Gradio or the settings see it (``label`` names a second widget of the same setting). Integers are rounded (sliders send floats), except whole
    ints, which pass as they are (big seeds must not pass through a float).
    """
    allowed, label = SETTING_RANGES[name], label or SETTING_LABELS[name]
    if (value is None or value == "") and name in _EMPTY_MEANS_ZERO:
        return 0
    if name in _TYPED_AS_TEXT and isinstance(value, str):  # digits, so a big seed stays exact
        value = _typed_number(label, value.strip(), allowed)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{label}: {shown(value)} is not a number (allowed {allowed.describe()})")
    if allowed.integer and isinstance(value, float) and value.is_integer():
        value = int(value)  # a slider's 3.0; 1.5 stays a float and is refused as not whole below
    allowed.check(label, value)
    return value


def _typed_number(label: str, typed: str, allowed: SettingRange) -> int:
    """A number typed in a text box, as an exact integer; a negative or fractional one goes on to the range
    check, which says what is allowed, and only what is no number at all is called so."""
    sign, digits = (typed[0], typed[1:]) if typed.startswith(("-", "+")) else ("", typed)
    if plain_digits(digits) and len(digits) <= MAX_NUMBER_CHARS:
        return int(sign + digits)
    whole, dot, fraction = digits.partition(".")
    parts_are_digits = all(part == "" or plain_digits(part) for part in (whole, fraction))
    if dot and (whole or fraction) and parts_are_digits and len(digits) <= MAX_NUMBER_CHARS:
        raise SettingsError(f"{label}: {shown(typed)} is not a whole number: allowed {allowed.describe()}")
    raise SettingsError(f"{label}: {shown(typed)} is not a number: type digits 0-9 (allowed {allowed.describe()})")


def text_value(label: str, value: Any) -> str:
    """A text box's content: text of a sensible length (None, as an API client may send, is empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StoryDiffusionError(f"{label}: expected text, got {type(value).__name__} {shown(value)}")
    if len(value) > MAX_BOX_CHARS:
        raise StoryDiffusionError(f"{label}: {len(value)} characters is too long (at most {MAX_BOX_CHARS})")
    if (found := control_character(value)) is not None and unicodedata.category(found) == "Cs":
        raise StoryDiffusionError(control_character_message(label, found))  # the box's own check names the others
    return value


def checkbox_value(label: str, value: Any) -> bool:
    """A checkbox: true or false (None, as an API client may send, is unticked); nothing else."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise StoryDiffusionError(f"{label}: expected true or false, got {type(value).__name__} {shown(value)}")
    return value


def choice_value(label: str, value: Any, choices: Sequence[str]) -> str:
    """A dropdown's value, which must be one of its choices (API clients can send anything)."""
    if not isinstance(value, str) or value not in choices:
        quoted = any("," in choice for choice in choices)  # titles such as "Nora, Years Later": each in quotes
        listed = ", ".join(repr(choice) if quoted else choice for choice in choices)
        raise StoryDiffusionError(f"{label}: {shown(value)} is not one of {listed}")
    return value


def uploaded_path(label: str, value: Any, uploads: Collection[str]) -> str:
    """The server-side path of an upload as Gradio hands it over unprocessed, or a message naming the field.

    Only Gradio's own upload record is taken (a ``gradio.FileData`` with a path), and only for a file
    that came in through the server's upload route (``uploads``: Gradio's record of them), never one
    the server wrote, such as another session's download. Upload names carry a hash of the content
    salted with the server's secret, so a session can name only what it uploaded or was given. The
    message never says whether a path exists.
    """
    if value is None or value == "":
        raise StoryDiffusionError(f"{label}: choose a file to upload")
    record = value if isinstance(value, dict) else {}
    path, meta = record.get("path"), record.get("meta")
    if not (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData") or not isinstance(path, str):
        shape = f"a record with {sorted(map(str, record))[:4]}" if record else f"{type(value).__name__} {shown(value)}"
        raise StoryDiffusionError(
            f"{label}: expected an uploaded file, got {shape}; upload it with the page, "
            "or send gradio_client.handle_file(path) from a script"
        )
    resolved = Path(path).resolve()
    if resolved not in {Path(upload).resolve() for upload in uploads} or not resolved.is_file():
        raise StoryDiffusionError(f"{label}: that file was not uploaded to this studio; upload it again")
    return str(resolved)


def restored_story(saved: Any, *current: Any) -> tuple:
    """The title, characters and story boxes from what the browser kept, or unchanged when it kept none
    or when ``current`` (the boxes as the page load found them) already holds characters or a story:
    a load that lands after the user started typing must not put back an older text."""
    import gradio as gr

    kept = saved if isinstance(saved, list) and len(saved) == 3 and all(isinstance(v, str) for v in saved) else []
    typed = any(isinstance(value, str) and value.strip() for value in current[1:3])
    if typed or not any(kept[1:]):  # typing under way, or nothing kept: leave the boxes as they are
        return gr.update(), gr.update(), gr.update()
    return tuple(value[:MAX_BOX_CHARS] for value in kept)


def layout_value(value: Any) -> str:
    """The Layout dropdown's value: one of the page templates."""
    return choice_value("Layout", value, list_templates())


DIRECTION_LABEL = "Pages read"
AS_THE_LAYOUT = "layout"
DIRECTION_CHOICES = [("As the layout", AS_THE_LAYOUT), ("Left to right", "ltr"), ("Right to left", "rtl")]


def direction_value(value: Any) -> str | None:
    """The Pages read radio's value: "ltr" or "rtl", or None for the layout's own direction."""
    chosen = choice_value(DIRECTION_LABEL, value, [choice for _, choice in DIRECTION_CHOICES])
    return None if chosen == AS_THE_LAYOUT else chosen


def direction_choice(direction: str | None) -> str:
    """The radio's value for a session's direction (None: as the layout reads)."""
    return direction or AS_THE_LAYOUT


def settings_from_ui(
    style: str | None,
    negative_prompt: str | None,
    values: Sequence[Any],
    consistency: Any = "uniform",
    reference_adapter: Any = "image",
) -> GenerationSettings:
    """GenerationSettings from the Advanced widgets, ``values`` in the order of UI_SETTINGS.

    Every value is checked under its widget's label; an empty seed means 0.
    """
    numbers = {name: setting_value(name, value) for name, value in zip(UI_SETTINGS, values, strict=True)}
    style = None if style is None else choice_value("Style", style, list(load_styles()[0]))
    shared = choice_value(CONSISTENCY_LABEL, consistency, list(CONSISTENCY_KINDS))
    adapter = choice_value(PHOTO_ADAPTER_LABEL, reference_adapter, list(REFERENCE_ADAPTERS))
    negative = text_value("Negative prompt", negative_prompt)
    settings = GenerationSettings(style=style, negative_prompt=negative, consistency=shared, reference_adapter=adapter)
    return settings.merged(**numbers)


def story_from_ui(
    title: str | None, characters: str | None, panels: str | None, settings: GenerationSettings | None = None
) -> Story:
    """The validated story in the Title, Characters and Story boxes (an empty title gets the default one).

    A mistake is told by the box it is in (``Story, line 2: ...``), in the page's words.
    """
    characters, panels, title = (
        text_value("Characters", characters),
        text_value("Story", panels),
        text_value("Title", title),
    )
    if not panels.strip():
        raise StoryError(f"Story: write one panel per line, e.g. {EXAMPLE_PANEL_LINE}")
    try:
        parse_characters(characters)
    except StoryError as error:
        raise StoryError(f"Characters, {error}") from None
    try:
        return story_from_text(characters, panels, title=title, settings=settings)
    except TooManyPanels as error:
        raise StoryError(
            f"Story: {error.count:,} panels is more than the {error.limit:,} a story may have here: split it into "
            "several stories"
        ) from None
    except StoryError as error:
        raise StoryError(f"Story, {error}") from None


def no_such_panel(number: int, count: int) -> str:
    """The editor's one message for a panel number past the story's end, whichever action met it."""
    return f"Panel: there is no panel {number}; the story has {count} panel{'s' if count != 1 else ''} (1 is the first)"


def panel_number_from_ui(value: Any, field: str = "Panel") -> int:
    """A 1-based panel number from a number box; an empty box or a non-number is a message, not a TypeError."""
    if value is None or value == "":
        raise StoryDiffusionError(f"{field}: enter a panel number (1 is the first panel)")
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise StoryDiffusionError(f"{field}: {shown(value)} is not a panel number (1 is the first panel)")
    most = int(SETTING_RANGES["max_panels"].high)  # the number is echoed back: the page's JSON must hold it
    if value < 1:
        raise StoryDiffusionError(f"{field}: {shown(value)} is not a panel number (1 is the first panel)")
    if value > most:
        raise StoryDiffusionError(f"{field}: {shown(value)} is not a panel number: a story has at most {most:,} panels")
    return int(value)


def panel_caption(index: int) -> str:
    """The gallery caption of the panel with 0-based ``index``; ``selected_panel_number`` reads it back."""
    return f"Panel {index + 1}"


def selected_panel_number(position: int, value: Any) -> int:
    """The 1-based panel number of a gallery click: from its caption, else from its position in the gallery.

    The caption wins because a gallery of a cancelled run may skip panels, so position 2 is not always panel 3.
    """
    caption = value.get("caption") if isinstance(value, dict) else None
    last_word = caption.split()[-1] if caption and caption.split() else ""
    return int(last_word) if plain_digits(last_word) and len(last_word) <= 6 else position + 1


def quoted(text: str, limit: int = 60) -> str:
    """A user's text inside a message: control and direction characters dropped, cut short, in quotes."""
    visible = "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf", "Co", "Cs"))
    return f"'{visible[:limit]}…'" if len(visible) > limit else f"'{visible}'"


# What Markdown or HTML would read as markup in a status line: each written as its character reference, so a
# name like "<h1>Mia</h1>" or "**Mia**" is shown as typed, never as a heading or in bold. The invisible
# controls that reorder text (bidi embeddings, overrides, isolates) are shown by their code, such as \u202e,
# so a file named "photo\u202egnp.exe" cannot pass on the line as another name.
_MARKUP = str.maketrans(
    {char: f"&#{ord(char)};" for char in "\\`*_[]<>&|~$#"}
    | {char: f"&#92;u{ord(char):04x}" for char in TEXT_REORDERING}
)


def plain_markdown(text: str) -> str:
    """``text`` (a message holding what a user typed) for a Markdown status line: shown exactly as written."""
    return str(text).translate(_MARKUP)


def check_face_steering(pipeline: Any, settings: GenerationSettings, has_photos: bool) -> None:
    """Photos that steer by their face need a face model (or the tiny stand-in): told in the page's words, where
    the library would name the command line's --face-model."""
    if has_photos and settings.reference_adapter == "face" and not pipeline.can_steer_by_face():
        raise StoryError(NO_FACE_MODEL_MESSAGE)


def check_model_limits(pipeline: Any, story: Story, settings: GenerationSettings) -> None:
    """The model's own limits (a width its VAE and UNet divide exactly), checked before a run clears the last
    story from the page, and told by the widget's label (the library says ``width``, the page ``Width``)."""
    try:
        pipeline.resolve_settings(story, settings)
    except SettingsError as error:
        name, _, rest = str(error).partition(" ")
        raise SettingsError(f"{SETTING_LABELS[name]} {rest}" if name in SETTING_LABELS else str(error)) from None


def story_text_of(story: Story | None) -> str:
    """The Story box's text for ``story`` ('' before any story is drawn)."""
    return story_to_text(story)[1] if story is not None else ""


def story_box_after_redraw(box: Any, before: str, story: Story, index: int) -> tuple[str, str | None]:
    """The Story box after panel ``index`` was redrawn, and a note when it was left as typed.

    ``before`` is the story's text before the redraw. The panel's line is written back only where the box
    still holds that line as drawn, one line per panel: what the user typed since (an edit of that line, a
    new story) is never replaced; the note then says what the drawn story's line is now.
    """
    text = str(box or "")
    lines = text.split("\n")
    filled = [number for number, line in enumerate(lines) if line.strip()]
    drawn, redrawn = before.split("\n"), story_to_text(story)[1].split("\n")
    # Lines added after the drawn ones (the next panels, not drawn yet) are no edit of the panel's line.
    if len(filled) >= len(redrawn) == len(drawn):
        earlier = all(lines[filled[n]].strip() == drawn[n].strip() for n in range(index))
        typed = lines[filled[index]].strip()
        if earlier and typed in (drawn[index].strip(), redrawn[index].strip()):
            lines[filled[index]] = redrawn[index]
            return "\n".join(lines), None
    return text, (
        f"The Story box is kept as you typed it, since it no longer matches the drawn story; "
        f"panel {index + 1}'s line is now: {redrawn[index]}"
    )


def shown_if_filled(*files: str | None) -> tuple[dict, ...] | dict:
    """Each file box shown only when it holds a file: no empty boxes before there is anything to download.

    A follow-up of the events that fill them, so that API clients still get plain file paths.
    """
    import gradio as gr

    updates = tuple(gr.update(visible=bool(file)) for file in files)
    return updates if len(updates) > 1 else updates[0]  # Gradio reads one output's value as is


def panel_for_editing(story: Story, panels: Sequence[PanelImage], number: int) -> tuple[int, str, str, str | None]:
    """The editor's fields for 1-based panel ``number``: its number, prompt (with ``[Name]`` tags, as in the
    Story box), caption and the seed it was drawn with (None for a panel not drawn yet)."""
    if not 1 <= number <= len(story.panels):
        raise StoryDiffusionError(no_such_panel(number, len(story.panels)))
    panel = story.panels[number - 1]
    seeds = {drawn.index: drawn.seed for drawn in panels}
    seed = seeds.get(number - 1)
    return number, panel.prompt, panel.caption or "", None if seed is None else str(seed)


def redraw_settings_note(settings: GenerationSettings) -> str:
    """Which settings a redraw uses: the story's own, so the characters stay who they were."""
    rate = settings.sampling_rate if isinstance(settings.sampling_rate, (int, float)) else "per layer"
    return (
        f"Redrawn with the settings the story was drawn with, so its characters stay the same: "
        f"{settings.steps} steps, guidance {settings.guidance:g}, {settings.width}×{settings.height}, "
        f"sampling rate {rate}, style {settings.style or 'default'}. To change them, press Generate."
    )


def reading_direction(layout: str, direction: str | None = None) -> str:
    """How to read pages of ``layout`` (read ``direction`` when one is chosen): manga runs right to left, as
    a Hebrew or Arabic comic does, and the page says so."""
    from .layout.template_files import load_template

    if layout == "none":
        return "One page per panel, in the story's order."
    if (direction or load_template(layout).direction) == "rtl":
        return "**Read right to left** ←: each page starts at its top right corner (manga order)."
    return "Read left to right →, top to bottom."


def loaded_settings(settings: GenerationSettings, model: str, offered: Sequence[str]) -> tuple[tuple, str]:
    """The widget values a loaded project restores (style, model, negative prompt, UI_SETTINGS, consistency),
    and a note when its model is not offered here (the page's choice is kept, so redraws may differ)."""
    from gradio import skip

    numbers = []
    for name in UI_SETTINGS:
        value = getattr(settings, name)
        if value is None or isinstance(value, dict):  # a per-layer rate: no slider shows it
            value = skip()
        numbers.append(str(value) if name in _TYPED_AS_TEXT and isinstance(value, int) else value)
    style = settings.style or load_styles()[1]
    note = (
        ""
        if model in offered
        else f" It was made with another model ({quoted(shown_name(model))}), which this studio does not offer."
    )
    shown_model = model if model in offered else skip()
    return (style, shown_model, settings.negative_prompt or "", *numbers, settings.consistency), note
