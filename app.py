"""StoryDiffusion studio: the Gradio web UI. Wiring only; every action is a library call.

python app.py                    # the default SDXL model (GPU + internet), else the offline demo
python app.py --offline-demo     # tiny random-weight model, CPU, no downloads
python app.py --share            # a public Gradio link (a shared server: listed models only)
python app.py --help             # every option: custom models, queue size, upload limit
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402

from storydiffusion import studio_text as text  # noqa: E402
from storydiffusion.model_pool import ModelPool  # noqa: E402
from storydiffusion.project import ProjectLimits  # noqa: E402
from storydiffusion.story import story_to_text  # noqa: E402
from storydiffusion.streaming import PanelDone, RunFailed, RunFinished, StepDone  # noqa: E402
from storydiffusion.studio import StudioSession, close_session, random_seed, session_of  # noqa: E402
from storydiffusion.studio_errors import action  # noqa: E402
from storydiffusion.studio_mcp import add_mcp_tools  # noqa: E402
from storydiffusion.studio_server import (  # noqa: E402
    CACHE_MAX_AGE_SECONDS,
    CACHE_SWEEP_SECONDS,
    SESSION_TTL_SECONDS,
    ServerOptions,
    gpu_seconds_for,
    server_options,
)
from storydiffusion.studio_widgets import (  # noqa: E402
    KEYBOARD_SHORTCUTS,
    STUDIO_CSS,
    Studio,
    advanced_settings,
    animate_tab,
    panel_editing,
    project_panel,
    results_panel,
    run_buttons,
    story_inputs,
)

try:  # Hugging Face ZeroGPU: GPU work runs inside spaces.GPU, for a time computed from the work; elsewhere a no-op.
    import spaces

    def gpu_task(function):
        return spaces.GPU(duration=gpu_seconds_for(function))(function)

except ImportError:

    def gpu_task(function):
        return function


def show_filled(event, boxes: list) -> None:
    """After ``event``, show each file box only once it holds a file (a private follow-up, so that the
    event itself returns plain paths, as API clients want them)."""
    event.then(text.shown_if_filled, boxes, boxes, queue=False, api_visibility="private")


def start_if_checked(status: str):
    """The page's gate between the check and the run: a failed check (its line starts with ⚠) stops the
    chain silently (the status line already says why); a passed one turns Generate off and Stop on."""
    if str(status or "").startswith("⚠"):
        raise gr.Error("the story did not pass its check", visible=False, print_exception=False)
    return text.run_buttons(True)


# -- events ------------------------------------------------------------------------------------
# Every event takes its widgets' raw values (preprocess=False) and checks them in the library
# (studio_text), so an API client sending a wrong type gets a message naming the field. The
# session state starts empty; session_of() gives each user (browser or API client) their own.


def remember_story(demo: gr.Blocks, studio: Studio) -> None:
    """Keep the title, characters and story in the browser's own storage, so a reload loses no typing.

    Restored when the page loads; the server keeps nothing of it (the browser stores what it returns).
    """
    boxes = studio.inputs.texts()
    saved = gr.BrowserState(["", "", ""], storage_key="storydiffusion-story")
    gr.on(
        [box.change for box in boxes],
        lambda *texts: list(texts),
        boxes,
        saved,
        queue=False,
        trigger_mode="always_last",
        api_visibility="private",
    )
    demo.load(text.restored_story, [saved], boxes, queue=False, api_visibility="private")


def wire_story_inputs(studio: Studio, examples: dict[str, tuple], door: gr.Button) -> None:
    inputs = studio.inputs
    filled = [*inputs.texts(), inputs.style, studio.advanced.numbers["seed"], inputs.layout]

    def pick_example(name):
        """An example sets everything it needs: the texts, its style and seed, and a layout that suits it."""
        if name is None or name == "":
            return tuple(gr.skip() for _ in filled)
        return examples[text.choice_value("Examples", name, list(examples))]

    action(
        inputs.example.change,
        pick_example,
        [inputs.example],
        filled,
        status=studio.results.status,
        api_name="pick_example",
        api_door=door,
        queue=False,
    )
    studio.advanced.dice.click(random_seed, None, [studio.advanced.numbers["seed"]], queue=False)


def wire_generation(studio: Studio, pool: ModelPool, door: gr.Button) -> None:
    inputs, results = studio.inputs, studio.results

    def check_story(
        title,
        characters,
        story_text,
        style,
        negative,
        steps,
        guidance,
        width,
        height,
        seed,
        sampling_rate,
        id_images,
        window,
    ):
        """Checked before the GPU queue, so a typo is reported at once and next to the status line."""
        numbers = (steps, guidance, width, height, seed, sampling_rate, id_images, window)
        settings = text.settings_from_ui(style, negative, numbers)
        return text.queued_message(text.story_from_ui(title, characters, story_text, settings))

    @gpu_task
    def generate(
        state,
        title,
        characters,
        story_text,
        style,
        model,
        layout,
        negative,
        steps,
        guidance,
        width,
        height,
        seed,
        sampling_rate,
        id_images,
        window,
        progress=gr.Progress(),
    ):
        numbers = (steps, guidance, width, height, seed, sampling_rate, id_images, window)
        settings = text.settings_from_ui(style, negative, numbers)
        story = text.story_from_ui(title, characters, story_text, settings)
        layout = text.layout_value(layout)
        session, pipeline = session_of(state), pool.get(model)
        notice = text.notice_markdown(pool.notice(model))
        nothing = ([], None, None, None)  # a new run: the last run's pages and files go
        yield session, text.STARTING_MESSAGE, [], *nothing, notice
        for event in session.generate(pipeline, story, settings, pool.check_choice(model)):
            if isinstance(event, StepDone):
                progress(event.progress.fraction, desc=text.step_message(event.progress))
            elif isinstance(event, PanelDone):
                done = text.panels_done_message(len(session.panels()), len(story.panels))
                yield session, done, text.gallery_items(session.panels()), *nothing, notice
            elif isinstance(event, RunFailed):
                raise event.error
            elif isinstance(event, RunFinished):
                downloads = session.typeset_if_drawn(layout)  # a run stopped before its first panel has no pages
                finished = text.finished_message(event.result, len(story.panels))
                panels = text.gallery_items(session.panels())
                yield session, finished, panels, *downloads.as_tuple(), notice

    def stop(state: StudioSession | None) -> str:
        stopping = state is not None and state.stop()
        return text.STOPPING_MESSAGE if stopping else text.NOTHING_RUNNING_MESSAGE

    story_widgets = [*inputs.texts(), inputs.style]
    checked = action(
        studio.buttons.generate.click,
        check_story,
        [*story_widgets, *studio.advanced.values()],
        [results.status],
        status=results.status,
        api_name="check_story",
        api_door=door,
        concurrency_limit=None,
    )
    buttons = [studio.buttons.generate, studio.buttons.stop]
    running = checked.success(start_if_checked, [results.status], buttons, queue=False, api_visibility="private")
    run_ended = action(
        running.success,
        generate,
        [studio.session, *story_widgets, inputs.model, inputs.layout, *studio.advanced.values()],
        [studio.session, results.status, results.gallery, *results.downloads(), studio.notice],
        status=results.status,
        api_name="generate",
        api_door=door,
        concurrency_limit=1,
        concurrency_id="gpu",
    ).then(lambda: text.run_buttons(False), None, buttons, queue=False, api_visibility="private")
    show_filled(run_ended, results.files())
    # Stop skips the queue: it must reach a run even when the queue is full.
    studio.buttons.stop.click(stop, [studio.session], [results.status], queue=False, api_name="stop")


def wire_panel_editing(studio: Studio, pool: ModelPool, door: gr.Button) -> None:
    inputs, results, editing = studio.inputs, studio.results, studio.editing

    @gpu_task
    def regenerate_panel(state, number, prompt, model, layout, story_box):
        """Redraw one panel and write its (possibly new) prompt back to the Story box, so that later
        re-typesetting reads the story as it now is."""
        session, number = session_of(state), text.panel_number_from_ui(number)
        prompt, layout = text.text_value("New prompt", prompt), text.layout_value(layout)
        session.regenerate_panel(pool.get(model), number - 1, prompt or None)
        session.retypeset(layout)
        panels = text.gallery_items(session.panels())
        story_box = text.story_box_after_redraw(text.text_value("Story", story_box), session.story, number - 1)
        return session, text.regenerated_message(number), panels, *session.downloads().as_tuple(), story_box

    def retypeset(state, title, characters, story_text, layout):
        session, layout = session_of(state), text.layout_value(layout)
        session.retypeset(layout, text.story_from_ui(title, characters, story_text))
        return session, text.typeset_message(layout), *session.downloads().as_tuple()

    def change_layout(state, layout):
        session, layout = session_of(state), text.layout_value(layout)
        pages = session.choose_layout(layout)
        return (
            session,
            text.layout_chosen_message(layout, pages is not None),
            *session.downloads().as_tuple(),
        )

    def pick_panel(selected: gr.SelectData) -> int:
        """Clicking a panel in the gallery selects it for regeneration."""
        return text.selected_panel_number(selected.index, selected.value)

    studio.results.gallery.select(pick_panel, None, [editing.number], queue=False, api_visibility="private")
    regenerated = action(
        editing.regenerate.click,
        regenerate_panel,
        [studio.session, editing.number, editing.prompt, inputs.model, inputs.layout, inputs.story],
        [studio.session, results.status, results.gallery, *results.downloads(), inputs.story],
        status=results.status,
        api_name="regenerate_panel",
        api_door=door,
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    retypeset_outputs = [studio.session, results.status, *results.downloads()]
    retypeset_click = action(
        editing.retypeset.click,
        retypeset,
        [studio.session, *inputs.texts(), inputs.layout],
        retypeset_outputs,
        status=results.status,
        api_name="retypeset",
        api_door=door,
    )
    layout_changed = action(
        inputs.layout.change,
        change_layout,
        [studio.session, inputs.layout],
        retypeset_outputs,
        status=results.status,
        api_name="change_layout",
        api_door=door,
    )
    for event in (regenerated, retypeset_click, layout_changed):
        show_filled(event, results.files())


def wire_project(studio: Studio, pool: ModelPool, limits: ProjectLimits | None, door: gr.Button) -> None:
    inputs, results = studio.inputs, studio.results

    def save_project(state: StudioSession | None) -> str:
        return str(session_of(state).save_project())

    def load_project(state, path, model, layout):
        """Gradio checks the upload (its size, that it is an uploaded file); the library checks the archive."""
        path = text.uploaded_path("Project", path, get_upload_folder())
        session, layout = session_of(state), text.layout_value(layout)
        project = session.load_project(path, pool.get(model), limits)
        session.retypeset(project.layout or layout)
        panels = session.panels()
        return (
            session,
            project.story.title,
            *story_to_text(project.story),
            project.settings.seed,
            text.loaded_message(project.story, len(panels)),
            text.gallery_items(panels),
            *session.downloads().as_tuple(),
        )

    saved = action(
        studio.project.save.click,
        save_project,
        [studio.session],
        [results.project_file],
        status=results.status,
        api_name="save_project",
        api_door=door,
    )
    show_filled(saved, [results.project_file])
    loaded = action(
        studio.project.upload.upload,
        load_project,
        [studio.session, studio.project.upload, inputs.model, inputs.layout],
        [
            studio.session,
            *inputs.texts(),
            studio.advanced.numbers["seed"],
            results.status,
            results.gallery,
            *results.downloads(),
        ],
        status=results.status,
        api_name="load_project",
        api_door=door,
    )
    show_filled(loaded, results.files())


def wire_animate(studio: Studio, pool: ModelPool, door: gr.Button) -> None:
    tab = studio.animate

    @gpu_task
    def animate(state, from_panel, to_panel, frames, fps, progress=gr.Progress()):
        start = text.panel_number_from_ui(from_panel, "From panel")
        end = text.panel_number_from_ui(to_panel, "To panel")
        frames, fps = text.setting_value("frames", frames), text.setting_value("fps", fps)
        result = session_of(state).animate(
            pool.transition(),
            start,
            end,
            frames,
            fps,
            callback=lambda step: progress(*text.animation_progress(step.step, step.steps)),
        )
        return text.animation_note(start, end, result), str(result.mp4), str(result.gif)

    action(
        tab.animate.click,
        animate,
        [studio.session, tab.from_panel, tab.to_panel, tab.frames, tab.fps],
        [tab.note, tab.video, tab.gif],
        status=tab.note,
        api_name="animate",
        api_door=door,
        concurrency_limit=1,
        concurrency_id="gpu",
    )


# -- the page ------------------------------------------------------------------------------------


def build_app(pool: ModelPool, project_limits: ProjectLimits | None = None, mcp: bool = False) -> gr.Blocks:
    """The studio page for ``pool``'s default model (loaded here, so the page knows its defaults and notice);
    with ``mcp``, also the typed tools an MCP client calls (docs/mcp.md)."""
    spec = pool.get().spec
    examples = text.example_stories()
    delete_cache = (CACHE_SWEEP_SECONDS, CACHE_MAX_AGE_SECONDS)
    with gr.Blocks(title="StoryDiffusion studio", delete_cache=delete_cache) as demo:
        session = gr.State(None, time_to_live=SESSION_TTL_SECONDS, delete_callback=close_session)
        gr.Markdown("# StoryDiffusion studio\nCharacter-consistent comics from text, with Consistent Self-Attention.")
        banner = gr.Markdown(text.notice_markdown(pool.notice()), label="Model notice", elem_id="model-notice")
        with gr.Tab("Story"), gr.Row():
            with gr.Column(scale=2):
                inputs = story_inputs(pool, list(examples))
                advanced = advanced_settings(spec)
                buttons = run_buttons()
            with gr.Column(scale=3):
                results = results_panel()
                editing = panel_editing()
                project = project_panel()
        with gr.Tab("Animate", elem_id="animate-tab"):
            animate = animate_tab()
        studio = Studio(session, banner, inputs, advanced, buttons, results, editing, project, animate)
        remember_story(demo, studio)
        door = gr.Button(visible=False, elem_id="api-door")  # the API's door to every action; never clicked
        wire_story_inputs(studio, examples, door)
        wire_generation(studio, pool, door)
        wire_panel_editing(studio, pool, door)
        wire_project(studio, pool, project_limits, door)
        wire_animate(studio, pool, door)
        if mcp:
            add_mcp_tools(pool)
    return demo


def make_app(options: ServerOptions, pool: ModelPool | None = None) -> gr.Blocks:
    """The page with its queue: one GPU job at a time, at most ``options.max_queue`` waiting (more are told so)."""
    pool = pool or ModelPool(options.model, device=options.device, allow_custom=options.allow_custom_models)
    return build_app(pool, options.project_limits(), mcp=options.mcp).queue(
        default_concurrency_limit=1, max_size=options.max_queue
    )


def main(argv: list[str] | None = None) -> None:
    options = server_options(argv)
    make_app(options).launch(**options.launch_options(), js=KEYBOARD_SHORTCUTS, css=STUDIO_CSS)


if __name__ == "__main__":
    main()
