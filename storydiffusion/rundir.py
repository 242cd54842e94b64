"""The output folder of a run: what lives in it, what this tool wrote there, and writing it.

A run folder holds ``story.json`` (the manifest), ``panels/``, optionally ``identity_bank.safetensors``
and ``masks/``, and what later commands add: ``pages/`` and the exports (compose), ``video/`` (animate),
``metrics.json`` (evaluate). Their names are in :mod:`storydiffusion.run_names`, what this tool wrote there
is read from its records by :mod:`storydiffusion.run_records` (both re-exported here); this module checks and
writes the folder, every file through :mod:`storydiffusion.atomic`. Reading the manifest back is
:mod:`storydiffusion.run_manifest`.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import platform
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import interrupts_deferred, write_json, write_png
from .errors import StoryDiffusionError
from .run_names import (
    BANK_NAME,
    CBZ_NAME,
    EXPORT_FILES,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MASKS_DIR,
    MAX_MANIFEST_BYTES,
    MAX_NAME_BYTES,
    MAX_PANEL_NUMBER,
    METRICS_FORMAT,
    METRICS_NAME,
    PAGES_DIR,
    PAGES_FORMAT,
    PAGES_INDEX,
    PANELS_DIR,
    PDF_NAME,
    STAGING_DIR,
    VIDEO_DIR,
    ZIP_NAME,
    mask_filename,
    panel_filename,
)
from .run_records import (
    _read_json,
    drawing_panels,
    file_digest,
    recorded_exports,
    refuse_unreadable_records,
    unrecorded_files,
    written_files,
)

# The folder's names and records are re-exported: ``rundir`` stays the one module to import.
__all__ = [
    "BANK_NAME",
    "CBZ_NAME",
    "EXPORT_FILES",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MASKS_DIR",
    "MAX_MANIFEST_BYTES",
    "MAX_NAME_BYTES",
    "MAX_PANEL_NUMBER",
    "METRICS_FORMAT",
    "METRICS_NAME",
    "PAGES_DIR",
    "PAGES_FORMAT",
    "PAGES_INDEX",
    "PANELS_DIR",
    "PDF_NAME",
    "RunWriter",
    "STAGING_DIR",
    "VIDEO_DIR",
    "ZIP_NAME",
    "build_manifest",
    "check_output_dir",
    "drawing_panels",
    "mask_filename",
    "package_versions",
    "panel_filename",
    "prepare_output_dir",
    "recorded_exports",
    "refuse_unreadable_records",
    "remove_written_files",
    "save_panel",
    "save_result",
    "unrecorded_files",
    "written_files",
]


def prepare_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Create ``out_dir``; refuse one that already holds files unless ``overwrite``.

    With ``overwrite`` only the files this tool wrote there (:func:`written_files`) are removed,
    never other files of the folder.
    """
    out = check_output_dir(out_dir, overwrite)
    remove_written_files(out)
    try:
        (out / PANELS_DIR).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StoryDiffusionError(
            f"{out / PANELS_DIR} is a file, not a folder: move it or choose another --out"
        ) from None
    except OSError as error:
        raise StoryDiffusionError(
            f"cannot create {out / PANELS_DIR}: {error.strerror or error}: choose another --out"
        ) from None
    return out


def remove_written_files(run_dir: str | os.PathLike, keep: tuple[Path, ...] = ()) -> None:
    """Delete what :func:`written_files` lists (the manifest first, so no record outlives its files)
    except ``keep``, and the ``pages``/``video`` folders this leaves empty; nothing else of the folder."""
    run = Path(run_dir)
    if not run.is_dir():
        return
    kept = {path.resolve() for path in keep}
    for path in written_files(run):
        if path.resolve() not in kept:
            path.unlink(missing_ok=True)
    for folder in (PAGES_DIR, VIDEO_DIR, MASKS_DIR):
        if (run / folder).is_dir() and not any((run / folder).iterdir()):
            (run / folder).rmdir()


def check_output_path(out: Path, flag: str = "--out") -> None:
    """A folder this process can make and write at ``out``: no name longer than file systems allow, no file
    where a folder of the path should be, and a place it may write to (tried with an empty folder made and
    removed at once: permissions alone do not tell of /proc or a read-only disk)."""
    long_name = next((part for part in out.parts if len(os.fsencode(part)) > MAX_NAME_BYTES), None)
    if long_name is not None:
        raise StoryDiffusionError(
            f"the output path has a name of {len(os.fsencode(long_name))} bytes ({long_name[:24]}…), "
            f"more than the {MAX_NAME_BYTES} a file system allows: choose a shorter {flag}"
        )
    dangling = next((folder for folder in (out, *out.parents) if folder.is_symlink() and not folder.exists()), None)
    if dangling is not None:  # no folder can be made under that name, nor through it
        raise StoryDiffusionError(
            f"{dangling} is a link to {os.readlink(dangling)}, which does not exist: make that folder, or choose "
            f"another {flag}"
        )
    existing = next((folder for folder in (out, *out.parents) if folder.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        kind = "a file" if existing.is_file() else "a device or other special file"
        raise StoryDiffusionError(f"{existing} is {kind}, not a folder: choose another {flag}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".storydiffusion-check-", dir=existing))
    except OSError as error:
        # A system folder such as /proc answers "No such file or directory" for a folder it will not make.
        reason = "it takes no new folders" if error.errno == errno.ENOENT else (error.strerror or str(error))
        raise StoryDiffusionError(
            f"cannot write in {existing} ({reason}): choose another {flag}, or a folder you may write to"
        ) from None


def check_output_dir(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an output folder that ``prepare_output_dir`` would refuse, without touching anything.

    Also refused before any work: a name longer than file systems allow, a file where a folder of the
    path should be, and a place this process may not write to.
    """
    out = Path(out_dir)
    check_output_path(out)
    refuse_unreadable_records(out)
    if out.exists() and not overwrite and any(out.iterdir()):
        raise StoryDiffusionError(
            f"{out} already holds files: pass --overwrite to replace them, or choose another --out"
        )
    for folder in (PANELS_DIR, MASKS_DIR):
        if (out / folder).exists() and not (out / folder).is_dir():
            raise StoryDiffusionError(f"{out / folder} is a file, not a folder: move it or choose another --out")
    if (out / MASKS_DIR).is_symlink():  # masks are written only on request: never through a link out of the folder
        raise StoryDiffusionError(f"{out / MASKS_DIR} is a link, not a folder: move it or choose another --out")
    staging = out / STAGING_DIR
    if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
        raise StoryDiffusionError(
            f"{staging} is in the way: this tool stages --overwrite runs under that name; move it or choose another --out"
        )
    foreign = unrecorded_files(staging) if staging.is_dir() else []
    if foreign:
        raise StoryDiffusionError(
            f"{staging} holds {foreign[0].relative_to(staging).as_posix()}, which this tool has no record of writing: "
            "it stages --overwrite runs in that folder; move your files out of it or choose another --out"
        )
    return out


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
) -> dict[str, Any]:
    """Everything needed to reproduce the run: story, resolved settings, model, seeds, versions.

    ``complete`` is False while a run is under way (and stays so if it is interrupted), and never
    True while a panel of the story is missing; ``earlier`` are panel entries of an earlier run of
    the same story that this run keeps. ``drawing`` (0-based) are the panels the run is drawing: those
    not recorded yet are listed, so a panel written just before a crash is known as this tool's.
    ``digests`` (by file name, ``panels/panel_001.png``): the SHA-256 of each panel and mask file as written,
    kept in its panel's entry, and ``bank_digest`` the identity bank's: a file since changed is the user's.
    """
    spec = result.model
    drawn = [_panel_entry(panel, digests or {}) for panel in result.panels]
    redrawn = {entry["panel"] for entry in drawn}
    panels = sorted([e for e in earlier if e.get("panel") not in redrawn] + drawn, key=lambda e: e["panel"])
    recorded = {entry.get("panel") for entry in panels}
    pending = sorted({index + 1 for index in drawing} - recorded)
    return {
        "format": MANIFEST_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "story": result.story.to_dict(),
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

    def start(self, result) -> None:
        from .run_targets import refuse_foreign_targets, story_targets

        if not self.private:  # no file of the user's is ever replaced
            refuse_foreign_targets(self.out, story_targets(result.story, panels=self.drawing, **self.may_write))
        self.result = result
        if self.drawing is None:
            self.drawing = list(range(len(result.story.panels)))
        metrics = _read_json(self.out / METRICS_NAME)
        if metrics is not None and metrics.get("format") == METRICS_FORMAT:  # scores of an older drawing
            (self.out / METRICS_NAME).unlink()
        self._write(complete=False)

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
