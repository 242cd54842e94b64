"""Continuing a run folder instead of starting over: an interrupted run's missing panels, or some
panels redrawn in place (``--panels``), keeping every other panel, the bank and their records.

A folder is continued only when its manifest describes the same drawing: the same model, resolved
settings and characters, and the same prompt and seed for every panel that is kept. Anything else
is another run, which only ``--overwrite`` may replace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoryDiffusionError
from .rundir import BANK_NAME, MANIFEST_FORMAT, MANIFEST_NAME, read_manifest
from .settings import GenerationSettings
from .story import Story

__all__ = ["Continuation", "earlier_run", "plan_continuation"]


@dataclass
class Continuation:
    """What a continued run draws, and what it keeps from the run before it."""

    panels: list[int] | None  # 0-based panels to draw; None: all of them (a window-mode story)
    keep: list[dict[str, Any]] = field(default_factory=list)  # manifest entries of panels kept as they are
    bank_file: str | None = None


def earlier_run(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of a run already in ``out_dir``, or None when there is none (or it is not ours)."""
    path = Path(out_dir) / MANIFEST_NAME
    try:
        if not path.is_file():
            return None
        manifest = read_manifest(path)
    except (OSError, StoryDiffusionError):  # an impossible path is reported by check_output_dir
        return None
    return manifest if manifest.get("format") == MANIFEST_FORMAT else None


def is_incomplete(manifest: dict[str, Any]) -> bool:
    """Runs written before the ``complete`` record were only ever written at the end: complete."""
    return manifest.get("complete", True) is False


def plan_continuation(
    out_dir: str | os.PathLike,
    manifest: dict[str, Any],
    story: Story,
    settings: GenerationSettings,
    model_name: str,
    redo: list[int] | None,
) -> Continuation:
    """Which panels to draw to finish (``redo`` None) or update (``redo``) the run in ``out_dir``.

    Raises StoryDiffusionError naming the difference when the folder holds another drawing.
    """
    difference = _difference(manifest, story, settings, model_name, set(redo or ()))
    if difference:
        state = "an unfinished run" if is_incomplete(manifest) else "a run"
        raise StoryDiffusionError(
            f"{out_dir} holds {state} with {difference}: pass --overwrite to replace it, or choose another --out"
        )
    out = Path(out_dir)
    finished = {
        entry["panel"] - 1: entry
        for entry in manifest.get("panels") or []
        if isinstance(entry, dict) and isinstance(entry.get("panel"), int) and (out / str(entry.get("file"))).is_file()
    }
    bank_file = manifest.get("identity_bank") if (out / BANK_NAME).is_file() else None
    if redo is None:
        redo = [i for i in range(len(story.panels)) if i not in finished]
        if settings.mode == "window" and redo:
            # A window reads the one before it: only a run from the start gives the same pixels.
            return Continuation(None, [], bank_file)
    keep = [entry for index, entry in sorted(finished.items()) if index not in redo]
    return Continuation(sorted(set(redo)), keep, bank_file)


def _difference(
    manifest: dict[str, Any], story: Story, settings: GenerationSettings, model_name: str, redo: set[int]
) -> str | None:
    """A short description of what differs between the folder's run and this one, or None."""
    old_story = manifest.get("story") or {}
    if (manifest.get("model") or {}).get("name") != model_name:
        return f"another model ({(manifest.get('model') or {}).get('name')!r})"
    try:
        same_settings = GenerationSettings.from_dict(manifest.get("settings") or {}).to_dict() == settings.to_dict()
    except (StoryDiffusionError, TypeError, ValueError):
        same_settings = False
    if not same_settings:
        return "other settings"
    new_story = story.to_dict()
    if old_story.get("characters") != new_story["characters"]:
        return "other characters"
    old_panels = old_story.get("panels") or []
    if len(old_panels) != len(new_story["panels"]):
        return f"{len(old_panels)} panels, not {len(new_story['panels'])}"
    for index, (old, new) in enumerate(zip(old_panels, new_story["panels"])):
        if index not in redo and (old.get("prompt"), old.get("seed")) != (new["prompt"], new["seed"]):
            return f"another panel {index + 1} (prompt or seed)"
    return None
