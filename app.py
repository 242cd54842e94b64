"""StoryDiffusion studio: the Gradio web UI. The page only; its events are in storydiffusion/studio_events.py.

python app.py                    # the default SDXL model (GPU + internet), else the offline demo
python app.py --offline-demo     # tiny random-weight model, CPU, no downloads
python app.py --share            # a public Gradio link (a shared server: listed models only)
python app.py --help             # every option: custom models, queue size, upload limit
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from storydiffusion import studio_status as run_status  # noqa: E402
from storydiffusion.model_pool import ModelPool  # noqa: E402
from storydiffusion.project import ProjectLimits  # noqa: E402
from storydiffusion.studio import close_session  # noqa: E402
from storydiffusion.studio_events import (  # noqa: E402
    remember_story,
    wire_animate,
    wire_panel_editing,
    wire_story_inputs,
)
from storydiffusion.studio_examples import example_stories  # noqa: E402
from storydiffusion.studio_generation import wire_generation  # noqa: E402
from storydiffusion.studio_mcp import add_mcp_tools  # noqa: E402
from storydiffusion.studio_page_code import PAGE_SCRIPT, STUDIO_CSS  # noqa: E402
from storydiffusion.studio_parts import Studio  # noqa: E402
from storydiffusion.studio_project_events import wire_project  # noqa: E402
from storydiffusion.studio_reading import wire_reading  # noqa: E402
from storydiffusion.studio_scores import StoryScorer, wire_scores  # noqa: E402
from storydiffusion.studio_server import (  # noqa: E402
    CACHE_MAX_AGE_SECONDS,
    CACHE_SWEEP_SECONDS,
    SESSION_TTL_SECONDS,
    ServerOptions,
    server_options,
)
from storydiffusion.studio_widgets import (  # noqa: E402
    advanced_settings,
    animate_tab,
    panel_editing,
    project_panel,
    results_panel,
    run_buttons,
    status_line,
    steering_inputs,
    story_inputs,
)

# -- the page ------------------------------------------------------------------------------------


def build_app(
    pool: ModelPool,
    project_limits: ProjectLimits | None = None,
    mcp: bool = False,
    scorer: StoryScorer | None = None,
) -> gr.Blocks:
    """The studio page for ``pool``'s default model (loaded here, so the page knows its defaults and notice);
    with ``mcp``, also the typed tools an MCP client calls (docs/mcp.md); with ``scorer``, the consistency
    table beside the pages."""
    spec = pool.get().spec
    examples = example_stories()
    delete_cache = (CACHE_SWEEP_SECONDS, CACHE_MAX_AGE_SECONDS)
    with gr.Blocks(title="StoryDiffusion studio", delete_cache=delete_cache) as demo:
        session = gr.State(None, time_to_live=SESSION_TTL_SECONDS, delete_callback=close_session)
        gr.Markdown("# StoryDiffusion studio\nCharacter-consistent comics from text, with Consistent Self-Attention.")
        banner = gr.Markdown(run_status.notice_markdown(pool.notice()), label="Model notice", elem_id="model-notice")
        with gr.Tab("Story"), gr.Row():
            with gr.Column(scale=2):
                inputs = story_inputs(pool, list(examples))
                steering = steering_inputs()
                advanced = advanced_settings(spec, pool.highest)
                buttons = run_buttons()
                status = status_line()
            with gr.Column(scale=3):
                results = results_panel(status)
                editing = panel_editing()
                project = project_panel()
        with gr.Tab("Animate", elem_id="animate-tab"):
            animate = animate_tab()
        studio = Studio(session, banner, inputs, steering, advanced, buttons, results, editing, project, animate)
        remember_story(demo, studio)
        door = gr.Button(visible=False, elem_id="api-door")  # the API's door to every action; never clicked
        wire_story_inputs(studio, examples, door)
        run_ended = wire_generation(studio, pool, door, demo.upload_file_set)
        redrawn = wire_panel_editing(studio, pool, door)
        loaded = wire_project(studio, pool, project_limits, door, demo.upload_file_set)
        wire_scores(results.scores, session, scorer or StoryScorer(None), [run_ended, redrawn, loaded], door)
        wire_animate(studio, pool, door)
        wire_reading(studio)
        if mcp:
            add_mcp_tools(pool)
    return demo


def make_app(options: ServerOptions, pool: ModelPool | None = None) -> gr.Blocks:
    """The page with its queue: one GPU job at a time, at most ``options.max_queue`` waiting (more are told so)."""
    pool = pool or ModelPool(options.model, **options.pool_options())
    scorer = StoryScorer(options.scores_encoder, "cpu" if options.device == "cpu" else "auto")
    return build_app(pool, options.project_limits(), mcp=options.mcp, scorer=scorer).queue(
        default_concurrency_limit=1, max_size=options.max_queue
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # server log
    logging.getLogger("storydiffusion").setLevel(logging.INFO)  # models loaded and unloaded, too
    options = server_options(argv)
    make_app(options).launch(**options.launch_options(), js=PAGE_SCRIPT, css=STUDIO_CSS)


if __name__ == "__main__":
    main()
