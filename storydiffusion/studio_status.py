"""The studio's status lines: a story run (queued, each step, panels done, finished or stopped), a redraw,
a layout, a loaded project, a clip; the model banner; and which of the start and Stop buttons can be clicked."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import counted
from .results import Progress, StoryResult
from .story import Story
from .studio_text import plain_markdown, quoted

if TYPE_CHECKING:
    from .motion.animate import AnimationResult


def notice_markdown(notice: str) -> str:
    """The model banner: its lead (``Offline demo:``) in bold, the rest plain, so it reads as one line."""
    lead, colon, rest = notice.partition(": ")
    return f"**{lead}:** {rest}" if colon else notice


STARTING_MESSAGE = "Starting…"
STOPPING_MESSAGE = "Stopping after the current step…"
NOTHING_RUNNING_MESSAGE = "Nothing is running."


def queued_message(story: Story) -> str:
    return f"Queued: {counted(len(story.panels), 'panel')}, {counted(len(story.characters), 'character')}."


def step_message(progress: Progress) -> str:
    """``Panels 5-8: step 3 of 30 (4 of 12 done)`` (Gradio adds the whole run's percentage after it). The
    progress bar covers the status line while it runs, so the panels done are said in it."""
    drawing = progress.drawing()
    done = f" ({progress.panels_done} of {progress.panels_total} done)" if progress.panels_done else ""
    return f"{drawing[0].upper()}{drawing[1:]}: step {progress.step} of {progress.steps}{done}"


def panels_done_message(done: int, total: int) -> str:
    return f"{done} of {counted(total, 'panel')} done"


def with_warnings(message: str, warnings: Iterable[str]) -> str:
    """``message``, then each warning (the run's, the lettering's) once, as a list of sentences under it."""
    listed = list(dict.fromkeys(plain_markdown(warning[:1].upper() + warning[1:]) for warning in warnings))
    return message + ("\n\n" + "\n".join(f"- {warning}" for warning in listed) if listed else "")


def finished_message(
    result: StoryResult,
    total: int,
    lettering: Iterable[str] = (),
    kept_last: bool = False,
    typeset_seconds: float | None = None,
) -> str:
    """``Done: 3 of 3 panels in 5.2 s.`` or ``Stopped after 1 of 3 panels …``, then the run's warnings and the
    pages' (``lettering``: text a font could not draw, or cut short) as a list. ``kept_last``: a run stopped
    before its first panel left the last story's panels, which the page shows again. ``typeset_seconds``: how
    long the pages took, said too (a long story's pages and PDF can take longer than its drawing)."""
    done, seconds = len(result.panels), result.seconds
    if result.cancelled:
        kept = "; the finished panels are kept." if done else ("; the last story is kept." if kept_last else ".")
        message = f"Stopped after {done} of {counted(total, 'panel')} ({seconds:.1f} s){kept}"
    else:
        message = f"Done: {done} of {counted(total, 'panel')} in {seconds:.1f} s."
    if typeset_seconds is not None and done:
        message = f"{message[:-1]}; pages typeset in {typeset_seconds:.1f} s."
    return with_warnings(message, [*result.warnings, *lettering])


START_BUTTONS = 7  # Generate, Animate, Regenerate panel, Re-typeset, the project's two, examples: Studio.run_controls


def run_buttons(running: bool, stops: int = 1) -> tuple[dict, ...]:
    """A run's ``stops`` Stop buttons, then the page's start buttons (``Studio.run_controls``): while a story, a
    panel or a clip is drawn, every start is off and that run's Stops on, since a session does one thing at a time."""
    import gradio as gr

    stop = (gr.update(interactive=running) for _ in range(stops))
    return *stop, *(gr.update(interactive=not running) for _ in range(START_BUTTONS))


def regenerated_message(number: int, note: str | None = None) -> str:
    return f"Panel {number} redrawn." + (f" {plain_markdown(note)}" if note else "")


def typeset_message(layout: str) -> str:
    if layout == "none":  # no layout: one page per panel
        return "Pages made without a layout: one page per panel."
    return f"Pages typeset with the {layout} layout."


def layout_chosen_message(layout: str, typeset: bool) -> str:
    """What the status line says after the layout picker changed."""
    if typeset:
        return typeset_message(layout)
    return f"Layout {layout}: the pages are typeset with it when the story is generated."


def direction_chosen_message(layout: str, direction: str | None, typeset: bool) -> str:
    """What the status line says after the Pages read radio changed (None: as the layout reads)."""
    if layout == "none":  # one page per panel: nothing to read in any order
        return typeset_message(layout) if typeset else "Without a layout each panel is a page of its own."
    reads = {"ltr": "left to right", "rtl": "right to left", None: f"as the {layout} layout does"}[direction]
    if typeset:
        return f"Pages typeset with the {layout} layout, read {reads}."
    return f"Pages read {reads}: they are typeset so when the story is generated."


def loaded_message(story: Story, panels: int, model_note: str = "") -> str:
    return plain_markdown(f"Loaded project {quoted(story.title)}: {counted(panels, 'panel')}.{model_note}")


ANIMATING_MESSAGE = "Making the clip: the video model loads first, then the steps are counted here."
ANIMATION_STOPPED_MESSAGE = "Stopped: no clip was made."


def animation_note(start: int, end: int, result: AnimationResult) -> str:
    """One line under the video: which panels, how many frames, how long, how the motion was made."""
    return f"Panels {start} → {end}: {len(result.frames)} frames in {result.seconds:.1f} s ({result.note})."


def animation_progress(step: int, steps: int) -> tuple[float, str]:
    """The progress bar's fraction and text after denoising step ``step`` of ``steps``."""
    return step / max(steps, 1), f"Step {step} of {steps}"


def _holds(archive_path: str, member: str) -> bool:
    import zipfile

    with zipfile.ZipFile(archive_path) as archive:
        return member in archive.namelist()


def saved_project_message(path: str | None, asked_for_bank: bool = False) -> str:
    """Said beside Download project, where the user looks: the file itself lands in the Project box among the
    downloads, which on a phone is a screen or more above the button. A bank asked for that the story does
    not hold (a project loaded without one) is said to be left out."""
    if not path:
        return ""
    from .project import BANK_NAME

    size = Path(path).stat().st_size
    line = f"Saved **{plain_markdown(Path(path).name)}** ({size / 1024:.1f} KB): download it from the *Project* box among the downloads."
    if asked_for_bank and not _holds(path, BANK_NAME):
        line += (
            " It holds no identity bank: this story has none yet (its project was loaded without one), and "
            "its panels are redrawn from the seeds it keeps."
        )
    return line
