"""The studio's status line while a story is drawn: queued, each step, panels done, finished or stopped;
the model banner; and which of Generate and Stop can be clicked."""

from __future__ import annotations

from .errors import counted
from .results import Progress, StoryResult
from .story import Story


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
    """``Panels 1, 2: step 3/30``; the identity pass draws reference portraits, not story panels."""
    shown = ", ".join(str(index + 1) for index in progress.panels) or "reference portraits"
    return f"Panels {shown}: step {progress.step}/{progress.steps}"


def panels_done_message(done: int, total: int) -> str:
    return f"{done} of {counted(total, 'panel')} done"


def finished_message(result: StoryResult, total: int) -> str:
    """``Done: 3 of 3 panels in 5.2 s.`` or ``Stopped after 1 of 3 panels …``, then the run's warnings as a list."""
    done, seconds = len(result.panels), result.seconds
    if result.cancelled:
        message = f"Stopped after {done} of {counted(total, 'panel')} ({seconds:.1f} s)" + (
            "; the finished panels are kept." if done else "."
        )
    else:
        message = f"Done: {done} of {counted(total, 'panel')} in {seconds:.1f} s."
    if result.warnings:
        message += "\n\n" + "\n".join(f"- {warning}" for warning in result.warnings)
    return message


def run_buttons(running: bool) -> tuple[dict, dict]:
    """Generate and Stop while a run goes (Generate off, Stop on) and when idle (the other way round)."""
    import gradio as gr

    return gr.update(interactive=not running), gr.update(interactive=running)
