"""Saving and loading a studio session's work as a project file: a mixin of :class:`StudioSession`, which
owns the story, its result, the run folder and the uploads these methods read and replace."""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

from .errors import StoryDiffusionError
from .layout.compose import ComposeResult, compose_run
from .pipeline import StoryPipeline
from .project import Project, ProjectLimits, load_project, save_project
from .results import PanelImage, StoryResult
from .rundir import PANELS_DIR, save_result
from .studio_uploads import StoryUploads

DOWNLOADS_DIR = "downloads"  # in a session's folder: the files offered for download, named after the story
LOADING_DIR = "loading"  # in a session's folder: a project being loaded, until it replaces the run
EXPORTS = ("pdf", "cbz", "zip")  # what the studio offers for download beside the pages


class ProjectsMixin:
    """``save_project`` and ``load_project`` for :class:`~storydiffusion.studio.StudioSession`."""

    home: Path
    run_dir: Path
    story: Any
    model: str
    result: StoryResult | None
    layout: str
    direction: str | None
    pages: ComposeResult | None
    bank_story: Any
    steered: StoryUploads
    running: bool

    def _refuse_while_running(self, doing: str) -> None:
        """A project is saved from, or loaded into, a session at rest: a run in progress (or waiting for its
        turn) would save half a story, or draw over the project just loaded when it ends."""
        if self.running:
            raise StoryDiffusionError(
                f"Project: this session is drawing a story, a panel or a clip: {doing} once it is done, or press "
                "Stop first"
            )

    def save_project(self, include_bank: bool = False) -> Path:
        """The project ZIP: story, settings, seeds and panels (a few MB). The identity bank (hundreds of MB)
        only with ``include_bank``: ``regenerate_panel`` rebuilds it exactly from ``bank_story`` and the seeds."""
        self._refuse_while_running("save the project")
        if self.result is None:
            raise StoryDiffusionError("there is nothing to save yet: generate the story first")
        project = Project(
            story=self.story,
            settings=self.result.settings,
            model=self.model,
            panels={p.index: p.image for p in self.result.panels},
            seeds={p.index: p.seed for p in self.result.panels},
            bank=self.result.bank,
            layout=self.layout,
            bank_story=self.bank_story,
            photos=self.steered.photo_images,
            controls=self.steered.control_images,
            direction=self.direction,
        )
        (self.home / DOWNLOADS_DIR).mkdir(exist_ok=True)
        path = self.home / DOWNLOADS_DIR / f"{slug(self.story.title)}-project.zip"
        return save_project(project, path, include_bank=include_bank)

    def load_project(
        self,
        path: str | Path,
        pipeline: StoryPipeline,
        limits: ProjectLimits | None = None,
        layout: str | None = None,
    ) -> Project:
        """Continue a saved project: its panels, seeds and bank become this session's, its pages typeset (in
        its own layout and reading direction, else ``layout``). A project saved without its bank gets it back on the first
        ``regenerate_panel`` that needs it.

        All of it is built and typeset in a folder beside the session's run first: a project that fails
        anywhere leaves the session's story, panels and pages exactly as they were.
        ``limits`` bound what the archive may unpack to (a shared server ties them to its upload limit).
        """
        self._refuse_while_running("load the project")
        project = load_project(path, limits)
        panels = [
            PanelImage(
                index=i,
                image=image,
                seed=project.seeds.get(i, 0),
                prompt=project.story.panel_prompt(i),
                negative_prompt=project.settings.negative_prompt,
                characters=tuple(project.story.panels[i].characters),
                identity=False,
            )
            for i, image in sorted(project.panels.items())
        ]
        result = StoryResult(
            story=project.story, settings=project.settings, model=pipeline.spec, panels=panels, bank=project.bank
        )
        staging = self.home / LOADING_DIR
        shutil.rmtree(staging, ignore_errors=True)
        try:
            (staging / PANELS_DIR).mkdir(parents=True)
            save_result(result, staging, private=True)
            layout = project.layout or layout or self.layout
            direction = project.direction if project.layout else self.direction  # a layout saved with its direction
            pages = compose_run(
                staging, layout=layout, export=EXPORTS, direction=direction
            )  # a panel that cannot be typeset fails here
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(self.run_dir, ignore_errors=True)
        staging.rename(self.run_dir)
        self.story, self.model, self.result = project.story, project.model, result
        self.layout, self.direction = layout, direction
        self.bank_story = project.bank_story if project.bank_story is not None else copy.deepcopy(project.story)
        self.steered = StoryUploads.from_project(project.story, project.photos, project.controls)
        self.pages = _moved(pages, self.run_dir)
        return project


def _moved(pages: ComposeResult, run_dir: Path) -> ComposeResult:
    """``pages`` composed in another folder, which has since become ``run_dir``."""
    inside = lambda path: run_dir / path.relative_to(pages.run_dir)  # noqa: E731
    files = {kind: inside(path) for kind, path in pages.files.items()}
    return dataclasses.replace(pages, run_dir=run_dir, pages=[inside(page) for page in pages.pages], files=files)


def slug(title: str) -> str:
    """A file name from a story's title: ``A Windy Day!`` -> ``a-windy-day``."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")
    return "-".join(part for part in cleaned.split("-") if part)[:60] or "story"
