"""StoryDiffusion studio: the Gradio web UI. Wiring only; every action is a library call.

python app.py                    # the default SDXL model (GPU + internet), else the offline demo
python app.py --offline-demo     # tiny random-weight model, CPU, no downloads
python app.py --share            # a public Gradio link
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from storydiffusion import studio_text as text  # noqa: E402
from storydiffusion.layout.templates import list_templates  # noqa: E402
from storydiffusion.models import ModelSpec, default_model_name  # noqa: E402
from storydiffusion.settings import DEFAULT_FPS, DEFAULT_FRAMES, SETTING_RANGES  # noqa: E402
from storydiffusion.story import story_to_text  # noqa: E402
from storydiffusion.streaming import PanelDone, RunFailed, RunFinished, StepDone  # noqa: E402
from storydiffusion.studio import OFFLINE_MODEL, ModelPool, StudioSession, random_seed  # noqa: E402
from storydiffusion.studio_errors import shown_on_page  # noqa: E402
from storydiffusion.styles import load_styles  # noqa: E402

try:  # Hugging Face ZeroGPU: GPU work must run inside spaces.GPU; elsewhere this is a no-op.
    import spaces

    gpu_task = spaces.GPU(duration=120)
except ImportError:

    def gpu_task(function):
        return function


def setting_id(name: str) -> str:
    """The page id of a setting's widget: ``sampling_rate`` -> ``#sampling-rate``."""
    return name.replace("_", "-")


def setting_slider(name: str, value: float) -> gr.Slider:
    """A slider over exactly the range validation accepts (settings.SETTING_RANGES)."""
    allowed = SETTING_RANGES[name]
    return gr.Slider(
        allowed.low,
        allowed.ui_maximum,
        value=value,
        step=allowed.step,
        label=text.SETTING_LABELS[name],
        elem_id=setting_id(name),
    )


# -- components, one function per panel ------------------------------------------------------


@dataclass
class StoryInputs:
    title: gr.Textbox
    characters: gr.Textbox
    story: gr.Textbox
    example: gr.Dropdown
    style: gr.Dropdown
    model: gr.Dropdown
    layout: gr.Dropdown

    def texts(self) -> list[gr.Textbox]:
        return [self.title, self.characters, self.story]


@dataclass
class AdvancedSettings:
    negative: gr.Textbox
    numbers: dict[str, gr.Slider | gr.Number]  # by setting name, in the order of text.UI_SETTINGS
    dice: gr.Button

    def values(self) -> list:
        """The widgets whose values ``text.settings_from_ui`` reads after the style: negative prompt, then numbers."""
        return [self.negative, *(self.numbers[name] for name in text.UI_SETTINGS)]


@dataclass
class RunButtons:
    generate: gr.Button
    stop: gr.Button


@dataclass
class Results:
    status: gr.Markdown
    gallery: gr.Gallery
    pages: gr.Gallery
    pdf: gr.File
    cbz: gr.File
    panels_zip: gr.File
    project_file: gr.File

    def downloads(self) -> list:
        """The widgets filled by ``StudioSession.downloads()``, in its order."""
        return [self.pages, self.pdf, self.cbz, self.panels_zip]


@dataclass
class PanelEditing:
    number: gr.Number
    prompt: gr.Textbox
    regenerate: gr.Button
    retypeset: gr.Button


@dataclass
class ProjectFiles:
    save: gr.Button
    upload: gr.File


@dataclass
class AnimateTab:
    from_panel: gr.Number
    to_panel: gr.Number
    frames: gr.Slider
    fps: gr.Slider
    animate: gr.Button
    note: gr.Markdown
    video: gr.Video
    gif: gr.Image


@dataclass
class Studio:
    session: gr.State
    notice: gr.Markdown
    inputs: StoryInputs
    advanced: AdvancedSettings
    buttons: RunButtons
    results: Results
    editing: PanelEditing
    project: ProjectFiles
    animate: AnimateTab


def story_inputs(pool: ModelPool, examples: list[str]) -> StoryInputs:
    title = gr.Textbox(label="Title", value="My story", elem_id="title")
    characters = gr.Textbox(
        label="Characters",
        lines=4,
        elem_id="characters",
        placeholder="[Bob] a tall man with red hair and a green jacket",
    )
    story = gr.Textbox(
        label="Story (one panel per line)",
        lines=8,
        elem_id="story",
        placeholder="[Bob] opens the door # Late again. @Bob: Sorry!",
    )
    with gr.Accordion("How to write a story", open=False):
        gr.Markdown(text.SYNTAX_HELP)
    example = gr.Dropdown(examples, label="Examples", value=None, elem_id="examples")
    styles, default_style = load_styles()
    with gr.Row():
        style = gr.Dropdown(list(styles), value=default_style, label="Style")
        model = gr.Dropdown(pool.choices(), value=pool.default_model, label="Model", allow_custom_value=True)
        layout = gr.Dropdown(list_templates(), value="classic", label="Layout", elem_id="layout")
    return StoryInputs(title, characters, story, example, style, model, layout)


def advanced_settings(spec: ModelSpec) -> AdvancedSettings:
    """The numeric settings, each over its range in SETTING_RANGES, starting at the model's defaults."""
    seed_range = SETTING_RANGES["seed"]
    with gr.Accordion("Advanced", open=False):
        negative = gr.Textbox(label="Negative prompt")
        with gr.Row():
            steps = setting_slider("steps", spec.steps)
            guidance = setting_slider("guidance", spec.guidance)
        with gr.Row():
            width = setting_slider("width", spec.width)
            height = setting_slider("height", spec.height)
        with gr.Row():
            seed = gr.Number(
                value=0,
                precision=0,
                minimum=seed_range.low,
                maximum=seed_range.ui_maximum,
                label="Seed",
                elem_id="seed",
            )
            dice = gr.Button("🎲", scale=0, elem_id="dice")
        with gr.Row():
            sampling_rate = setting_slider("sampling_rate", 0.5)
            id_images = setting_slider("id_images", 3)
            window = setting_slider("window", 4)
    numbers = dict(zip(text.UI_SETTINGS, (steps, guidance, width, height, seed, sampling_rate, id_images, window)))
    return AdvancedSettings(negative, numbers, dice)


def run_buttons() -> RunButtons:
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    return RunButtons(generate, stop)


def results_panel() -> Results:
    status = gr.Markdown("", elem_id="status")
    gallery = gr.Gallery(label="Panels", columns=4, height=360, elem_id="panels", type="pil")
    pages = gr.Gallery(label="Comic pages", columns=2, height=640, object_fit="contain", elem_id="pages")
    with gr.Row():
        pdf = gr.File(label="PDF", elem_id="pdf", interactive=False)
        cbz = gr.File(label="CBZ", interactive=False)
        panels_zip = gr.File(label="Panels (ZIP)", interactive=False)
        project_file = gr.File(label="Project", elem_id="project", interactive=False)
    return Results(status, gallery, pages, pdf, cbz, panels_zip, project_file)


def panel_editing() -> PanelEditing:
    with gr.Accordion("Change one panel or the lettering", open=False):
        with gr.Row():
            number = gr.Number(value=1, precision=0, minimum=1, label="Panel", elem_id="panel-number")
            prompt = gr.Textbox(label="New prompt (empty: keep it, new seed)", scale=3)
        regenerate = gr.Button("Regenerate panel", elem_id="regenerate")
        retypeset = gr.Button("Re-typeset pages (layout, captions, speech)", elem_id="retypeset")
    return PanelEditing(number, prompt, regenerate, retypeset)


def project_panel() -> ProjectFiles:
    with gr.Accordion("Save or continue a project", open=False):
        save = gr.Button("Download project")
        upload = gr.File(label="Load a project file (.zip)", file_types=[".zip"], type="filepath", elem_id="upload")
    return ProjectFiles(save, upload)


def animate_tab() -> AnimateTab:
    gr.Markdown(
        "Animate the transition between two generated panels (AnimateDiff on SD 1.5, conditioned "
        "frame by frame on CLIP image embeddings interpolated by the Semantic Motion Predictor)."
    )
    with gr.Row():
        from_panel = gr.Number(value=1, precision=0, minimum=1, label="From panel", elem_id="from-panel")
        to_panel = gr.Number(value=2, precision=0, minimum=1, label="To panel", elem_id="to-panel")
        frames = setting_slider("frames", DEFAULT_FRAMES)
        fps = setting_slider("fps", DEFAULT_FPS)
    animate = gr.Button("Animate", variant="primary", elem_id="animate")
    note = gr.Markdown(elem_id="animation-note")
    with gr.Row():
        video = gr.Video(label="MP4", elem_id="video", interactive=False)
        gif = gr.Image(label="GIF", type="filepath", elem_id="gif", interactive=False)
    return AnimateTab(from_panel, to_panel, frames, fps, animate, note, video, gif)


# -- events ------------------------------------------------------------------------------------


def wire_story_inputs(studio: Studio, examples: dict[str, tuple[str, str, str]]) -> None:
    def pick_example(name: str | None):
        return examples[name] if name else (gr.update(), gr.update(), gr.update())

    studio.inputs.example.change(pick_example, [studio.inputs.example], studio.inputs.texts(), queue=False)
    studio.advanced.dice.click(random_seed, None, [studio.advanced.numbers["seed"]], queue=False)


def wire_generation(studio: Studio, pool: ModelPool) -> None:
    inputs, results = studio.inputs, studio.results

    @shown_on_page
    def check_story(title, characters, story_text, style, negative, *numbers):
        """Checked before the GPU queue, so a typo is reported at once and next to the status line."""
        return text.queued_message(
            text.story_from_ui(title, characters, story_text, text.settings_from_ui(style, negative, numbers))
        )

    @gpu_task
    @shown_on_page
    def run_story(
        state, title, characters, story_text, style, model, layout, negative, *numbers, progress=gr.Progress()
    ):
        settings = text.settings_from_ui(style, negative, numbers)
        story = text.story_from_ui(title, characters, story_text, settings)
        pipeline = pool.get(model)
        notice = gr.update(visible=bool(pool.notice), value=text.notice_markdown(pool.notice))
        yield state, text.STARTING_MESSAGE, [], [], None, None, None, notice
        for event in state.generate(pipeline, story, settings, model):
            if isinstance(event, StepDone):
                progress(event.progress.fraction, desc=text.step_message(event.progress))
            elif isinstance(event, PanelDone):
                done = text.panels_done_message(len(state.panels()), len(story.panels))
                yield state, done, text.gallery_items(state.panels()), [], None, None, None, gr.update()
            elif isinstance(event, RunFailed):
                raise event.error
            elif isinstance(event, RunFinished):
                state.retypeset(layout)
                finished = text.finished_message(event.result, len(story.panels))
                yield state, finished, text.gallery_items(state.panels()), *state.downloads().as_tuple(), gr.update()

    def stop_run(state: StudioSession) -> str:
        state.stop()
        return text.STOPPING_MESSAGE

    checked = studio.buttons.generate.click(
        check_story,
        [*inputs.texts(), inputs.style, *studio.advanced.values()],
        [results.status],
        concurrency_limit=None,
    )
    checked.success(
        run_story,
        [studio.session, *inputs.texts(), inputs.style, inputs.model, inputs.layout, *studio.advanced.values()],
        [studio.session, results.status, results.gallery, *results.downloads(), studio.notice],
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    studio.buttons.stop.click(stop_run, [studio.session], [results.status], concurrency_limit=None)


def wire_panel_editing(studio: Studio, pool: ModelPool) -> None:
    inputs, results, editing = studio.inputs, studio.results, studio.editing

    @gpu_task
    @shown_on_page
    def regenerate_panel(state, number, prompt, model, layout):
        number = text.panel_number_from_ui(number)
        state.regenerate_panel(pool.get(model), number - 1, prompt or None)
        state.retypeset(layout)
        return (
            state,
            text.regenerated_message(number),
            text.gallery_items(state.panels()),
            *state.downloads().as_tuple(),
        )

    @shown_on_page
    def retypeset_pages(state, title, characters, story_text, layout):
        state.retypeset(layout, text.story_from_ui(title, characters, story_text))
        return state, text.typeset_message(layout), *state.downloads().as_tuple()

    @shown_on_page
    def change_layout(state, layout):
        pages = state.choose_layout(layout)
        return state, text.layout_chosen_message(layout, pages is not None), *state.downloads().as_tuple()

    def pick_panel(selected: gr.SelectData) -> int:
        """Clicking a panel in the gallery selects it for regeneration."""
        return text.selected_panel_number(selected.index, selected.value)

    studio.results.gallery.select(pick_panel, None, [editing.number], queue=False)
    editing.regenerate.click(
        regenerate_panel,
        [studio.session, editing.number, editing.prompt, inputs.model, inputs.layout],
        [studio.session, results.status, results.gallery, *results.downloads()],
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    retypeset_inputs = [studio.session, *inputs.texts(), inputs.layout]
    retypeset_outputs = [studio.session, results.status, *results.downloads()]
    editing.retypeset.click(retypeset_pages, retypeset_inputs, retypeset_outputs)
    inputs.layout.change(change_layout, [studio.session, inputs.layout], retypeset_outputs)


def wire_project(studio: Studio, pool: ModelPool) -> None:
    inputs, results = studio.inputs, studio.results

    @shown_on_page
    def save_project(state: StudioSession) -> str:
        return str(state.save_project())

    @shown_on_page
    def load_project_file(state, path, model, layout):
        project = state.load_project(path, pool.get(model))
        state.retypeset(project.layout or layout)
        panels = state.panels()
        return (
            state,
            project.story.title,
            *story_to_text(project.story),
            project.settings.seed,
            text.loaded_message(project.story, len(panels)),
            text.gallery_items(panels),
            *state.downloads().as_tuple(),
        )

    studio.project.save.click(save_project, [studio.session], [results.project_file])
    studio.project.upload.upload(
        load_project_file,
        [studio.session, studio.project.upload, inputs.model, inputs.layout],
        [
            studio.session,
            *inputs.texts(),
            studio.advanced.numbers["seed"],
            results.status,
            results.gallery,
            *results.downloads(),
        ],
    )


def wire_animate(studio: Studio, pool: ModelPool) -> None:
    tab = studio.animate

    @gpu_task
    @shown_on_page
    def animate_panels(state, start, end, frames, fps, progress=gr.Progress()):
        start, end = text.panel_number_from_ui(start, "From panel"), text.panel_number_from_ui(end, "To panel")
        result = state.animate(
            pool.transition(),
            start,
            end,
            text.setting_value("frames", frames),
            text.setting_value("fps", fps),
            callback=lambda step: progress(*text.animation_progress(step.step, step.steps)),
        )
        return text.animation_note(start, end, result), str(result.mp4), str(result.gif)

    tab.animate.click(
        animate_panels,
        [studio.session, tab.from_panel, tab.to_panel, tab.frames, tab.fps],
        [tab.note, tab.video, tab.gif],
        concurrency_limit=1,
        concurrency_id="gpu",
    )


# -- the page ------------------------------------------------------------------------------------


def build_app(pool: ModelPool) -> gr.Blocks:
    """The studio page for ``pool``'s default model (loaded here, so the page knows its defaults and notice)."""
    spec = pool.get().spec
    examples = text.example_stories()
    with gr.Blocks(title="StoryDiffusion studio") as demo:
        session = gr.State(lambda: StudioSession(), delete_callback=StudioSession.close)
        gr.Markdown("# StoryDiffusion studio\nCharacter-consistent comics from text, with Consistent Self-Attention.")
        notice = gr.Markdown(text.notice_markdown(pool.notice), visible=bool(pool.notice), elem_id="model-notice")
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
        studio = Studio(session, notice, inputs, advanced, buttons, results, editing, project, animate)
        wire_story_inputs(studio, examples)
        wire_generation(studio, pool)
        wire_panel_editing(studio, pool)
        wire_project(studio, pool)
        wire_animate(studio, pool)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="StoryDiffusion studio web app")
    parser.add_argument(
        "--model", help="registry name, hub id, local folder or .safetensors file (default: configs/models.yaml)"
    )
    parser.add_argument("--offline-demo", action="store_true", help=f"use the tiny offline model {OFFLINE_MODEL!r}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public Gradio link")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    model = OFFLINE_MODEL if args.offline_demo else (args.model or default_model_name())
    pool = ModelPool(model, device="cpu" if args.offline_demo else args.device)
    demo = build_app(pool)
    demo.queue(default_concurrency_limit=1, max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=False)


if __name__ == "__main__":
    main()
