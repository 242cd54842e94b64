"""The studio as MCP tools (``python app.py --mcp``): an assistant can draw a comic and re-typeset its pages.

Gradio builds each tool's schema from the type hints and the ``Args:`` section of its docstring, so
the tools below are plain typed methods. An MCP call gets no browser session, so ``generate_story``
returns a run id, and ``compose_pages`` finds that run again by it. Only the last few runs are kept:
an id is unguessable, and the disk a busy server uses stays bounded.
"""

from __future__ import annotations

import functools
import inspect
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable

from . import studio_text as text
from .errors import PromptsChanged, StoryDiffusionError, shown
from .model_pool import ModelPool
from .settings import GenerationSettings
from .story import story_to_text
from .streaming import RunFailed
from .studio import StudioSession
from .studio_errors import shown_on_page
from .styles import load_styles

MAX_KEPT_RUNS = 8  # runs compose_pages can still find; older ones are deleted with their files
RunFiles = dict[str, str | list[str]]


class StudioTools:
    """The MCP tools over one model pool: a story's panels, pages and PDF, and its pages again in another layout."""

    def __init__(self, pool: ModelPool, keep: int = MAX_KEPT_RUNS):
        self.pool = pool
        self.keep = max(1, keep)
        self._runs: OrderedDict[str, StudioSession] = OrderedDict()
        self._lock = threading.Lock()

    def generate_story(
        self,
        title: str,
        characters: str,
        story: str,
        style: str | None = None,
        steps: int | None = None,
        width: int | None = None,
        height: int | None = None,
        seed: int = 0,
        layout: str = "classic",
        direction: str = "",
    ) -> RunFiles:
        """Draw a comic whose characters look the same in every panel, and typeset its pages and PDF.

        Args:
            title: The comic's title, printed on the first page.
            characters: One character per line, "[Name] description", e.g. "[Bob] a tall man with red hair".
            story: One panel per line, "[Name] acts # caption @Name: speech"; [NC] marks a panel without characters.
            style: A style preset such as "comic", "manga" or "none"; empty for the default preset.
            steps: Denoising steps per image; empty for the model's default.
            width: Panel width in pixels, a multiple of 8; empty for the model's default.
            height: Panel height in pixels, a multiple of 8; empty for the model's default.
            seed: The story's seed: the same story, settings and seed draw the same pictures.
            layout: The page template, e.g. "classic", "manga" or "strip".
            direction: "rtl" for pages read right to left (a comic in Hebrew or Arabic), "ltr" for left to right;
                empty for the layout's own (manga reads right to left, the others left to right).

        Returns:
            JSON text: "run", the id to pass to compose_pages; "pages", the page PNG files; "pdf", the comic as a PDF.
        """
        settings = _settings(style, steps, width, height, seed)
        parsed = text.story_from_ui(title, characters, story, settings)
        layout, direction = text.layout_value(layout), text.direction_value(direction or text.AS_THE_LAYOUT)
        session = StudioSession(layout=layout, direction=direction)
        try:
            with self.pool.lease() as pipeline:
                for event in session.generate(pipeline, parsed, settings, self.pool.check_choice(None)):
                    if isinstance(event, RunFailed):
                        raise event.error
            session.typeset_if_drawn()
        except BaseException:
            session.close()
            raise
        return self._files(self._keep(session), session)

    def compose_pages(
        self,
        run: str,
        layout: str = "classic",
        title: str | None = None,
        story: str | None = None,
        direction: str = "",
    ) -> RunFiles:
        """Typeset the pages of a generated comic again, with another layout or edited captions and speech.

        Args:
            run: The run id that generate_story returned.
            layout: The page template, e.g. "classic", "manga" or "strip".
            title: A new title; empty keeps the title.
            story: The story lines with new captions and speech; each panel's picture text must stay as it was.
            direction: "rtl" or "ltr" for pages read right to left or left to right; empty for the layout's own.

        Returns:
            JSON text: "run", the same run id; "pages", the page PNG files; "pdf", the comic as a PDF.
        """
        session = self._session(run)
        layout, direction = text.layout_value(layout), text.direction_value(direction or text.AS_THE_LAYOUT)
        edited = None
        if title or story:
            characters, panels = story_to_text(session.story)
            edited = text.story_from_ui(title or session.story.title, characters, story or panels)
        try:
            session.direction = direction
            session.retypeset(layout, edited)
        except PromptsChanged as error:
            raise StoryDiffusionError(
                f"story: {error.what}; compose_pages only takes new captions, speech and the title: call "
                "generate_story with the new story to draw it"
            ) from None
        return self._files(run, session)

    def close(self) -> None:
        """Delete every kept run and its files."""
        with self._lock:
            sessions, self._runs = list(self._runs.values()), OrderedDict()
        for session in sessions:
            session.close()

    def _keep(self, session: StudioSession) -> str:
        run = secrets.token_urlsafe(12)
        with self._lock:
            self._runs[run] = session
            dropped = [self._runs.popitem(last=False)[1] for _ in range(len(self._runs) - self.keep)]
        for old in dropped:
            old.close()
        return run

    def _session(self, run: str) -> StudioSession:
        with self._lock:
            session = self._runs.get(run) if isinstance(run, str) else None
        if session is None:
            raise StoryDiffusionError(
                f"Run: {shown(run)} is not one of the last {self.keep} runs; call generate_story first"
            )
        return session

    @staticmethod
    def _files(run: str, session: StudioSession) -> RunFiles:
        downloads = session.downloads()
        return {"run": run, "pages": downloads.pages, "pdf": downloads.pdf or ""}


def _settings(
    style: str | None, steps: int | None, width: int | None, height: int | None, seed: int
) -> GenerationSettings:
    """The generation settings of a tool call, each value checked under its name; None keeps the default."""
    numbers = {"steps": steps, "width": width, "height": height, "seed": seed}
    checked = {name: text.setting_value(name, value) for name, value in numbers.items() if value is not None}
    if style is not None and style != "":
        style = text.choice_value("Style", style, list(load_styles()[0]))
    return GenerationSettings(style=style or None).merged(**checked)


def add_mcp_tools(pool: ModelPool) -> StudioTools:
    """Register the tools as API endpoints of the Blocks being built; ``launch(mcp_server=True)`` serves them.

    Generation shares the page's "gpu" queue, so a tool call and a browser's run never draw at once.
    """
    import gradio as gr

    tools = StudioTools(pool)
    gr.api(
        shown_on_page(answered_in_json(tools.generate_story)),
        api_name="generate_story",
        concurrency_limit=pool.concurrency,
        concurrency_id="gpu",
    )
    gr.api(shown_on_page(answered_in_json(tools.compose_pages)), api_name="compose_pages")
    return tools


def answered_in_json(tool: Callable[..., RunFiles]) -> Callable[..., str]:
    """The tool with its files as JSON text: an MCP client reads a tool's answer as text, where Gradio would
    write a mapping in Python's form (single quotes), which no JSON reader takes. Same parameters and docs."""

    @functools.wraps(tool)
    def answered(*args, **kwargs) -> str:
        return json.dumps(tool(*args, **kwargs), ensure_ascii=False)

    answered.__signature__ = inspect.signature(tool).replace(return_annotation=str)
    answered.__annotations__ = {**tool.__annotations__, "return": "str"}
    return answered
