"""The files a command is about to write in a run folder, checked before it starts: none may replace a
file this tool has no record of writing.

Replacing a file is deleting it. A user's own ``story.json``, ``panels/panel_002.png`` or ``comic.pdf``
in a folder that ``--overwrite`` (or a continued run, ``compose``, ``animate``) writes into would be lost
without a word, so every command names its targets here first and is refused, before any model loads,
when one of them is a file (or a folder, or a link) that :func:`rundir.written_files` does not list.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import StoryDiffusionError
from .run_records import recorded_digests
from .rundir import (
    BANK_NAME,
    EXPORT_FILES,
    MANIFEST_NAME,
    MASKS_DIR,
    PAGES_DIR,
    PAGES_INDEX,
    PANELS_DIR,
    VIDEO_DIR,
    mask_filename,
    panel_filename,
    refuse_unreadable_records,
    written_files,
)

EXPORT_NAMES = dict(zip(("pdf", "cbz", "zip"), EXPORT_FILES))


def story_targets(
    story: Any,
    *,
    masks: bool = False,
    bank: bool = False,
    panels: Iterable[int] | None = None,
    inputs: Iterable[str] = (),
) -> list[str]:
    """What ``generate`` may write for ``story``: the manifest, every panel (or only ``panels``, 0-based: those
    a continued run draws, never the ones it keeps), on request their character masks and the identity bank,
    and the copies of the story's pictures (``inputs``: their names, ``run_inputs``)."""
    drawn = set(range(len(story.panels)) if panels is None else panels)
    names = [MANIFEST_NAME] + [f"{PANELS_DIR}/{panel_filename(i)}" for i in sorted(drawn)]
    if masks:
        names += [
            f"{MASKS_DIR}/{mask_filename(i, number)}"
            for i, panel in enumerate(story.panels)
            if i in drawn
            for number in range(len(panel.characters))
        ]
    return names + list(inputs) + ([BANK_NAME] if bank else [])


def compose_targets(exports: Iterable[str], pages: int) -> list[str]:
    """What ``compose`` may write: ``pages.json``, the exports asked for, and ``pages`` pages (before the panels
    are drawn, at most one page per panel and a title page)."""
    from .layout.export import page_filenames

    names = [f"{PAGES_DIR}/{PAGES_INDEX}"] + [EXPORT_NAMES[kind] for kind in exports if kind in EXPORT_NAMES]
    return names + [f"{PAGES_DIR}/{name}" for name in page_filenames(pages)]


def foreign_targets(run_dir: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Those of ``names`` (relative to ``run_dir``) where something is that this tool did not write."""
    run = Path(run_dir)
    paths = [run / name for name in dict.fromkeys(names)]
    present = [path for path in paths if path.is_symlink() or path.exists()]
    if not present:
        return []
    ours = set(written_files(run, among=present))
    return [path for path in present if path not in ours]


def blocked_folders(run_dir: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """The folders ``names`` go in (``panels``, ``pages``, ``video``, ...) where a link or a file is instead:
    through a link this tool would write outside the run folder; over a file it could not write at all."""
    run = Path(run_dir)
    folders = {run.joinpath(*Path(name).parts[:depth]) for name in names for depth in range(1, len(Path(name).parts))}
    return sorted(folder for folder in folders if folder.is_symlink() or (folder.exists() and not folder.is_dir()))


def refuse_foreign_targets(run_dir: str | os.PathLike, names: Iterable[str], fix: str = "choose another --out") -> None:
    """Raise, naming the first one, when a file this run would write would replace one that is not ours, or
    would go through a link or over a file where this tool needs a folder."""
    names = list(names)
    blocked = blocked_folders(run_dir, names)
    if blocked:
        kind = "a link" if blocked[0].is_symlink() else "a file"
        raise StoryDiffusionError(
            f"{blocked[0]} is {kind} where this tool writes a folder of its own: move it out of the way, or {fix}"
        )
    foreign = foreign_targets(run_dir, names)
    if foreign:
        records = [
            name for name in names if name in (MANIFEST_NAME, f"{PAGES_DIR}/{PAGES_INDEX}") or _is_clip_record(name)
        ]
        refuse_unreadable_records(run_dir, records, fix)  # a damaged record makes its files look foreign: say why
        path = foreign[0]
        kind = "a link" if path.is_symlink() else "a folder" if path.is_dir() else "a file"
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        if kind == "a file" and path.relative_to(Path(run_dir)).as_posix() in recorded_digests(run_dir):
            raise StoryDiffusionError(
                f"{path} has changed since this tool wrote it (your own edit?){more}, and this run would replace "
                f"it: move it out of the folder to keep it, or {fix}"
            )
        raise StoryDiffusionError(
            f"{path} is {kind} this tool has no record of writing{more}, and this run may write a file of that "
            f"name: move it out of the folder, or {fix}"
        )


def _is_clip_record(name: str) -> bool:
    """``video/01-02.json``: the record of a clip, naming its MP4 and GIF."""
    return name.startswith(f"{VIDEO_DIR}/") and name.endswith(".json")
