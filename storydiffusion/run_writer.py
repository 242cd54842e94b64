"""Writing a run as it happens: the ``story.json`` manifest (``build_manifest``), each panel at once and the
manifest listing it after (``RunWriter``), so that an interrupted run leaves a valid, resumable folder, and a
finished result written the same way (``save_result``). Re-exported by :mod:`storydiffusion.rundir`."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import interrupts_deferred, write_json, write_png
from .errors import StoryDiffusionError
from .run_names import (
    BANK_NAME,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MASKS_DIR,
    METRICS_FORMAT,
    METRICS_NAME,
    PANELS_DIR,
    mask_filename,
    panel_filename,
)
from .run_records import (
    DIGESTS,
    declares_digests,
    file_digest,
    read_record,
    recorded_inputs,
    unedited,
    written_files,
)

__all__ = ["RunWriter", "build_manifest", "package_versions", "save_panel", "save_result"]


def package_versions() -> dict[str, str]:
    versions = {"storydiffusion": __version__, "python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "accelerate", "safetensors", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def build_manifest(
    result,
    bank_file: str | None = None,
    *,
    complete: bool = True,
    earlier: list[dict[str, Any]] = (),
    drawing: Iterable[int] = (),
    digests: dict[str, str] | None = None,
    bank_digest: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to reproduce the run: story, resolved settings, model, seeds, versions.

    ``complete`` is False while a run is under way (and stays so if it is interrupted), and never
    True while a panel of the story is missing; ``earlier`` are panel entries of an earlier run of
    the same story that this run keeps. ``drawing`` (0-based) are the panels the run is drawing: those
    not recorded yet are listed, so a panel written just before a crash is known as this tool's.
    ``digests`` (by file name, ``panels/panel_001.png``): the SHA-256 of each panel and mask file as written,
    kept in its panel's entry, and ``bank_digest`` the identity bank's: a file since changed is the user's.
    ``inputs`` (``run_inputs.story_inputs``): the story's pictures copied into the run folder, recorded by
    those copies' names and digests; without them the story's paths are recorded as they are.
    """
    from .run_inputs import recorded_story

    spec = result.model
    drawn = [_panel_entry(panel, digests or {}) for panel in result.panels]
    redrawn = {entry["panel"] for entry in drawn}
    panels = sorted([e for e in earlier if e.get("panel") not in redrawn] + drawn, key=lambda e: e["panel"])
    recorded = {entry.get("panel") for entry in panels}
    pending = sorted({index + 1 for index in drawing} - recorded)
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "story": recorded_story(result.story, inputs or {}),
        **({"inputs": {item.name: item.digest for item in inputs.values()}} if inputs else {}),
        "settings": result.settings.to_dict(),
        "model": {"name": spec.name, "source": spec.source, "family": spec.family},
        "scheduler": result.scheduler,
        "consistent_layers": result.consistent_layers,
        "panels": panels,
        "complete": complete and len(panels) == len(result.story.panels),
        **({"face_model": face} if (face := _face_model(result)) else {}),
        **({"drawing": pending} if pending else {}),
        "identity_bank": bank_file,
        **({"identity_bank_sha256": bank_digest} if bank_file and bank_digest else {}),
        "digests": DIGESTS,  # every finished file above keeps its digest: one without is not this tool's
        "identity_bank_bytes": result.bank.nbytes() if result.bank is not None else 0,
        "warnings": list(result.warnings),
        "cancelled": result.cancelled,
        "seconds": round(result.seconds, 3),
        "versions": package_versions(),
    }


def _face_model(result) -> str | None:
    """The face model FaceID was steered with (``reference_adapter: face``), as the run's bank signs it."""
    signature = getattr(result.bank, "signature", None) or {}
    return signature.get("face_model")


def _panel_entry(panel, digests: dict[str, str]) -> dict[str, Any]:
    file = f"{PANELS_DIR}/{panel_filename(panel.index)}"
    entry = {
        "panel": panel.index + 1,
        "file": file,
        **({"sha256": digests[file]} if file in digests else {}),
        "seed": panel.seed,
        "prompt": panel.prompt,
        "negative_prompt": panel.negative_prompt,
        "characters": list(panel.characters),
        "identity_image": panel.identity,
    }
    if panel.masks:
        entry["masks"] = {name: f"{MASKS_DIR}/{filename}" for name, filename in _mask_files(panel).items()}
        masks_sha256 = {name: digests[file] for name, file in entry["masks"].items() if file in digests}
        if masks_sha256:
            entry["masks_sha256"] = masks_sha256
    return entry


def _mask_files(panel) -> dict[str, str]:
    """Each character's mask file name of a panel, numbered by the character's place in the panel."""
    return {name: mask_filename(panel.index, panel.characters.index(name)) for name in panel.masks}


class RunWriter:
    """Writes a run as it happens: each panel at once, then a manifest that lists the panels finished
    so far and says the run is not complete, so an interrupted run leaves a valid, resumable folder."""

    def __init__(
        self,
        out_dir: str | os.PathLike,
        earlier: list[dict[str, Any]] = (),
        bank_file: str | None = None,
        drawing: Iterable[int] | None = None,
        bank_digest: str | None = None,
        private: bool = False,
        masks: bool = True,
        bank: bool = True,
    ):
        """``drawing``: the panels (0-based) this run draws, listed in the manifest until each is recorded
        (None: every panel of the story). ``private``: see ``save_result``. ``masks``, ``bank``: whether it
        may write the panels' masks and the identity bank, whose names are then checked too. ``bank_digest``: the
        SHA-256 an earlier run recorded for the ``bank_file`` this run keeps."""
        self.out, self.private, self.may_write = Path(out_dir), private, {"masks": masks, "bank": bank}
        self.earlier, self.bank_file, self.bank_digest = list(earlier), bank_file, bank_digest
        self.drawing = None if drawing is None else sorted(set(drawing))
        self.result = None
        self.digests: dict[str, str] = {}  # each panel and mask file as this run wrote it (``build_manifest``)
        self.inputs: dict = {}  # the story's pictures, copied into inputs/ (``run_inputs``)

    def start(self, result) -> None:
        from .run_inputs import copy_inputs, story_inputs
        from .run_targets import refuse_foreign_targets, story_targets

        if not self.private:  # no file of the user's is ever replaced; a studio's story names no files
            self.inputs = story_inputs(result.story, result.pictures)
            names = [item.name for item in self.inputs.values()]
            targets = story_targets(result.story, panels=self.drawing, inputs=names, **self.may_write)
            refuse_foreign_targets(self.out, targets)
        self.result = result
        if self.drawing is None:
            self.drawing = list(range(len(result.story.panels)))
        metrics = read_record(self.out / METRICS_NAME)
        if metrics is not None and metrics.get("format") == METRICS_FORMAT and unedited(metrics):  # older scores
            (self.out / METRICS_NAME).unlink()
        self._drop_stale_masks()
        self._adopt_undigested()
        stale = self._stale_inputs()
        self._write(complete=False)  # the record names the inputs first: a copy is never unrecorded
        copy_inputs(self.out, self.inputs)
        for path in stale:
            path.unlink(missing_ok=True)

    def _stale_inputs(self) -> list[Path]:
        """The copies of pictures an earlier run of this folder recorded that this run's story no longer
        names (a redrawn panel's new control image): this tool's, and on no record after this run's first."""
        earlier = recorded_inputs(read_record(self.out / MANIFEST_NAME))
        names = {item.name for item in self.inputs.values()}
        return written_files(self.out, among=[self.out / name for name in earlier if name not in names])

    def _adopt_undigested(self) -> None:
        """The kept files of a run recorded before records kept digests (0.1.0), digested as they are now:
        they were this tool's by their names, and this run's record declares a digest for every file. A record
        that declares digests is not adopted from: a file it lists without one is the user's, and stays so."""
        if declares_digests(read_record(self.out / MANIFEST_NAME)):
            return
        for entry in self.earlier:
            path = self.out / str(entry.get("file"))
            if "sha256" not in entry and path.is_file():
                entry["sha256"] = file_digest(path)
            masks = entry.get("masks") if isinstance(entry.get("masks"), dict) else {}
            undigested = {name: file for name, file in masks.items() if name not in (entry.get("masks_sha256") or {})}
            found = {
                name: file_digest(self.out / file) for name, file in undigested.items() if (self.out / file).is_file()
            }
            if found:
                entry["masks_sha256"] = {**(entry.get("masks_sha256") or {}), **found}
        if self.bank_file and not self.bank_digest and (self.out / self.bank_file).is_file():
            self.bank_digest = file_digest(self.out / self.bank_file)

    def _drop_stale_masks(self) -> None:
        """The masks of the panels this run draws again, as the folder's record has them (those of finished
        panels, and of panels an earlier run was drawing): stale once their panel is redrawn, and on no record
        after this run's first, so they go now (only while they are this tool's)."""
        folder = self.out / MASKS_DIR
        masks = [
            path for index in self.drawing or () for path in folder.glob(f"{Path(panel_filename(index)).stem}_mask_*")
        ]
        for path in written_files(self.out, among=masks):
            path.unlink()

    def panel(self, panel) -> None:
        with interrupts_deferred():  # the panel and the manifest listing it, or neither
            self._remember(save_panel(panel, self.out), panel)
            self._write(complete=False)

    def record(self, panel) -> None:
        """A panel already written into this folder (``distributed``: by the process that drew it, this one
        or another): the manifest now lists it."""
        path = self.out / PANELS_DIR / panel_filename(panel.index)
        if not path.is_file():
            raise StoryDiffusionError(
                f"panel {panel.index + 1} is not in {self.out / PANELS_DIR}, so it cannot be recorded: "
                "run the same command again to draw it"
            )
        self._remember(path, panel)
        self._write(complete=False)

    def _remember(self, path: Path, panel) -> None:
        """The digests of a panel's file and of its masks' files, as they are now on disk."""
        for name in [path.relative_to(self.out).as_posix()] + [f"{MASKS_DIR}/{f}" for f in _mask_files(panel).values()]:
            if (self.out / name).is_file():
                self.digests[name] = file_digest(self.out / name)

    def finish(self, result, save_bank: bool = False) -> Path:
        """The last manifest, marked complete unless the run was cancelled; the bank too if asked."""
        self.result = result
        with interrupts_deferred():  # the bank and the record of it, or neither: a stop waits for both
            if save_bank and result.bank is not None and len(result.bank):
                result.bank.save(self.out / BANK_NAME)
                self.bank_file, self.bank_digest = BANK_NAME, file_digest(self.out / BANK_NAME)
            return self._write(complete=not result.cancelled)

    def _write(self, complete: bool) -> Path:
        manifest = self.out / MANIFEST_NAME
        record = build_manifest(
            self.result,
            self.bank_file,
            complete=complete,
            earlier=self.earlier,
            drawing=self.drawing or (),
            digests=self.digests,
            bank_digest=self.bank_digest,
            inputs=self.inputs,
        )
        write_json(manifest, record)
        return manifest


def save_panel(panel, out_dir: str | os.PathLike) -> Path:
    """The panel's picture, and its masks when it has them (before it, so the panel's record never
    names a mask that is not there)."""
    for name, filename in _mask_files(panel).items():
        write_png(panel.masks[name], Path(out_dir) / MASKS_DIR / filename)
    path = Path(out_dir) / PANELS_DIR / panel_filename(panel.index)
    write_png(panel.image, path)
    return path


def save_result(result, out_dir: str | os.PathLike, save_bank: bool = False, *, private: bool = False) -> Path:
    """Write a finished result as ``RunWriter`` writes a run: a manifest before the first panel, each panel
    then the manifest that lists it, the bank if asked, and the last manifest. No file is ever unrecorded,
    and no record ever names a missing file. A file of the user's where one of these goes is refused,
    unless the folder is ``private`` (the studio's session folder: nothing in it is anyone else's)."""
    from .run_targets import refuse_foreign_targets, story_targets

    if not private:
        _refuse_dropping_records(out_dir, result)
        targets = story_targets(result.story, masks=any(p.masks for p in result.panels), bank=save_bank)
        refuse_foreign_targets(out_dir, targets, fix="choose another folder")
    masks = any(panel.masks for panel in result.panels)
    drawing = [panel.index for panel in result.panels]
    writer = RunWriter(out_dir, drawing=drawing, private=private, masks=masks, bank=save_bank)
    writer.start(dataclasses.replace(result, panels=[]))
    for panel in result.panels:
        writer.result.panels.append(panel)
        writer.panel(panel)
    return writer.finish(result, save_bank=save_bank)


def _refuse_dropping_records(out_dir: str | os.PathLike, result) -> None:
    """A result of some panels saved over a run of more: its record would list only these, and the others (this
    tool's files) would stay on no record, kept by every later overwrite as if they were the user's."""
    earlier = read_record(Path(out_dir) / MANIFEST_NAME)
    entries = earlier.get("panels") if earlier is not None else None
    recorded = (
        {entry.get("panel") for entry in entries if isinstance(entry, dict)} if isinstance(entries, list) else set()
    )
    held = {panel.index + 1 for panel in result.panels}
    dropped = sorted(number for number in recorded if isinstance(number, int) and number not in held)
    if dropped:
        shown_numbers = ", ".join(map(str, dropped[:5])) + (", ..." if len(dropped) > 5 else "")
        raise StoryDiffusionError(
            f"{Path(out_dir).name} holds a run whose panels {shown_numbers} this result does not hold: saving it "
            "there would leave them off the folder's record; save into another folder, or redraw with the command "
            "line's --panels, which keeps the others"
        )
