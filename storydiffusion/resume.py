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

from .errors import StoryDiffusionError, counted, shown
from .run_inputs import drawing_story, input_digests
from .run_manifest import manifest_bank, manifest_model_name, manifest_panels, read_manifest, story_from_manifest
from .run_records import read_record, recorded_exports
from .rundir import BANK_NAME, MANIFEST_FORMAT, MANIFEST_NAME, PAGES_DIR, PAGES_FORMAT, PAGES_INDEX, drawing_panels
from .settings import GenerationSettings, consistent_start
from .story import Story

__all__ = [
    "Continuation",
    "composition_left",
    "earlier_run",
    "missing_panels",
    "plan_continuation",
    "refuse_finished",
    "to_continue",
    "unfinished_panels",
]


@dataclass
class Continuation:
    """What a continued run draws, and what it keeps from the run before it."""

    panels: list[int] | None  # 0-based panels to draw; None: all of them (a window-mode story)
    keep: list[dict[str, Any]] = field(default_factory=list)  # manifest entries of panels kept as they are
    bank_file: str | None = None
    drawing: list[int] = field(default_factory=list)  # panels the earlier run was drawing, not recorded yet
    bank_digest: str | None = None  # the kept bank's SHA-256 as the earlier run recorded it

    def writer_drawing(self, story_panels: int) -> list[int]:
        """The panels the continuing run's writer lists as being drawn: its own, and the earlier run's
        unrecorded ones (their files may be on disk; they stay this tool's until recorded or redrawn)."""
        own = range(story_panels) if self.panels is None else self.panels
        return sorted(set(own) | set(self.drawing))


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


def missing_panels(manifest: dict[str, Any], out_dir: str | os.PathLike) -> list[int]:
    """The 1-based numbers of the panels ``manifest`` records whose file is no longer in ``out_dir`` (deleted
    by hand): the same command draws them again. Empty for a record that cannot be read (refused elsewhere)."""
    try:
        recorded = manifest_panels(manifest)
    except StoryDiffusionError:
        return []
    out = Path(out_dir)
    return [index + 1 for index, entry in sorted(recorded.items()) if not (out / entry["file"]).is_file()]


def unfinished_panels(manifest: dict[str, Any], out_dir: str | os.PathLike, count: int) -> list[int]:
    """The panels (0-based) of a ``count``-panel story that the run in ``out_dir`` has not finished: not
    recorded, or recorded without their file."""
    try:
        recorded = manifest_panels(manifest)
    except StoryDiffusionError:
        return list(range(count))
    out = Path(out_dir)
    return [index for index in range(count) if index not in recorded or not (out / recorded[index]["file"]).is_file()]


def composition_left(
    manifest: dict[str, Any],
    out_dir: str | os.PathLike,
    story: Story,
    exports: list[str],
    settings: GenerationSettings,
    model: str | None,
) -> bool:
    """Whether the finished run in ``out_dir`` is this command's (the same characters and drawings, every
    setting it gives and the model it names as recorded) and a command that composes it stopped before its
    pages (or one of ``exports``) were all written: the same command then only composes. Settings left to
    the model's defaults are taken as the run's: they are resolved only once the model loads."""
    try:
        old = _drawn(story_from_manifest(manifest), manifest)
        recorded_model = manifest_model_name(manifest)
    except StoryDiffusionError:
        return False
    recorded = manifest.get("settings") if isinstance(manifest.get("settings"), dict) else {}
    given = {key: value for key, value in settings.to_dict().items() if value is not None}
    steps = given.get("steps", recorded.get("steps"))
    if isinstance(steps, int) and "first_consistent_step" in given:  # as the run resolved and recorded it
        given["first_consistent_step"] = consistent_start(given["first_consistent_step"], steps)
    if any(recorded.get(key) != value for key, value in given.items()) or model not in (None, recorded_model):
        return False
    if _other_drawing(old, _drawn(story), set()) is not None:
        return False
    out = Path(out_dir)
    pages = read_record(out / PAGES_DIR / PAGES_INDEX)
    if pages is None or pages.get("format") != PAGES_FORMAT:
        return True
    recorded = recorded_exports(out)
    return "writing" in pages or any(name not in recorded or not (out / name).is_file() for name in exports)


def to_continue(manifest: dict[str, Any] | None, out_dir: str | os.PathLike, redo: list[int] | None) -> bool:
    """Whether the run in ``out_dir`` (its ``manifest``) is continued: some panels redrawn (``redo``), an
    interrupted run finished, or a finished run's deleted panels drawn again. A finished run with every panel
    in place is refused as already done (``refuse_finished``)."""
    if manifest is None:
        return False
    return redo is not None or is_incomplete(manifest) or bool(missing_panels(manifest, out_dir))


def refuse_finished(manifest: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """A finished run with every panel in place: there is nothing left to draw, so say how to draw again."""
    count = len(manifest.get("panels") or ())
    raise StoryDiffusionError(
        f"{out_dir} holds a finished run ({counted(count, 'panel')}, none missing): pass --panels with the panel numbers "
        "to redraw some in place, --overwrite to replace the run, or choose another --out"
    )


def plan_continuation(
    out_dir: str | os.PathLike,
    manifest: dict[str, Any],
    story: Story,
    settings: GenerationSettings,
    model_name: str,
    redo: list[int] | None,
    face_model: str | None = None,
) -> Continuation:
    """Which panels to draw to finish (``redo`` None) or update (``redo``) the run in ``out_dir``.

    Raises StoryDiffusionError naming the difference when the folder holds another drawing.
    """
    recorded = manifest_panels(manifest)  # a hand-edited entry is refused before anything else is read
    bank_recorded = manifest_bank(manifest)
    difference = _difference(manifest, story, settings, model_name, set(redo or ()))
    if difference is None and settings.reference_adapter == "face" and manifest.get("face_model") != face_model:
        difference = f"another face model ({shown(manifest.get('face_model'))}, not {shown(face_model)})"
    if difference:
        state = "an unfinished run" if is_incomplete(manifest) else "a run"
        raise StoryDiffusionError(
            f"{out_dir} holds {state} with {difference}: pass --overwrite to replace it, or choose another --out"
        )
    out = Path(out_dir)
    drawing = [index for index in drawing_panels(manifest) if index < len(story.panels)]
    finished = {index: entry for index, entry in recorded.items() if (out / entry["file"]).is_file()}
    bank_file = BANK_NAME if bank_recorded and (out / BANK_NAME).is_file() else None
    bank_digest = manifest.get("identity_bank_sha256") if bank_file else None
    bank_digest = bank_digest if isinstance(bank_digest, str) else None
    if redo is None:
        redo = [i for i in range(len(story.panels)) if i not in finished]
        if settings.mode == "window" and redo:
            # A window reads the one before it: only a run from the start gives the same pixels.
            return Continuation(None, [], bank_file, drawing, bank_digest)
    keep = [entry for index, entry in sorted(finished.items()) if index not in redo]
    return Continuation(sorted(set(redo)), keep, bank_file, drawing, bank_digest)


def _difference(
    manifest: dict[str, Any], story: Story, settings: GenerationSettings, model_name: str, redo: set[int]
) -> str | None:
    """A short description of what differs between the folder's run and this one, or None."""
    try:
        recorded_model = manifest_model_name(manifest)
    except StoryDiffusionError as error:
        return f"a story.json that is not valid ({error})"
    if recorded_model != model_name:
        return f"another model ({shown(recorded_model)})"
    try:
        old = story_from_manifest(manifest)  # validated, and in the same form as the new story
    except StoryDiffusionError:
        return "a story.json that is not valid"
    before, now = old.settings.to_dict(), settings.to_dict()
    if before != now:
        changed = [key for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
        named = ", ".join(f"{key} {shown(before.get(key))} there, {shown(now.get(key))} now" for key in changed[:3])
        return f"other settings ({named}{', ...' if len(changed) > 3 else ''})"
    return _other_drawing(_drawn(old, manifest), _drawn(story), redo)


def _drawn(story: Story, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """A story's ``to_dict`` form with its pictures given by their bytes' digests (those a ``manifest``
    recorded, else the files'): a photo the run copied into its folder is the photo the story names."""
    return drawing_story(story, input_digests(story, manifest))


def _other_drawing(old_story: dict[str, Any], new_story: dict[str, Any], redo: set[int]) -> str | None:
    """What differs between two stories' drawings (``to_dict`` forms), panels in ``redo`` aside, or None."""
    characters = _other_characters(old_story["characters"], new_story["characters"])
    if characters is not None:
        return characters
    if len(old_story["panels"]) != len(new_story["panels"]):
        return f"{len(old_story['panels'])} panels, not {len(new_story['panels'])}"
    for index, (before, now) in enumerate(zip(old_story["panels"], new_story["panels"])):
        if index not in redo and _drawing(before) != _drawing(now):
            keys = [
                key for key in dict.fromkeys([*_drawing(before), *_drawing(now)]) if before.get(key) != now.get(key)
            ]
            shown_keys = [
                "its control image" if key == "control" and _same_but_image(before, now) else key for key in keys
            ]
            return f"another panel {index + 1} ({', '.join(shown_keys)})"
    return None


def _other_characters(before: dict[str, Any], now: dict[str, Any]) -> str | None:
    """What differs between two stories' characters (``to_dict`` forms, pictures as digests), or None: the
    names, else the first character whose description, reference photo or its strength differs."""
    if list(before) != list(now):
        return f"other characters ({', '.join(map(shown, before))} there, {', '.join(map(shown, now))} now)"
    for name in before:
        old, new = (_character_fields(value) for value in (before[name], now[name]))
        if old["description"] != new["description"]:
            return f"another description of {name}"
        if old["reference"] != new["reference"]:
            if old["reference"] is None or new["reference"] is None:
                return f"{name} {'with' if new['reference'] else 'without'} a reference photo"
            return f"another reference photo of {name} (its bytes differ from those the run was drawn from)"
        if old != new:
            return f"another reference_scale for {name}"
    return None


def _character_fields(value: Any) -> dict[str, Any]:
    """A character's ``to_value`` form (its description, or a mapping with its photo) as one mapping."""
    if isinstance(value, dict):
        return {"reference": None, **value}
    return {"description": value, "reference": None}


def _same_but_image(before: dict[str, Any], now: dict[str, Any]) -> bool:
    """Both panels have a control, differing only in its image."""
    old, new = before.get("control"), now.get("control")
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return False
    return {**old, "image": None} == {**new, "image": None}


def _drawing(panel: dict[str, Any]) -> dict[str, Any]:
    """What decides a panel's pixels: everything of its entry but the lettering (caption, dialogue)."""
    return {key: value for key, value in panel.items() if key not in ("caption", "dialogue")}
