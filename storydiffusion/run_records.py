"""What this tool wrote in a run folder, as its own records name it (``story.json``, ``pages/pages.json``, the
clips' records, ``metrics.json``): the only files any command may replace or delete there. Anything else
is the user's, however its name looks."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import temporary_name
from .errors import StoryDiffusionError
from .run_names import (
    _OWN_NAME_SHAPES,
    _TEMPORARY,
    BANK_NAME,
    EXPORT_FILES,
    INPUTS_DIR,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MASKS_DIR,
    MAX_MANIFEST_BYTES,
    MAX_PANEL_NUMBER,
    METRICS_FORMAT,
    METRICS_NAME,
    PAGES_DIR,
    PAGES_FORMAT,
    PAGES_INDEX,
    PANELS_DIR,
    VIDEO_DIR,
    mask_filename,
    panel_filename,
)
from .structured import InputFileError, parse_json, read_text


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes: a panel's record keeps it, so a file of that name the user has since
    replaced with their own picture is theirs, not this tool's (never deleted or replaced by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# A record saying ``"digests": "sha256"`` keeps the digest of every finished file it lists: one it lists without
# a valid digest (the key deleted by hand) is not this tool's. Records of 0.1.0 have none: their files go by name.
DIGESTS = "sha256"
_DIGEST = re.compile(r"[0-9a-f]{64}")


RECORD_DIGEST = "sha256"  # in a record that keeps its own digest (metrics.json): that of the rest of it


def with_own_digest(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the SHA-256 of its content (sorted keys, without this entry) added: a record whose
    content no longer matches was edited by its user, and is theirs from then on."""
    content = {key: value for key, value in record.items() if key != RECORD_DIGEST}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return {**content, RECORD_DIGEST: hashlib.sha256(text.encode()).hexdigest()}


def unedited(record: dict[str, Any]) -> bool:
    """A record as ``with_own_digest`` wrote it (one from before records kept their digest counts as such)."""
    return RECORD_DIGEST not in record or with_own_digest(record) == record


def declares_digests(record: dict[str, Any] | None) -> bool:
    """Whether ``record`` keeps a digest of every finished file it lists (see ``DIGESTS``)."""
    return record is not None and record.get("digests") == DIGESTS


def _listed(record: dict[str, Any], key: str) -> list:
    """A record's list under ``key``; anything else (a hand-edited ``"pages": 7``) lists nothing."""
    value = record.get(key)
    return value if isinstance(value, list) else []


def _valid(digest: Any) -> bool:
    return isinstance(digest, str) and _DIGEST.fullmatch(digest) is not None


def recorded_digests(run_dir: str | os.PathLike) -> dict[str, str]:
    """Every file this tool's records keep with its SHA-256, by name in the run folder (``panels/panel_001.png``,
    ``masks/…``, ``identity_bank.safetensors``, ``pages/page_01.png``, ``comic.pdf``, ``video/01-02.mp4`` -> hex
    digest): a file of that name with other bytes is the user's edit, never deleted or replaced by this tool."""
    run = Path(run_dir)
    return _digests(read_record(run / MANIFEST_NAME), read_record(run / PAGES_DIR / PAGES_INDEX), _clip_records(run))


def _clip_records(run: Path) -> dict[str, dict[str, Any]]:
    """Each clip's record (``video/01-02.json``) that reads as JSON, by its name in the run folder."""
    infos = sorted((run / VIDEO_DIR).glob("*.json")) if (run / VIDEO_DIR).is_dir() else []
    records = {f"{VIDEO_DIR}/{info.name}": read_record(info) for info in infos}
    return {name: record for name, record in records.items() if record is not None}


def _digests(manifest: dict[str, Any] | None, pages: dict[str, Any] | None, clips: dict[str, dict[str, Any]]) -> dict:
    """``recorded_digests`` of records already read."""
    return {**_manifest_digests(manifest), **_pages_digests(pages), **_clip_digests(clips)}


def _manifest_digests(manifest: dict[str, Any] | None) -> dict[str, str]:
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("panels"), list):
        return {}
    entries = [entry for entry in manifest["panels"] if isinstance(entry, dict)]
    found = {str(entry.get("file")): entry["sha256"] for entry in entries if "sha256" in entry}
    for entry in entries:
        masks, digests = entry.get("masks"), entry.get("masks_sha256")
        if isinstance(masks, dict) and isinstance(digests, dict):
            found |= {str(masks[name]): digests[name] for name in masks if name in digests}
    if isinstance(manifest.get("identity_bank"), str) and "identity_bank_sha256" in manifest:
        found[manifest["identity_bank"]] = manifest["identity_bank_sha256"]
    return found | recorded_inputs(manifest)


def recorded_inputs(manifest: dict[str, Any] | None) -> dict[str, str]:
    """The run's copies of its story's pictures (``inputs/…``) a manifest lists, with their SHA-256: the
    name each is recorded under in the story, and what its bytes must be to be this tool's."""
    inputs = manifest.get("inputs") if isinstance(manifest, dict) else None
    if not isinstance(inputs, dict):
        return {}
    return {str(name): digest for name, digest in inputs.items() if isinstance(digest, str)}


def _finished_files(
    manifest: dict[str, Any] | None, pages: dict[str, Any] | None, clips: dict[str, dict[str, Any]]
) -> set[str]:
    """The files records that declare their digests list as finished: each must have its digest to be this
    tool's. Files a run or a composition is still writing (``drawing``, ``writing``) go by name."""
    names: set[str] = set()
    if declares_digests(manifest):
        names |= set(_manifest_files(manifest))
    if declares_digests(pages):
        names |= set(_page_files(pages)) | {str(name) for name in _listed(pages, "exports")}
    for clip in clips.values():
        if declares_digests(clip):
            names |= {f"{VIDEO_DIR}/{name}" for name in _listed(clip, "files")}
    return names


def _manifest_files(manifest: dict[str, Any]) -> list[str]:
    """The panels, masks, inputs and identity bank a manifest lists as finished, by name in the run folder."""
    entries = [entry for entry in _listed(manifest, "panels") if isinstance(entry, dict)]
    names = [str(entry.get("file")) for entry in entries]
    names += [
        str(name) for entry in entries if isinstance(entry.get("masks"), dict) for name in entry["masks"].values()
    ]
    names += list(recorded_inputs(manifest))
    return names + ([manifest["identity_bank"]] if isinstance(manifest.get("identity_bank"), str) else [])


def _page_files(pages: dict[str, Any]) -> list[str]:
    """The pages a pages record lists, by name in the run folder."""
    return [f"{PAGES_DIR}/{entry.get('file')}" for entry in _listed(pages, "pages") if isinstance(entry, dict)]


def _pages_digests(pages: dict[str, Any] | None) -> dict[str, str]:
    if pages is None or pages.get("format") != PAGES_FORMAT:
        return {}
    entries = [entry for entry in _listed(pages, "pages") if isinstance(entry, dict)]
    found = {f"{PAGES_DIR}/{entry.get('file')}": entry["sha256"] for entry in entries if "sha256" in entry}
    exports = pages.get("exports_sha256")
    return found | ({str(name): digest for name, digest in exports.items()} if isinstance(exports, dict) else {})


def _clip_digests(clips: dict[str, dict[str, Any]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for clip in clips.values():
        digests = clip.get("sha256")
        if isinstance(digests, dict):
            found |= {f"{VIDEO_DIR}/{name}": digest for name, digest in digests.items()}
    return found


def written_files(run_dir: str | os.PathLike, among: Iterable[Path] | None = None) -> list[Path]:
    """The files of ``run_dir`` that this tool wrote, as its own records name them (only those ``among``
    the paths given, when given: each file a record keeps a digest of is read whole to check it, and an
    identity bank can be gigabytes, so a caller asking about a few files reads only those).

    Read from ``story.json`` (panels, identity bank, and the panels a run was drawing), ``pages/pages.json`` (pages and exports),
    ``video/*.json`` (clips) and ``metrics.json`` (scores, by its format). Only the temporaries of interrupted atomic writes of those files carry
    no record (``panels/.panel_001.tmp.png``); a run lists the panels it will draw in its manifest
    before its first panel, so no panel is ever unrecorded. Anything else is the user's and is never listed, however its name
    looks. Only existing files inside ``run_dir`` are returned.
    """
    run = Path(run_dir)
    names: list[str] = []
    manifest = read_record(run / MANIFEST_NAME)
    if manifest is not None and manifest.get("format") == MANIFEST_FORMAT:
        names.append(MANIFEST_NAME)
        names += _manifest_files(manifest) + _drawing_files(manifest)
    pages = read_record(run / PAGES_DIR / PAGES_INDEX)
    if pages is not None and pages.get("format") == PAGES_FORMAT:
        names.append(f"{PAGES_DIR}/{PAGES_INDEX}")
        names += _page_files(pages)
        writing = pages.get("writing") if isinstance(pages.get("writing"), list) else []
        names += [f"{PAGES_DIR}/{name}" for name in writing if isinstance(name, str)]  # a composition under way
    names += recorded_exports(run)
    metrics = read_record(run / METRICS_NAME)
    if metrics is not None and metrics.get("format") == METRICS_FORMAT and unedited(metrics):
        names.append(METRICS_NAME)
    clips = _clip_records(run)
    for name, clip in clips.items():
        if isinstance(clip.get("files"), list):
            names.append(name)
            names += [f"{VIDEO_DIR}/{file}" for file in clip["files"]]
    names = [name for name in names if _shaped_like_ours(name)]
    names += _own_temporaries(run, {*names, *_SINGLE_FILES})
    if among is not None:
        wanted = {Path(path) for path in among}
        names = [name for name in names if run / name in wanted]
    inside, fingerprints = run.resolve(), _digests(manifest, pages, clips)  # the records just read, not again
    strict = _finished_files(manifest, pages, clips)
    found: list[Path] = []
    for name in dict.fromkeys(names):
        path = run / name
        if path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(inside):
            if name in fingerprints and (not _valid(fingerprints[name]) or file_digest(path) != fingerprints[name]):
                continue  # the user's own file under this tool's name
            if name not in fingerprints and name in strict:
                continue  # listed as finished without its digest: the record was edited, the file is not ours
            found.append(path)  # (a record of 0.1.0 keeps no digests: its files go by name)
    return found


def drawing_panels(manifest: dict[str, Any]) -> list[int]:
    """The panels (0-based) a run was drawing when its manifest was written and had not yet recorded: a file
    of theirs may be on disk (written, its record not yet) and is this tool's. Anything malformed is ignored."""
    numbers = manifest.get("drawing")
    if not isinstance(numbers, list):
        return []
    return sorted(
        {n - 1 for n in numbers if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_PANEL_NUMBER}
    )


def _drawing_files(manifest: dict[str, Any]) -> list[str]:
    """The panel files of the panels a run was drawing (``drawing_panels``), and their masks, one per
    character the recorded story shows there: never more than that run could have written."""
    indices = drawing_panels(manifest)
    if not indices:
        return []
    from .run_manifest import story_from_manifest

    try:
        panels = story_from_manifest(manifest).panels
    except StoryDiffusionError:  # a record that is not valid claims nothing
        return []
    names = []
    for index in (index for index in indices if index < len(panels)):
        names.append(f"{PANELS_DIR}/{panel_filename(index)}")
        names += [f"{MASKS_DIR}/{mask_filename(index, number)}" for number in range(len(panels[index].characters))]
    return names


def _shaped_like_ours(name: str) -> bool:
    fixed = (MANIFEST_NAME, BANK_NAME, METRICS_NAME, f"{PAGES_DIR}/{PAGES_INDEX}", *EXPORT_FILES)
    return name in fixed or any(shape.fullmatch(name) for shape in _OWN_NAME_SHAPES)


def recorded_exports(run_dir: str | os.PathLike) -> list[str]:
    """The export files (PDF, CBZ, ZIP) that ``pages/pages.json`` says compose wrote.

    A ``pages.json`` of version 0.1.0 has no ``exports`` entry: then every export file present is
    taken as compose's, as 0.1.0 itself did.
    """
    pages = read_record(Path(run_dir) / PAGES_DIR / PAGES_INDEX)
    if pages is None or pages.get("format") != PAGES_FORMAT:
        return []
    if "exports" not in pages:
        return [name for name in EXPORT_FILES if (Path(run_dir) / name).is_file()]
    exports = pages["exports"] if isinstance(pages["exports"], list) else []
    return [name for name in EXPORT_FILES if name in exports]


def unrecorded_files(folder: str | os.PathLike) -> list[Path]:
    """Every file (and link) under ``folder`` that :func:`written_files` does not list: the user's files,
    which this tool never deletes and never mixes a run of its own with."""
    root = Path(folder)
    ours = set(written_files(root))
    found: list[Path] = []
    for parent, folders, files in os.walk(root):
        found += [Path(parent) / name for name in files if Path(parent) / name not in ours]
        found += [Path(parent) / name for name in folders if (Path(parent) / name).is_symlink()]
    return sorted(found)


# The files of a run folder that only this tool writes, one of each: a temporary of theirs is its own even
# before a record names them (an interrupted first write of the manifest, of the bank, of an export).
_SINGLE_FILES = (MANIFEST_NAME, f"{PAGES_DIR}/{PAGES_INDEX}", METRICS_NAME, BANK_NAME, *EXPORT_FILES)


def _own_temporaries(run: Path, claimed: set[str]) -> list[str]:
    """Temporaries an interrupted atomic write of one of this tool's own files left (``.story.tmp.json``): only
    those of a file its records claim (``claimed``: listed, being drawn or written, or one of ``_SINGLE_FILES``).
    A file merely named like one (``panels/.panel_003.tmp.png`` where no record names panel 3) is the user's."""
    names = []
    for folder in ("", PANELS_DIR, MASKS_DIR, PAGES_DIR, VIDEO_DIR, INPUTS_DIR):
        for path in _listing(run / folder):
            match = _TEMPORARY.fullmatch(path.name)
            target = f"{folder}/{match['stem']}{match['suffix'] or ''}".lstrip("/") if match else ""
            if match and target in claimed and temporary_name(Path(target)).name == path.name:
                names.append(f"{folder}/{path.name}".lstrip("/"))
    return names


def _listing(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def refuse_unreadable_records(
    run_dir: str | os.PathLike, records: Iterable[str] = (MANIFEST_NAME,), fix: str = "choose another --out"
) -> None:
    """Raise when one of ``records`` (the run's ``story.json``, ``pages/pages.json``) that a command will replace is
    there but cannot be read: every file it lists would look like the user's, so the refusal says why instead
    of "no record of writing"."""
    run = Path(run_dir)
    for name in records:
        path = run / name
        if not path.is_file() or path.is_symlink():
            continue
        try:
            parse_json(read_text(path, "record", MAX_MANIFEST_BYTES), path.name)
        except InputFileError as error:
            raise StoryDiffusionError(
                f"{path} is a file this tool has no record of writing: it cannot be read as a run's record ({error}); "
                f"if an earlier run wrote it, repair or delete it, if it is your own file, move it out of the folder, "
                f"or {fix}"
            ) from None


def recorded_composition(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """How ``pages/pages.json`` says the run's pages were made, as ``compose_run`` takes it (layout, dpi, fit,
    direction, title, lettering), and the name and text of the user's own template file when one was used
    (``template_file``); None when the run has no pages of this tool's."""
    pages = read_record(Path(run_dir) / PAGES_DIR / PAGES_INDEX)
    if pages is None or pages.get("format") != PAGES_FORMAT or not isinstance(pages.get("template"), str):
        return None
    title = pages.get("title")
    own_file = pages.get("template_file")
    recorded = {
        "layout": pages["template"],
        "dpi": pages["dpi"] if isinstance(pages.get("dpi"), int) and not isinstance(pages["dpi"], bool) else None,
        "fit": pages["fit"] if isinstance(pages.get("fit"), str) else None,
        "direction": pages["direction"] if pages.get("direction") in ("ltr", "rtl") else None,
        "title": title if isinstance(title, str) else False,
        "lettering": pages.get("lettering") is not False,
    }
    if isinstance(own_file, dict) and isinstance(own_file.get("name"), str) and isinstance(own_file.get("text"), str):
        recorded["template_file"] = (own_file["name"], own_file["text"])  # the user's own template, not a name
    return recorded


def read_record(path: Path) -> dict[str, Any] | None:
    """One of this tool's own records, read through ``structured`` like any file; None if unreadable."""
    if not path.is_file():
        return None
    try:
        data = parse_json(read_text(path, "record", MAX_MANIFEST_BYTES), path.name)
    except InputFileError:
        return None
    return data if isinstance(data, dict) else None
