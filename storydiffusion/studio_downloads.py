"""What the studio offers for download after a run: its pages, and the PDF, CBZ and panels ZIP copied
under the story's name (``a-windy-day.pdf``), as a reader expects to find them among their files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write_bytes
from .layout.compose import ComposeResult
from .studio_projects import slug


@dataclass
class Downloads:
    """The page's four file widgets: the pages, the PDF, the CBZ and the panels ZIP (None: nothing yet)."""

    pages: list[str]
    pdf: str | None
    cbz: str | None
    panels_zip: str | None

    @classmethod
    def of(cls, composed: ComposeResult | None, folder: Path, title: str) -> Downloads:
        """The downloads of ``composed`` (none before the first pages), copied into ``folder`` under ``title``."""
        if composed is None:
            return cls([], None, None, None)

        def named_copy(kind: str, suffix: str) -> str | None:
            path = composed.files.get(kind)
            if path is None:
                return None
            target = folder / f"{slug(title)}{suffix}"
            folder.mkdir(exist_ok=True)
            atomic_write_bytes(target, path.read_bytes())
            return str(target)

        pages = [str(page) for page in composed.pages]
        return cls(pages, named_copy("pdf", ".pdf"), named_copy("cbz", ".cbz"), named_copy("zip", "-panels.zip"))

    def as_tuple(self) -> tuple[list[str], str | None, str | None, str | None]:
        return self.pages, self.pdf, self.cbz, self.panels_zip
