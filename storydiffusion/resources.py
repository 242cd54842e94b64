"""Where the packaged data lives: layouts, configs, fonts and examples, in a checkout or a wheel alike.

A checkout keeps the data at the top level (``layouts/``, ``configs/``, ``assets/``, ``examples/``),
where contributors edit it; a wheel carries the same folders inside the package, in
``storydiffusion/_data/`` (see ``pyproject.toml``). Every reader asks this module, never ``__file__``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DATA_FOLDERS = ("layouts", "configs", "assets", "examples")
BUNDLED = "_data"

__all__ = ["DATA_FOLDERS", "data_path", "data_root"]


def data_root() -> Path:
    """The folder that holds ``layouts/``, ``configs/``, ``assets/`` and ``examples/``."""
    package = Path(str(files("storydiffusion")))
    for root in (package / BUNDLED, package.parent):
        if all((root / folder).is_dir() for folder in DATA_FOLDERS):
            return root
    raise FileNotFoundError(
        "the storydiffusion data folders (layouts, configs, assets, examples) are missing: "
        "reinstall the package with `pip install .` or run from a complete checkout"
    )


def data_path(folder: str, *parts: str) -> Path:
    """A file or folder of the packaged data, e.g. ``data_path("layouts", "manga.yaml")``."""
    if folder not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}; known: {', '.join(DATA_FOLDERS)}")
    return data_root().joinpath(folder, *parts)
