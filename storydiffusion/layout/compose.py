"""Compose a run folder into pages: ``python -m storydiffusion compose out/ --layout manga --export pdf,cbz``.

Reads ``story.json`` (so captions edited there are used) and ``panels/panel_NNN.png``, never the
model: changing the layout re-typesets existing panels in seconds. Writes ``pages/page_01.png`` …,
``pages/pages.json`` (template, direction, cells and reading order per page) and, by the export
list, ``comic.pdf``, ``comic.cbz`` and ``panels.zip``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from ..atomic import write_json
from ..errors import ImageInputError, shown
from ..images import image_size
from ..run_manifest import manifest_panels, read_manifest, run_folder_manifest, story_from_manifest
from ..run_records import DIGESTS, file_digest, recorded_composition
from ..run_targets import EXPORT_NAMES, compose_targets, refuse_foreign_targets
from ..rundir import (
    CBZ_NAME,
    EXPORT_FILES,
    PAGES_DIR,
    PAGES_FORMAT,
    PAGES_INDEX,
    PANELS_DIR,
    PDF_NAME,
    ZIP_NAME,
    drawing_panels,
    panel_filename,
    recorded_exports,
    written_files,
)
from ..story import DEFAULT_TITLE, Story
from . import LayoutError
from .export import EXPORTS, encode_png, page_filenames, write_cbz, write_pages_png, write_panels_zip, write_pdf
from .paginate import PageLayout, paginate
from .render import REDRAW_THE_PANEL, make_lettering, render_pages
from .template_files import load_template, template_from_text
from .templates import PageTemplate, check_title_room

__all__ = [
    "ComposeResult",
    "check_options",
    "compose_run",
    "parse_exports",
]


@dataclass
class ComposeResult:
    """What a composition wrote, for the CLI and UI to report. ``missing``: the story's panels without a file
    (left out of the pages); ``notes``: what else the composition could not do (fonts, text cut short)."""

    run_dir: Path
    template: str
    layouts: list[PageLayout]
    pages: list[Path]
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    missing: list[int] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Every warning, in the folder's words: the missing panels first, then the notes."""
        return ([missing_panels_warning(self.missing)] if self.missing else []) + self.notes


def parse_exports(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"pdf,cbz"`` or ``["pdf", "cbz"]`` to a checked tuple; PNG pages are always written."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for part in parts:
        name = str(part).strip().lower()
        if not name:
            continue
        if name not in EXPORTS:
            raise LayoutError(
                f"unknown export {shown(name)}: choose from {', '.join(EXPORTS)}, separated by commas (e.g. pdf,cbz)"
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def check_options(
    layout: str,
    export: str | Iterable[str] | None = None,
    *,
    fit: str | None = None,
    dpi: int | None = None,
    direction: str | None = None,
) -> None:
    """Raise LayoutError for options compose would refuse, so a caller can fail before long work."""
    load_template(layout, dpi=dpi).with_options(fit=fit, direction=direction)
    parse_exports(export)


def check_pages_fit(layout: str, story: Story, panel_size: tuple[int, int]) -> None:
    """Raise LayoutError when the pages of ``story``'s panels, all drawn at ``panel_size``, would not fit
    ``layout`` (its title band, a page's pixels): known before any panel is drawn."""
    template = load_template(layout)
    title = _title_text(story, True) is not None and template.kind != "none"
    if title:
        check_title_room(template)
    paginate(template, [panel_size] * len(story.panels), title=title)


def _title_text(story: Story, title: str | bool | None) -> str | None:
    """``True``: the story's title (none for an untitled story); a string: that; False/None: none."""
    if title is True:
        return story.title if story.title and story.title != DEFAULT_TITLE else None
    if isinstance(title, str):
        return " ".join(title.split()) or None
    return None


def compose_run(
    run_dir: str | os.PathLike,
    layout: str | PageTemplate = "classic",
    export: str | Iterable[str] = ("png",),
    title: str | bool | None = True,
    fit: str | None = None,
    dpi: int | None = None,
    *,
    lettering: bool = True,
    direction: str | None = None,
) -> ComposeResult:
    """Lay out, draw and export the panels of a run folder written by ``generate``. ``direction`` ("ltr" or
    "rtl") reads the pages the other way than the layout does (a Hebrew or Arabic comic on classic pages).

    Missing panels are left out with a warning; no panel at all, or a broken one, is an error. Earlier pages are
    replaced, and so are the exports an earlier composition wrote (written again from the new pages, whether
    asked for or not), so the folder never holds a PDF of other pages.
    """
    started = time.perf_counter()
    run = Path(run_dir)
    exports = parse_exports(export)  # the options first: they are checked without reading the run
    if title is not None and not isinstance(title, (bool, str)):
        raise LayoutError(f"title must be text, True (the story's) or False (none), not {type(title).__name__}")
    template = layout if isinstance(layout, PageTemplate) else load_template(layout, dpi=dpi)
    template = template.with_options(fit=fit, direction=direction)
    story, drawing = _read_story(run)
    if _title_text(story, title) is not None:
        check_title_room(template)
    earlier = recorded_exports(run)
    kept = [kind for kind, name in EXPORT_NAMES.items() if name in earlier and (run / name).is_file()]
    exports += tuple(kind for kind in kept if kind not in exports)  # refreshed from the new pages
    earlier_pages = [
        path.name
        for path in written_files(run, among=(run / PAGES_DIR).glob("*.png"))
        if path.parent == run / PAGES_DIR
    ]

    indices, paths, sizes, missing = _find_panels(run, story)
    unfinished = [index for index in drawing if index in indices]
    notes = [unfinished_panels_warning(unfinished)] if unfinished else []
    letterer = make_lettering(template) if lettering else None
    title_text = _title_text(story, title) if letterer is not None and template.kind != "none" else None

    layouts = paginate(template, sizes, panel_indices=indices, title=title_text is not None)
    refuse_foreign_targets(run, compose_targets(exports, len(layouts)), fix="compose a copy of the run folder")
    images = render_pages(
        layouts,
        dict(zip(indices, paths)),
        story,
        template,
        title=title_text,
        lettering=letterer or False,
        warnings=notes,
    )
    result = ComposeResult(run, template.name, layouts, [], notes=notes, missing=missing)
    encoded = [encode_png(page) for page in images]
    # The record first, naming every file this composition writes or may leave, so a stop half-way
    # leaves no file of this tool's unrecorded; the last record below names what is there.
    asked = [EXPORT_NAMES[kind] for kind in exports if kind in EXPORT_NAMES]
    planned = [name for name in EXPORT_FILES if name in asked or name in earlier]
    writing = sorted(set(earlier_pages) | set(page_filenames(len(layouts))))
    index = _pages_index(template, layouts, title_text, result.warnings, planned)
    (run / PAGES_DIR).mkdir(exist_ok=True)
    write_json(run / PAGES_DIR / PAGES_INDEX, {**index, "writing": writing})
    result.pages = write_pages_png(encoded, run / PAGES_DIR, earlier_pages)
    files = {"pages": run / PAGES_DIR, **_write_exports(run, exports, story, template, images, encoded, paths)}
    # Exports of earlier compositions stay on disk, so they stay on the record of what this tool wrote.
    written = {path.name for kind, path in files.items() if kind != "pages"}
    exported = [name for name in EXPORT_FILES if name in written or (name in earlier and (run / name).is_file())]
    # Each file with its digest as written: one the user edits afterwards is theirs, never replaced or deleted.
    sha256 = {name: hashlib.sha256(page).hexdigest() for name, page in zip(page_filenames(len(encoded)), encoded)}
    sha256 |= {name: file_digest(run / name) for name in exported if name in written}
    record = _pages_index(template, layouts, title_text, result.warnings, exported, sha256)
    record["lettering"] = letterer is not None
    write_json(run / PAGES_DIR / PAGES_INDEX, record)
    result.files, result.seconds = files, time.perf_counter() - started
    return result


def compose_again(run_dir: str | os.PathLike) -> ComposeResult | None:
    """After the panels of a composed run changed (a redraw): its pages and exports made again as
    ``pages/pages.json`` says they were made, so that no page or PDF shows the earlier panels; None when
    the run has no pages. LayoutError when that layout is not found here (a template file since moved)."""
    recorded = recorded_composition(run_dir)
    if recorded is None:
        return None
    own_file = recorded.pop("template_file", None)
    if own_file is not None:  # the user's template, as it was when the pages were made (moved or changed since)
        name, text = own_file
        template = template_from_text(text, name, f"{name} (as pages.json records it)", dpi=recorded["dpi"])
        recorded["layout"] = replace(template, file=own_file)  # and recorded again with the new pages
    return compose_run(run_dir, **recorded)


def _read_story(run: Path) -> tuple[Story, list[int]]:
    """The run's story, and the panels (0-based) its run was drawing when it stopped, not yet recorded."""
    manifest = read_manifest(run_folder_manifest(run, "compose", LayoutError))
    manifest_panels(manifest)  # a hand-edited panel entry is refused here as by evaluate and animate
    return story_from_manifest(manifest), drawing_panels(manifest)


def unfinished_panels_warning(unfinished: list[int]) -> str:
    """A panel whose run stopped while drawing it has a file that may be the drawing before (a redraw in
    place) or the new one not yet recorded: it is laid out, and the user told how to finish it."""
    numbers = ", ".join(str(index + 1) for index in unfinished)
    which = f"panel {numbers} was" if len(unfinished) == 1 else f"panels {numbers} were"
    return (
        f"{which} being drawn when the run stopped, so {'its file' if len(unfinished) == 1 else 'their files'} "
        "may still be the earlier drawing: run the same generate command again to finish the run"
    )


def _find_panels(run: Path, story: Story) -> tuple[list[int], list[Path], list[tuple[int, int]], list[int]]:
    """(indices, files, sizes) of the story's panels that exist, and the indices of those that do not; a
    panel file that is there but is not a readable image of a sensible size raises ImageInputError."""
    indices, paths, sizes, missing = [], [], [], []
    for i in range(len(story.panels)):
        path = run / PANELS_DIR / panel_filename(i)
        if not path.is_file():
            missing.append(i)
            continue
        try:  # header only: a broken or oversized panel stops before any page is drawn
            sizes.append(image_size(path))
        except ImageInputError as error:
            raise ImageInputError(f"{error}; {REDRAW_THE_PANEL}") from None
        indices.append(i)
        paths.append(path)
    if not paths:
        raise LayoutError(f"{run / PANELS_DIR} holds no panels of this story (panel_001.png …): generate them first")
    return indices, paths, sizes, missing


def missing_panels_warning(missing: list[int]) -> str:
    """One line for every panel without its file (a stopped run leaves many): ``panels 2-6 and 9 are
    missing from panels/``; a single one is named by its file."""
    if len(missing) == 1:
        return f"panel {missing[0] + 1} is missing ({PANELS_DIR}/{panel_filename(missing[0])}): left out of the pages"
    runs: list[list[int]] = []
    for index in missing:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    spans = [f"{run[0] + 1}-{run[-1] + 1}" if len(run) > 1 else str(run[0] + 1) for run in runs]
    listed = spans[0] if len(spans) == 1 else f"{', '.join(spans[:-1])} and {spans[-1]}"
    return f"panels {listed} are missing from {PANELS_DIR}/: left out of the pages"


def _write_exports(
    run: Path,
    exports: tuple[str, ...],
    story: Story,
    template: PageTemplate,
    images: list[Image.Image],
    encoded: list[bytes],
    panel_paths: list[Path],
) -> dict[str, Path]:
    """The PDF, CBZ and panels ZIP asked for, by kind."""
    files: dict[str, Path] = {}
    if "pdf" in exports:
        files["pdf"] = write_pdf(images, run / PDF_NAME, template.dpi, title=story.title)
    if "cbz" in exports:
        drawn = [name for name, shown_in in story.character_panels().items() if shown_in]  # not the unused ones
        files["cbz"] = write_cbz(encoded, run / CBZ_NAME, story.title, template.direction == "rtl", characters=drawn)
    if "zip" in exports:
        files["zip"] = write_panels_zip(panel_paths, run / ZIP_NAME)
    return files


def _pages_index(
    template: PageTemplate,
    layouts: list[PageLayout],
    title: str | None,
    warnings: list[str],
    exports: list[str],
    sha256: dict[str, str] | None = None,
) -> dict:
    """``pages/pages.json``: how the pages were made and in which order their panels are read. ``sha256``: each
    page's and export's digest as written (``page_01.png``, ``comic.pdf``), kept in the record once written."""
    sha256 = sha256 or {}
    pages = [
        {"file": name, **layout.to_dict(), **({"sha256": sha256[name]} if name in sha256 else {})}
        for name, layout in zip(page_filenames(len(layouts)), layouts)
    ]
    exports_sha256 = {name: sha256[name] for name in exports if name in sha256}
    return {
        "format": PAGES_FORMAT,
        "template": template.name,
        **({"template_file": {"name": template.file[0], "text": template.file[1]}} if template.file else {}),
        "direction": template.direction,
        "dpi": template.dpi,
        "fit": template.fit,
        "title": title,
        "pages": pages,
        "exports": exports,
        **({"exports_sha256": exports_sha256, "digests": DIGESTS} if sha256 else {}),
        "warnings": warnings,
    }
