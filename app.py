"""StoryDiffusion studio: the Gradio web UI. Wiring only; every action is a library call.

python app.py                    # the default SDXL model (GPU + internet), else the offline demo
python app.py --offline-demo     # tiny random-weight model, CPU, no downloads
python app.py --share            # a public Gradio link
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from storydiffusion.errors import StoryDiffusionError, is_out_of_memory  # noqa: E402
from storydiffusion.layout.templates import list_templates  # noqa: E402
from storydiffusion.models import default_model_name  # noqa: E402
from storydiffusion.resources import data_path  # noqa: E402
from storydiffusion.settings import GenerationSettings  # noqa: E402
from storydiffusion.story import load_story, story_from_text, story_to_text  # noqa: E402
from storydiffusion.streaming import PanelDone, RunFailed, RunFinished, StepDone  # noqa: E402
from storydiffusion.studio import (  # noqa: E402
    OFFLINE_MODEL,
    OUT_OF_MEMORY_MESSAGE,
    ModelPool,
    StudioSession,
    random_seed,
)
from storydiffusion.styles import load_styles  # noqa: E402

EXAMPLES = data_path("examples")
SYNTAX_HELP = """
**Characters**: one per line, `[Name] description`, e.g. `[Bob] a tall man with red hair and a green jacket`.

**Story**: one panel per line. `[Name]` tags (any number) are replaced by the description; `[NC]` marks a
panel without characters; the caption follows `#`; speech lines `@Name: text` follow the caption.

`[Bob] opens the door, [Alice] waits outside # Late again. @Bob: Sorry! @Alice: Come in.`
"""

try:  # Hugging Face ZeroGPU: GPU work must run inside spaces.GPU; elsewhere this is a no-op.
    import spaces

    gpu_task = spaces.GPU(duration=120)
except ImportError:

    def gpu_task(function):
        return function


def example_texts() -> dict[str, tuple[str, str, str]]:
    """Ready stories from examples/*.yaml as (title, characters text, story text)."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        story = load_story(path)
        found[story.title] = (story.title, *story_to_text(story))
    return found


def friendly(error: BaseException) -> gr.Error:
    """Every failure reaches the page as a readable message, never a traceback."""
    if is_out_of_memory(error):
        return gr.Error(OUT_OF_MEMORY_MESSAGE)
    if isinstance(error, StoryDiffusionError):
        return gr.Error(str(error), print_exception=False)
    return gr.Error(f"Something went wrong: {type(error).__name__}: {error}")


def build_app(pool: ModelPool) -> gr.Blocks:
    styles, default_style = load_styles()
    examples = example_texts()
    templates = list_templates()
    spec = pool.get().spec

    with gr.Blocks(title="StoryDiffusion studio") as demo:
        session = gr.State(lambda: StudioSession(), delete_callback=StudioSession.close)
        gr.Markdown("# StoryDiffusion studio\nCharacter-consistent comics from text, with Consistent Self-Attention.")
        notice = gr.Markdown(
            f"**Note:** {pool.notice}" if pool.notice else "", visible=bool(pool.notice), elem_id="model-notice"
        )
        with gr.Tab("Story"), gr.Row():
            with gr.Column(scale=2):
                title = gr.Textbox(label="Title", value="My story", elem_id="title")
                characters = gr.Textbox(
                    label="Characters",
                    lines=4,
                    elem_id="characters",
                    placeholder="[Bob] a tall man with red hair and a green jacket",
                )
                story_text = gr.Textbox(
                    label="Story (one panel per line)",
                    lines=8,
                    elem_id="story",
                    placeholder="[Bob] opens the door # Late again. @Bob: Sorry!",
                )
                with gr.Accordion("How to write a story", open=False):
                    gr.Markdown(SYNTAX_HELP)
                example = gr.Dropdown(list(examples), label="Examples", value=None, elem_id="examples")
                with gr.Row():
                    style = gr.Dropdown(list(styles), value=default_style, label="Style")
                    model = gr.Dropdown(
                        pool.choices(), value=pool.default_model, label="Model", allow_custom_value=True
                    )
                    layout = gr.Dropdown(templates, value="classic", label="Layout", elem_id="layout")
                with gr.Accordion("Advanced", open=False):
                    negative = gr.Textbox(label="Negative prompt")
                    with gr.Row():
                        steps = gr.Slider(1, 100, value=spec.steps, step=1, label="Steps")
                        guidance = gr.Slider(0, 20, value=spec.guidance, step=0.5, label="Guidance")
                    with gr.Row():
                        width = gr.Slider(64, 2048, value=spec.width, step=64, label="Width")
                        height = gr.Slider(64, 2048, value=spec.height, step=64, label="Height")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed")
                        dice = gr.Button("🎲", scale=0, elem_id="dice")
                    with gr.Row():
                        rate = gr.Slider(0, 1, value=0.5, step=0.05, label="Sampling rate")
                        id_images = gr.Slider(1, 8, value=3, step=1, label="Identity images")
                        window = gr.Slider(1, 16, value=4, step=1, label="Window (panels per batch)")
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=3):
                status = gr.Markdown("", elem_id="status")
                gallery = gr.Gallery(label="Panels", columns=4, height=360, elem_id="panels", type="pil")
                pages = gr.Gallery(label="Comic pages", columns=2, height=640, object_fit="contain", elem_id="pages")
                with gr.Row():
                    pdf = gr.File(label="PDF", elem_id="pdf", interactive=False)
                    cbz = gr.File(label="CBZ", interactive=False)
                    panels_zip = gr.File(label="Panels (ZIP)", interactive=False)
                    project_file = gr.File(label="Project", elem_id="project", interactive=False)
                with gr.Accordion("Change one panel or the lettering", open=False):
                    with gr.Row():
                        panel_number = gr.Number(value=1, precision=0, minimum=1, label="Panel", elem_id="panel-number")
                        panel_prompt = gr.Textbox(label="New prompt (empty: keep it, new seed)", scale=3)
                    regenerate = gr.Button("Regenerate panel", elem_id="regenerate")
                    retypeset = gr.Button("Re-typeset pages (layout, captions, speech)", elem_id="retypeset")
                with gr.Accordion("Save or continue a project", open=False):
                    save = gr.Button("Download project")
                    upload = gr.File(label="Load a project file (.zip)", file_types=[".zip"], elem_id="upload")

        with gr.Tab("Animate", elem_id="animate-tab"):
            gr.Markdown(
                "Animate the transition between two generated panels (AnimateDiff on SD 1.5, conditioned "
                "frame by frame on CLIP image embeddings interpolated by the Semantic Motion Predictor)."
            )
            with gr.Row():
                from_panel = gr.Number(value=1, precision=0, minimum=1, label="From panel", elem_id="from-panel")
                to_panel = gr.Number(value=2, precision=0, minimum=1, label="To panel", elem_id="to-panel")
                frames = gr.Slider(2, 32, value=16, step=1, label="Frames")
                fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second")
            animate = gr.Button("Animate", variant="primary", elem_id="animate")
            animation_note = gr.Markdown(elem_id="animation-note")
            with gr.Row():
                video = gr.Video(label="MP4", elem_id="video", interactive=False)
                gif = gr.Image(label="GIF", type="filepath", elem_id="gif", interactive=False)

        def settings_from(
            style_name,
            negative_text,
            steps_value,
            guidance_value,
            width_value,
            height_value,
            seed_value,
            rate_value,
            id_value,
            window_value,
        ) -> GenerationSettings:
            return GenerationSettings(
                steps=int(steps_value),
                guidance=float(guidance_value),
                width=int(width_value),
                height=int(height_value),
                seed=int(seed_value or 0),
                sampling_rate=float(rate_value),
                id_images=int(id_value),
                window=int(window_value),
                style=style_name,
                negative_prompt=negative_text or "",
            )

        def files_of(state: StudioSession):
            page_images = [str(p) for p in state.pages.pages] if state.pages else []
            files = [state.download(kind) for kind in ("pdf", "cbz", "zip")]
            return page_images, *[str(f) if f else None for f in files]

        @gpu_task
        def run_story(
            state,
            title_text,
            characters_text,
            story_lines,
            style_name,
            model_name,
            layout_name,
            *advanced,
            progress=gr.Progress(),
        ):
            try:
                settings = settings_from(style_name, *advanced)
                story = story_from_text(
                    characters_text, story_lines, title=title_text or "Untitled story", settings=settings
                )
                pipeline = pool.get(model_name)
            except Exception as error:
                raise friendly(error) from None
            finished: list = []
            yield (
                state,
                "Starting…",
                [],
                [],
                None,
                None,
                None,
                gr.update(visible=bool(pool.notice), value=f"**Note:** {pool.notice}"),
            )
            for event in state.generate(pipeline, story, settings, model_name):
                if isinstance(event, StepDone):
                    p = event.progress
                    shown = ", ".join(str(i + 1) for i in p.panels) or "reference portraits"
                    progress(p.fraction, desc=f"Panels {shown}: step {p.step}/{p.steps}")
                elif isinstance(event, PanelDone):
                    finished.append((event.panel.image, f"Panel {event.panel.index + 1}"))
                    finished.sort(key=lambda item: int(item[1].split()[1]))
                    yield (
                        state,
                        f"{len(finished)} of {len(story.panels)} panels done",
                        finished,
                        [],
                        None,
                        None,
                        None,
                        gr.update(),
                    )
                elif isinstance(event, RunFailed):
                    raise friendly(event.error) from None
                elif isinstance(event, RunFinished):
                    try:
                        state.retypeset(layout_name)
                    except Exception as error:
                        raise friendly(error) from None
                    result = event.result
                    words = "Stopped" if result.cancelled else "Done"
                    message = f"{words}: {len(result.panels)} of {len(story.panels)} panels in {result.seconds:.1f} s."
                    if result.warnings:
                        message += "\n\n" + "\n".join(f"- {w}" for w in result.warnings)
                    yield state, message, finished, *files_of(state), gr.update()

        def validate_inputs(title_text, characters_text, story_lines, style_name, *advanced):
            """Checked before the GPU queue, so a typo is reported at once and next to the status line."""
            try:
                settings = settings_from(style_name, *advanced)
                story = story_from_text(
                    characters_text, story_lines, title=title_text or "Untitled story", settings=settings
                )
            except Exception as error:
                raise friendly(error) from None
            return f"Queued: {len(story.panels)} panels, {len(story.characters)} characters."

        @gpu_task
        def animate_panels(state, start, end, frame_count, rate, progress=gr.Progress()):
            try:
                transition = pool.transition()
                result = state.animate(
                    transition,
                    int(start),
                    int(end),
                    int(frame_count),
                    float(rate),
                    callback=lambda p: progress(p.step / max(p.steps, 1), desc=f"Step {p.step}/{p.steps}"),
                )
            except Exception as error:
                raise friendly(error) from None
            note = f"Panels {int(start)} → {int(end)}: {len(result.frames)} frames in {result.seconds:.1f} s ({result.note})."
            return note, str(result.mp4), str(result.gif)

        def stop_run(state: StudioSession):
            state.stop()
            return "Stopping after the current step…"

        @gpu_task
        def regenerate_panel(state, number, prompt, model_name, layout_name):
            try:
                state.regenerate_panel(pool.get(model_name), int(number) - 1, prompt or None)
                state.retypeset(layout_name)
            except Exception as error:
                raise friendly(error) from None
            images = [(p.image, f"Panel {p.index + 1}") for p in state.panels()]
            return state, f"Panel {int(number)} redrawn.", images, *files_of(state)

        def retypeset_pages(state, title_text, characters_text, story_lines, layout_name):
            try:
                edited = story_from_text(characters_text, story_lines, title=title_text or "Untitled story")
                state.retypeset(layout_name, edited)
            except Exception as error:
                raise friendly(error) from None
            return state, f"Pages typeset with the {layout_name} layout.", *files_of(state)

        def save_project(state):
            try:
                return str(state.save_project())
            except Exception as error:
                raise friendly(error) from None

        def load_project_file(state, file, model_name, layout_name):
            if file is None:
                return gr.update()
            try:
                project = state.load_project(file if isinstance(file, str) else file.name, pool.get(model_name))
                state.retypeset(project.layout or layout_name)
            except Exception as error:
                raise friendly(error) from None
            story = project.story
            images = [(p.image, f"Panel {p.index + 1}") for p in state.panels()]
            return (
                state,
                story.title,
                *story_to_text(story),
                project.settings.seed,
                f"Loaded project {story.title!r}: {len(images)} panels.",
                images,
                *files_of(state),
            )

        def pick_example(name):
            if not name:
                return gr.update(), gr.update(), gr.update()
            return examples[name]

        def pick_panel(selected: gr.SelectData):
            """Clicking a panel in the gallery selects it for regeneration (captions read 'Panel N')."""
            caption = (selected.value or {}).get("caption") if isinstance(selected.value, dict) else None
            if caption and caption.split()[-1].isdigit():
                return int(caption.split()[-1])
            return selected.index + 1

        advanced = [negative, steps, guidance, width, height, seed, rate, id_images, window]
        outputs = [session, status, gallery, pages, pdf, cbz, panels_zip, notice]
        checked = generate.click(
            validate_inputs, [title, characters, story_text, style, *advanced], [status], concurrency_limit=None
        )
        checked.success(
            run_story,
            [session, title, characters, story_text, style, model, layout, *advanced],
            outputs,
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        stop.click(stop_run, [session], [status], concurrency_limit=None)
        dice.click(random_seed, None, [seed], queue=False)
        gallery.select(pick_panel, None, [panel_number], queue=False)
        animate.click(
            animate_panels,
            [session, from_panel, to_panel, frames, fps],
            [animation_note, video, gif],
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        example.change(pick_example, [example], [title, characters, story_text], queue=False)
        regenerate.click(
            regenerate_panel,
            [session, panel_number, panel_prompt, model, layout],
            [session, status, gallery, pages, pdf, cbz, panels_zip],
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        retypeset.click(
            retypeset_pages,
            [session, title, characters, story_text, layout],
            [session, status, pages, pdf, cbz, panels_zip],
        )
        layout.change(
            retypeset_pages,
            [session, title, characters, story_text, layout],
            [session, status, pages, pdf, cbz, panels_zip],
        )
        save.click(save_project, [session], [project_file])
        upload.upload(
            load_project_file,
            [session, upload, model, layout],
            [session, title, characters, story_text, seed, status, gallery, pages, pdf, cbz, panels_zip],
        )
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
