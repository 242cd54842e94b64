"""Finding and reading page templates: the bundled ones in ``layouts/`` by name, or a file of the user's by
path, each read and validated into a :class:`PageTemplate` (``templates``) with its errors' file lines."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import shown
from ..file_lines import line_of_named_path
from ..resources import data_path
from ..structured import InputFileError, parse_json, parse_yaml, read_text
from . import LayoutError
from .templates import PageTemplate, parse_template

LAYOUTS_DIR = data_path("layouts")
SUFFIXES = (".yaml", ".yml", ".json")


def list_templates(directory: str | Path | None = None) -> list[str]:
    """Names of the templates in ``layouts/`` (file names without suffix), sorted."""
    folder = Path(directory) if directory is not None else LAYOUTS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        {p.stem for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")}
    )


def template_path(name_or_path: str | Path) -> Path:
    """The file of a template given by name (``classic``) or by path (``my/page.yaml``)."""
    if not isinstance(name_or_path, (str, Path)):  # str(None) would be "none", the layout of no layout
        raise LayoutError(
            f"layout must be a name ({_names()}) or a .yaml/.json file, not {type(name_or_path).__name__}"
        )
    text = str(name_or_path).strip()
    candidate = Path(text)
    if candidate.suffix.lower() in SUFFIXES or "/" in text or "\\" in text:  # page.YAML is a file too
        if not candidate.is_file() and candidate.name == text and (LAYOUTS_DIR / text).is_file():
            return LAYOUTS_DIR / text  # "classic.yaml" names the bundled file too
        if candidate.exists() and not candidate.is_file():
            raise LayoutError(
                f"layout file {text} is not a regular file (a folder, pipe or device): give a .yaml/.json file"
            )
        if not candidate.is_file():
            raise LayoutError(
                f"layout file {text} does not exist: give an existing .yaml/.json file or a name ({_names()})"
            )
        return candidate
    name = text.lower()  # "Manga" is the bundled manga, as "PDF" is the pdf export
    if name in list_templates():  # a name is looked up among the bundled ones, never joined onto a path
        return next(
            LAYOUTS_DIR / f"{name}{suffix}" for suffix in SUFFIXES if (LAYOUTS_DIR / f"{name}{suffix}").is_file()
        )
    raise LayoutError(
        f"unknown layout {shown(text)}: choose one of {_names()}, or give the path of a .yaml/.json template"
    )


def _names() -> str:
    return ", ".join(list_templates()) or "none found in layouts/"


def load_template(name_or_path: str | Path, *, dpi: int | None = None) -> PageTemplate:
    """Read and validate a template; ``dpi`` overrides the file's (physical sizes scale, px stay).

    A template of the user's own (not a bundled one) keeps its file's name and text
    (``PageTemplate.file``), so a run's pages can be laid out again the same way once the file is gone."""
    path = template_path(name_or_path)
    bundled = path.parent == LAYOUTS_DIR
    label = path.name if bundled else str(path)
    try:
        text = read_text(path, "layout")
    except InputFileError as error:
        raise LayoutError(f"could not read layout {label}: {' '.join(str(error).split())}") from None
    template = template_from_text(text, path.name, label, dpi=dpi)
    return template if bundled else replace(template, file=(path.name, text))


def template_from_text(text: str, filename: str, label: str, *, dpi: int | None = None) -> PageTemplate:
    """A template from the text of its file (``filename`` says JSON or YAML; ``label`` names it in errors)."""
    is_json = Path(filename).suffix.lower() == ".json"
    try:
        data = parse_json(text, label) if is_json else parse_yaml(text, label)
    except InputFileError as error:
        raise LayoutError(f"could not read layout {label}: {' '.join(str(error).split())}") from None
    try:
        return parse_template(data, name=Path(filename).stem, source=label, dpi=dpi)
    except LayoutError as error:
        raise _with_line(error, f"layout {label}", text, is_json) from None


def _with_line(error: LayoutError, where: str, text: str, is_json: bool) -> LayoutError:
    """The error with the file line of the key it names: ``layout x.yaml, line 7: pages[0].rows[1] ...``."""
    message = str(error)
    if not message.startswith(f"{where}: "):
        return error
    place = message.removeprefix(f"{where}: ")
    line = line_of_named_path(text, place, is_json)
    return LayoutError(f"{where}, line {line}: {place}") if line is not None else error
