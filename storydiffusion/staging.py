"""``--overwrite`` without losing the old run: the new run is drawn in a hidden folder inside the output
folder (itself a valid, resumable run folder) and replaces the old run only once it is finished.

Until then the old run stays byte-identical and readable (compose and animate still work on it); a
failed or interrupted new run is continued by the same command, as an interrupted run is in place.
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import interrupts_deferred
from .errors import StoryDiffusionError
from .resume import Continuation, earlier_run, plan_continuation
from .rundir import (
    MANIFEST_NAME,
    METRICS_NAME,
    PAGES_DIR,
    PAGES_INDEX,
    PANELS_DIR,
    STAGING_DIR,
    VIDEO_DIR,
    check_output_dir,
    prepare_output_dir,
    remove_written_files,
    written_files,
)
from .settings import GenerationSettings
from .story import Story

__all__ = ["discard_staged_run", "needs_staging", "staging_dir", "start_staged_run", "swap_in_staged_run"]


def staging_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / STAGING_DIR


def needs_staging(out_dir: str | os.PathLike) -> bool:
    """Whether an ``--overwrite`` run has something to lose in ``out_dir``: files of an earlier run, or a
    staged run not yet swapped in. Otherwise it writes straight into the folder."""
    out = Path(out_dir)
    records = [
        out / MANIFEST_NAME,
        out / PAGES_DIR / PAGES_INDEX,
        out / METRICS_NAME,
        *(out / VIDEO_DIR).glob("*.json"),
    ]
    return staging_dir(out_dir).is_dir() or bool(written_files(out_dir, among=records))  # a record: a run is there


def start_staged_run(
    out_dir: str | os.PathLike,
    story: Story,
    settings: GenerationSettings,
    model_name: str,
    panels: list[int] | None,
    face_model: str | None = None,
) -> tuple[Path, Continuation | None]:
    """The staging folder and, when it holds an unfinished run of this very drawing, how to continue it.

    Any other staged run (another story, settings or model, or one of ``--panels``) is discarded: the
    staging folder is this tool's alone, and only ever holds a run that has not replaced anything yet.
    A staging folder holding a file this tool has no record of is refused, never mixed with nor deleted.
    """
    check_output_dir(out_dir, overwrite=True)
    staging = staging_dir(out_dir)
    staged = earlier_run(staging) if panels is None else None
    if staged is not None:
        try:
            return staging, plan_continuation(staging, staged, story, settings, model_name, None, face_model)
        except StoryDiffusionError:
            pass  # another drawing: start again below
    discard_staged_run(out_dir)
    return prepare_output_dir(staging, overwrite=True), None  # what is left there is the user's empty folders


def swap_in_staged_run(out_dir: str | os.PathLike, keep: tuple[Path, ...] = ()) -> Path:
    """Replace the old run by the finished staged one and return the new manifest's path.

    Exactly the old run's files go (``keep``, e.g. a bank this run read, excepted; the user's files
    stay), the staged files move in with the manifest last, and the staging folder goes. Stopped half-
    way, the staged manifest is still there and the same command finishes the swap.
    """
    out, staging = Path(out_dir), staging_dir(out_dir)
    manifest = staging / MANIFEST_NAME
    written = written_files(staging)
    staged = [path for path in written if not path.name.startswith(".")]  # no temporaries
    with interrupts_deferred():  # a stop waits for the swap, so the folder never holds half of each run
        for path in written:  # an interrupted write's temporaries, claimed only while the staged record is there
            if path.name.startswith("."):
                path.unlink(missing_ok=True)
        remove_written_files(out, keep)
        for path in sorted(staged, key=lambda path: path == manifest):
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        discard_staged_run(out)
    return out / MANIFEST_NAME


def discard_staged_run(out_dir: str | os.PathLike) -> None:
    """Remove a staged run: the files its records name and its temporaries, then the folders that leaves
    empty. A file of the user's under the staging folder stays, and so does every folder holding one."""
    staging = staging_dir(out_dir)
    if not staging.is_dir() or staging.is_symlink():
        return
    remove_written_files(staging)
    for folder in (staging / PANELS_DIR, staging):
        try:
            folder.rmdir()  # only ever succeeds on an empty folder
        except OSError:
            pass
