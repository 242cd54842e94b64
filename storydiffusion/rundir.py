"""The output folder of a run: what lives in it, what this tool wrote there, and writing it.

A run folder holds ``story.json`` (the manifest), ``panels/``, ``inputs/`` (copies of the pictures its story
names), optionally ``identity_bank.safetensors`` and ``masks/``, and what later commands add: ``pages/`` and
the exports (compose), ``video/`` (animate), ``metrics.json`` (evaluate). Their names are in :mod:`storydiffusion.run_names`, what this tool wrote there
is read from its records by :mod:`storydiffusion.run_records`, and a run is written as it happens by
:mod:`storydiffusion.run_writer` (all three re-exported here); this module checks and prepares the folder.
Every file goes through :mod:`storydiffusion.atomic`. Reading the manifest back is :mod:`storydiffusion.run_manifest`.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import StoryDiffusionError
from .run_names import (
    BANK_NAME,
    CBZ_NAME,
    EXPORT_FILES,
    INPUTS_DIR,
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
    drawing_panels,
    recorded_exports,
    refuse_unreadable_records,
    unrecorded_files,
    written_files,
)
from .run_writer import RunWriter, build_manifest, package_versions, save_panel, save_result

# The folder's names and records are re-exported: ``rundir`` stays the one module to import.
__all__ = [
    "BANK_NAME",
    "CBZ_NAME",
    "EXPORT_FILES",
    "INPUTS_DIR",
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
    for folder in (PAGES_DIR, VIDEO_DIR, MASKS_DIR, INPUTS_DIR):
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
