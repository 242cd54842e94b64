"""The packaged example stories as the studio's examples show them: each with everything it fills in, and
a note on the files it steers with (the page reads only files uploaded to it)."""

from __future__ import annotations

from pathlib import Path

from .resources import data_path
from .story import Story, load_story, story_to_text
from .story.control import DEFAULT_CONTROL_SCALE
from .story.model import DEFAULT_REFERENCE_SCALE
from .studio_text import AS_THE_LAYOUT
from .styles import load_styles


def example_stories() -> dict[str, tuple[str, ...]]:
    """The packaged example stories by title, as the page shows them: everything an example needs, in
    the order of the widgets it fills (title, characters, story, style, seed, layout, how pages read, how photos steer and
    how strongly, how strongly control images do, what panels share, and a note on the status line).

    An example's layout follows its style: a manga story is typeset as manga, right to left; a story lettered in
    Arabic or Hebrew reads right to left in the classic layout. The page reads only files uploaded to it, so an example that names photos or
    control images says which to upload.
    """
    found = {}
    for path in sorted(data_path("examples").glob("*.yaml")):
        story = load_story(path)
        settings = story.settings
        style = settings.style or load_styles()[1]
        layout = "manga" if style == "manga" else "classic"
        direction = "rtl" if _reads_right_to_left(story) else AS_THE_LAYOUT
        steering = (settings.reference_adapter or "image", *example_scales(story), settings.consistency or "uniform")
        found[story.title] = (
            story.title,
            *story_to_text(story),
            style,
            str(settings.seed or 0),
            layout,
            direction,
            *steering,
            example_note(story),
        )
    return found


def _reads_right_to_left(story: Story) -> bool:
    """Whether the story is lettered in Hebrew or Arabic (its title): its pages then read right to left, as the
    manga layout's do."""
    from .layout.lettering.bidi import paragraph_direction

    return paragraph_direction(story.title) == "rtl"


def example_scales(story: Story) -> tuple[float, float]:
    """The strengths of an example's photos and control images (the page has one slider for each kind): its
    first photo's and first control image's, else the defaults."""
    photo = next((c.reference_scale for c in story.characters.values() if c.reference), DEFAULT_REFERENCE_SCALE)
    control = next((p.control.scale for p in story.panels if p.control is not None), DEFAULT_CONTROL_SCALE)
    return photo, control


def example_note(story: Story) -> str:
    """The files an example steers with, named as the page matches uploads (``Nora.png``, ``3-openpose.png``);
    empty when it names none."""
    photos = [f"{name}{Path(c.reference).suffix}" for name, c in story.characters.items() if c.reference]
    controls = [
        f"{number}-{panel.control.kind}{Path(panel.control.image).suffix}"
        for number, panel in enumerate(story.panels, start=1)
        if panel.control is not None
    ]
    wanted = [f"{', '.join(photos)} under Reference photos"] if photos else []
    wanted += [f"{', '.join(controls)} under Control images"] if controls else []
    if not wanted:
        return ""
    return (
        f"This example steers with files: upload {' and '.join(wanted)} (Reference photos and poses); "
        "without them it draws from its text alone."
    )
