"""What the web studio does for one user, as a library: one session per user (models: model_pool.py).

A session owns a run folder in the same format as the CLI's ``--out`` (panels/, story.json), so
every capability of the UI is the library's: generating, regenerating one panel with the kept
identity bank (rebuilt exactly from the run's story when a project was saved without it),
re-typesetting pages, exporting, saving and loading project files.
"""

from __future__ import annotations

import copy
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .bank import IdentityBank
from .errors import GenerationCancelled, PromptsChanged, StoryDiffusionError, StoryError, counted
from .layout.compose import ComposeResult, check_options, compose_run
from .model_pool import shown_name
from .pipeline import StoryPipeline
from .planning import identity_sets
from .results import PanelImage, Progress, StoryResult
from .rundir import PANELS_DIR, VIDEO_DIR, save_panel, save_result
from .settings import DEFAULT_FPS, DEFAULT_FRAMES, GenerationSettings
from .story import Story, story_from_text, story_to_text
from .streaming import Event, PanelDone, RunFinished, stream_generation
from .studio_downloads import Downloads
from .studio_projects import DOWNLOADS_DIR, EXPORTS, ProjectsMixin
from .studio_text import no_such_panel
from .studio_uploads import StoryUploads

MAX_DICE_SEED = 2**31 - 1  # the dice stays below 2**53 so a browser's number field holds it exactly


def random_seed() -> int:
    """A fresh story seed for the dice button: a valid seed (0 .. 2**31-1) that a web page keeps exactly."""
    return secrets.randbelow(MAX_DICE_SEED + 1)


def session_of(state: StudioSession | None) -> StudioSession:
    """This user's session: the one Gradio keeps for them, or a new one on their first call.

    The page's ``gr.State`` starts empty rather than with a session, so that API clients, which never
    load the page, get a working session on any endpoint (Gradio deep-copies a non-empty default).
    """
    return state if isinstance(state, StudioSession) else StudioSession()


def close_session(state: StudioSession | None) -> None:
    """Gradio's state delete callback: the session's files go when the user leaves or the state expires."""
    if isinstance(state, StudioSession):
        state.close()


@dataclass
class StudioSession(ProjectsMixin):
    """One user's work: the story, its panels on disk, the identity bank, the pages."""

    workdir: Path | None = None  # made on first use (``home``): a call that never writes leaves no folder behind
    story: Story | None = None
    model: str = ""
    result: StoryResult | None = None
    layout: str = "classic"
    direction: str | None = None  # "ltr" or "rtl": the pages read so in any layout; None: as the layout reads
    cancel: threading.Event = field(default_factory=threading.Event)
    running: bool = False
    expected: bool = False  # a run was announced (expect_run) and has not begun yet
    pages: ComposeResult | None = None
    # The story the identity bank is drawn from: the run's, kept as it was when later redraws edit
    # ``story``, so a bank rebuilt after loading a project without it is the bank the run made.
    bank_story: Story | None = None
    # The run's uploaded reference photos and control images: the story names them by file name only,
    # and the pipeline reads no file a story names (read_files=False).
    steered: StoryUploads = field(default_factory=StoryUploads)
    photo_adapter: str = "image"  # how reference photos steer this user's runs: the whole photo, or the face
    reading_page: int | None = None  # the page open in the page view (0-based): it follows the pages typeset anew
    _drawn: dict[int, PanelImage] = field(default_factory=dict, repr=False)  # panels of the run in progress

    @property
    def home(self) -> Path:
        """The session's folder, made now if this is its first use."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="storydiffusion-"))
        return self.workdir

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    def panels(self) -> list[PanelImage]:
        """The panels made so far, in story order: while a run is going too, so the page can show them."""
        if self.result is not None:
            return list(self.result.panels)
        return [self._drawn[index] for index in sorted(self._drawn)]

    def close(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- generating -------------------------------------------------------------------------
    def generate(
        self,
        pipeline: StoryPipeline,
        story: Story,
        settings: GenerationSettings,
        model: str,
        steered: StoryUploads | None = None,
    ) -> Iterator[Event]:
        """Generate every panel, streaming events; panels are written as they finish. ``steered``: the
        run's uploaded reference photos and control images (the story then names them by file name)."""
        self._refuse_if_busy()  # before the folder of the run in progress is touched
        steered = steered if steered is not None else StoryUploads()
        story = steered.apply(story)
        # The story before this one stays, on disk and in the session, until this run draws its first panel:
        # a run stopped or failed before then leaves the user's last comic as it was.
        staging = self.home / "run-next"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / PANELS_DIR).mkdir(parents=True)
        try:
            with self._work() as cancel:
                for event in stream_generation(
                    pipeline.generate,
                    cancel,
                    story=story,
                    settings=settings,
                    keep_masks=_scores_crops(settings),
                    **self._uploads(steered),
                ):
                    if isinstance(event, PanelDone):
                        if staging.exists():
                            self._take_over(staging, story, model, steered)
                        save_panel(event.panel, self.run_dir)
                        self._drawn[event.panel.index] = event.panel
                    if isinstance(event, RunFinished) and event.result.panels:
                        self.result = event.result
                        self.story = self.result.story  # the run's own copy: text edits go to both at once
                        save_result(self.result, self.run_dir, private=True)
                    yield event
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _take_over(self, staging: Path, story: Story, model: str, steered: StoryUploads) -> None:
        """The new run's first panel is done: its folder and story replace the last run's."""
        shutil.rmtree(self.run_dir, ignore_errors=True)
        staging.rename(self.run_dir)
        self.story, self.model, self.result, self.pages, self._drawn = story, model, None, None, {}
        self.steered, self.bank_story = steered, copy.deepcopy(story)

    def _uploads(self, steered: StoryUploads | None = None) -> dict:
        """What every run of this session is given besides the story: its uploads (``steered``: a new run's,
        not yet the session's), and no file reading."""
        steered = steered if steered is not None else self.steered
        return {"references": steered.photo_images, "control_images": steered.control_images, "read_files": False}

    def stop(self) -> bool:
        """Ask the run in progress to end after its current step; False when nothing is running."""
        if not self.running:
            return False
        self.cancel.set()
        return True

    @contextmanager
    def _work(self) -> Iterator[threading.Event]:
        """A run (story or clip) with a fresh cancel flag, so an earlier Stop never cancels the next run;
        a run announced by ``expect_run`` keeps the flag a Stop may already have set while it waited."""
        self._refuse_if_busy()
        if not self.expected:
            self.cancel = threading.Event()
        self.running, self.expected = True, False
        try:
            yield self.cancel
        finally:
            self.running = False

    def _refuse_if_busy(self) -> None:
        """One run (story or clip) at a time per session: a second would take the first one's Stop."""
        if self.running and not self.expected:
            raise StoryDiffusionError(
                "this session is already drawing a story, a panel or a clip: wait until it is done, or press Stop"
            )

    def expect_run(self) -> None:
        """A run was asked for and waits for its turn (the GPU queue): a Stop from now on reaches it,
        so Stop pressed before the first step ends the run at once instead of being lost."""
        self.cancel, self.running, self.expected = threading.Event(), True, True

    def run_over(self) -> None:
        """The announced run ended, or never began (its input was refused): nothing is running."""
        self.running = self.expected = False

    def regenerate_panel(
        self,
        pipeline: StoryPipeline,
        index: int,
        prompt: str | None = None,
        seed: int | None = None,
        caption: str | None = None,
        callback: Callable[[Progress], None] | None = None,
        model: str | None = None,
    ) -> PanelImage:
        """Redraw one panel (new seed and/or edited prompt) reading the session's identity bank. ``model``: the
        name the page asks to draw with, which must be the one the story was drawn with (or loaded from).

        A bank that lacks a character of the panel (a project loaded without its bank) first gets that
        character's identity set drawn from ``bank_story``: the same images the run drew, so the redraw
        is the one the session that kept its bank would make, pixel for pixel.
        """
        self._refuse_if_busy()  # a story being drawn has no panels to redraw yet, but says why in its own words
        if self.result is None or self.story is None:
            raise StoryDiffusionError("generate the story first, then regenerate single panels")
        if not 0 <= index < len(self.story.panels):
            raise StoryDiffusionError(no_such_panel(index + 1, len(self.story.panels)))
        if (
            model is not None and self.model and model != self.model
        ):  # its bank and look belong to the model that drew it
            raise StoryDiffusionError(
                f"Model: this story was drawn with {shown_name(self.model)}; choose it again to redraw one panel, "
                f"or press Generate to draw the whole story with {shown_name(model)}"
            )
        try:
            story = self._redrawn_story(index, prompt, seed, caption)
        except StoryError as error:
            raise StoryError(f"Prompt: {error}") from None
        with self._work() as cancel:  # a redraw is a run of the session: one at a time, and Stop reaches it
            bank = self._bank_holding(pipeline, story.panels[index].characters, callback)  # whole, never cut short
            result = pipeline.generate(
                story,
                self.result.settings,
                panels=[index],
                bank=bank,
                callback=callback,
                cancel=cancel,
                keep_masks=_scores_crops(self.result.settings),
                **self._uploads(),
            )
        if result.cancelled:
            raise GenerationCancelled(f"Stopped: panel {index + 1} is as it was.")
        panel = result.panel(index)
        self.story = story
        self.result.story = story
        self.result.panels = sorted(
            [p for p in self.result.panels if p.index != index] + [panel], key=lambda p: p.index
        )
        if result.bank is not None:
            self.result.bank = result.bank
        self.result.warnings = result.warnings
        save_result(self.result, self.run_dir, private=True)
        return panel

    def _redrawn_story(self, index: int, prompt: str | None, seed: int | None, caption: str | None) -> Story:
        """A copy of the story with panel ``index`` given its new seed and, when edited, its new prompt
        and caption (``caption=""`` removes it; None keeps it)."""
        story = Story.from_dict(self.story.to_dict())
        story.settings = self.result.settings
        if prompt is not None and prompt.strip() and prompt.strip() != story.panels[index].prompt:
            edited = story_from_text(story_to_text(story)[0], prompt.strip()).panels[0]
            edited.caption, edited.dialogue = story.panels[index].caption, story.panels[index].dialogue
            edited.control = story.panels[index].control  # a pose stays with its panel through a prompt edit
            story.panels[index] = edited
        story.panels[index].seed = seed if seed is not None else random_seed()
        if caption is not None:
            story.panels[index].caption = caption.strip() or None
        return story

    def _bank_holding(
        self, pipeline: StoryPipeline, names: tuple[str, ...], callback: Callable[[Progress], None] | None = None
    ) -> IdentityBank | None:
        """The session's bank, with the identity sets of ``names`` it lacks drawn in from ``bank_story``
        and kept for later redraws (in modes without a bank: None, as the pipeline expects)."""
        settings = self.result.settings
        if settings.mode != "identity":
            return self.result.bank
        bank = self.result.bank if self.result.bank is not None else IdentityBank()
        source = self.bank_story if self.bank_story is not None else self.story
        panels = _identity_panels_of(source, settings, [name for name in names if name not in bank.characters])
        if panels:
            drawn = pipeline.generate(source, settings, panels=panels, bank=bank, callback=callback, **self._uploads())
            bank = drawn.bank
        self.result.bank = bank
        return bank

    # -- pages and files ----------------------------------------------------------------------
    def retypeset(
        self, layout: str | None = None, story: Story | None = None, export: tuple[str, ...] = EXPORTS
    ) -> ComposeResult:
        """Compose pages again (another layout, edited captions) without touching the images."""
        self.check_typesetting()
        if story is not None:
            self._accept_text_edits(story)
        self.layout = layout or self.layout
        return self._typeset(export)

    def check_typesetting(self) -> None:
        """Pages can be typeset again: some panels are drawn and no run is drawing more (said before the
        page's story boxes are read: with nothing drawn, a mistake in them is not the news)."""
        if self.running:  # a run's panels are typeset when it ends, in the layout chosen last
            raise StoryDiffusionError("the story is being drawn: re-typeset the pages once it is done")
        if self.result is None:
            raise StoryDiffusionError("there are no panels yet: generate the story first")

    def _typeset(self, export: tuple[str, ...] = EXPORTS) -> ComposeResult:
        """The pages and exports of the run folder, in the session's layout."""
        self.pages = compose_run(self.run_dir, layout=self.layout, export=export, direction=self.direction)
        return self.pages

    @property
    def page_warnings(self) -> list[str]:
        """What the last typesetting could not do: characters no bundled font has, text cut short. Not the
        panels a stopped run never drew: its status line says that, in the page's words, not the folder's."""
        return list(self.pages.notes) if self.pages is not None else []

    def typeset_if_drawn(self) -> Downloads:
        """After a run: the pages and files, in the layout chosen last (also while it ran), when it drew any
        panel; a run stopped before its first has none."""
        if self.result is not None and self.result.panels:
            self._typeset()  # not retypeset: that waits for the run, which is ending here
        return self.downloads()

    def choose_layout(self, layout: str) -> ComposeResult | None:
        """The layout picker: checked at once, kept for this session, and the pages typeset again when
        there are panels (before the first run there is nothing to typeset yet, which is no error)."""
        check_options(layout)
        self.layout = layout
        return self.retypeset(layout) if self.result is not None and not self.running else None

    def choose_direction(self, direction: str | None) -> ComposeResult | None:
        """The reading-direction picker ("ltr", "rtl", or None for the layout's own), as ``choose_layout``."""
        check_options(self.layout, direction=direction)
        self.direction = direction
        return self._typeset() if self.result is not None and not self.running else None

    def _accept_text_edits(self, story: Story) -> None:
        """Captions, dialogue and title may change freely; prompts may not (that needs regeneration)."""
        current = self.story
        changed = [n for n, (a, b) in enumerate(zip(story.panels, current.panels), start=1) if a.prompt != b.prompt]
        if changed or len(story.panels) != len(current.panels):
            drawn, typed = len(current.panels), len(story.panels)
            what = (
                f"the prompt of panel {', '.join(map(str, changed))} changed"
                if len(changed) == 1
                else f"the prompts of panels {', '.join(map(str, changed))} changed"
                if changed
                else f"the Story box has {counted(typed, 'panel')}, the drawn story {drawn}"
            )
            raise PromptsChanged(
                f"Story: {what}; re-typesetting only takes new captions, speech and the title. Press Generate "
                "to draw the story as the box has it, or regenerate a changed panel in the panel editor",
                what,
            )
        for mine, theirs in zip(current.panels, story.panels):
            mine.caption, mine.dialogue = theirs.caption, theirs.dialogue
        current.title = story.title
        save_result(self.result, self.run_dir, private=True)

    def animate(
        self,
        transition,
        start: int,
        end: int,
        frames: int = DEFAULT_FRAMES,
        fps: float = DEFAULT_FPS,
        callback=None,
        **settings,
    ):
        """Animate from panel ``start`` to panel ``end`` (1-based): ``run/video/03-04.mp4`` and ``.gif``."""
        from .motion.animate import animate_images

        if self.result is None:
            raise StoryDiffusionError("generate the story first, then animate between two of its panels")
        made = {panel.index + 1: panel for panel in self.result.panels}
        for box, number in (("From panel", start), ("To panel", end)):
            if number not in made:
                raise StoryDiffusionError(
                    f"{box}: there is no panel {number}; choose panels between 1 and {len(self.story.panels)} "
                    "that were generated"
                )
        if start == end:
            raise StoryDiffusionError("To panel: choose a panel other than the From panel to animate between")
        prompt = ", ".join(dict.fromkeys((made[start].prompt, made[end].prompt)))
        with self._work() as cancel:
            return animate_images(
                transition,
                made[start].image,
                made[end].image,
                prompt,
                self.run_dir / VIDEO_DIR,
                frames=frames,
                fps=fps,
                name=f"{start:02d}-{end:02d}",
                callback=callback,
                cancel=cancel,
                **settings,
            )

    def downloads(self) -> Downloads:
        """The composed pages and the PDF, CBZ and panels ZIP, as the page's file widgets take them."""
        return Downloads.of(self.pages, self.home / DOWNLOADS_DIR, self.story.title if self.story else "")


def _scores_crops(settings: GenerationSettings) -> bool:
    """Whether a run keeps its characters' subject masks: when it computes them anyway (subject consistency),
    so that the consistency table scores each character's crop, not only whole panels."""
    return settings.consistency == "subject"


def _identity_panels_of(story: Story, settings: GenerationSettings, names: list[str]) -> list[int]:
    """One panel per character whose drawing draws that character's identity set: its first identity
    panel (drawn in the set itself, at no extra cost), else the first panel that shows it."""
    sets, shown_in = identity_sets(story, settings), story.character_panels()
    panels = [(sets.get(name) or shown_in.get(name) or [None])[0] for name in names]
    return sorted({index for index in panels if index is not None})
