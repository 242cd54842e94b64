"""The studio page's widgets: one function per panel of the page, each returning its components.

Declarations only (labels, ranges from SETTING_RANGES, element ids the browser tests use); what the
widgets do is wired in ``app.py`` and done by the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
from gradio.data_classes import FileData, GradioRootModel

from . import studio_text as text
from .layout.template_files import list_templates
from .model_pool import ModelPool
from .models import ModelSpec
from .settings import DEFAULT_FPS, DEFAULT_FRAMES, SETTING_RANGES
from .story.control import DEFAULT_CONTROL_SCALE
from .story.model import DEFAULT_REFERENCE_SCALE
from .studio_page_code import ZOOM_LEAST, ZOOM_MOST
from .studio_parts import (
    AdvancedSettings,
    AnimateTab,
    PageViewer,
    PanelEditing,
    ProjectFiles,
    Results,
    RunButtons,
    Steering,
    StoryInputs,
)
from .styles import load_styles

SCORE_COLUMNS = ["Character", "Panels", "CLIP-I", "Crop"]  # the consistency table (studio_scores)


def setting_id(name: str) -> str:
    """The page id of a setting's widget: ``sampling_rate`` -> ``#sampling-rate``."""
    return name.replace("_", "-")


def setting_slider(name: str, value: float, high: float | None = None) -> gr.Slider:
    """A slider over exactly the range validation accepts (settings.SETTING_RANGES), up to ``high`` when the
    server's limits stop it lower (``WorkLimits``)."""
    allowed = SETTING_RANGES[name]
    high = allowed.high if high is None else high
    return gr.Slider(
        allowed.low,
        high,
        value=min(value, high),
        step=allowed.step,
        label=text.SETTING_LABELS[name],
        elem_id=setting_id(name),
    )


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
        style = gr.Dropdown(list(styles), value=default_style, label="Style", elem_id="style")
        model = gr.Dropdown(
            pool.choices(), value=pool.default_model, label="Model", allow_custom_value=pool.allow_custom
        )
        layout = gr.Dropdown(list_templates(), value="classic", label="Layout", elem_id="layout")
        direction = gr.Radio(
            text.DIRECTION_CHOICES,
            value=text.AS_THE_LAYOUT,
            label=text.DIRECTION_LABEL,
            info="manga and comics in Hebrew or Arabic read right to left",
            elem_id="direction",
        )
    return StoryInputs(title, characters, story, example, style, model, layout, direction)


def advanced_settings(spec: ModelSpec, highest: Callable[[str], float] | None = None) -> AdvancedSettings:
    """The numeric settings, each over its range in SETTING_RANGES (up to ``highest(name)`` where the server
    allows less), starting at the model's defaults."""
    highest = highest or (lambda name: SETTING_RANGES[name].high)
    seed_range = SETTING_RANGES["seed"]
    with gr.Accordion("Advanced", open=False):
        negative = gr.Textbox(label="Negative prompt")
        with gr.Row():
            steps = setting_slider("steps", spec.steps, highest("steps"))
            guidance = setting_slider("guidance", spec.guidance)
        with gr.Row():
            width = setting_slider("width", spec.width, highest("width"))
            height = setting_slider("height", spec.height, highest("height"))
        with gr.Row():
            # Text, not a number box: a browser's numbers hold integers exactly only up to 2**53, seeds go to 2**63.
            seed = gr.Textbox("0", label="Seed", max_lines=1, elem_id="seed", info=f"0 to {seed_range.high}")
            dice = gr.Button("🎲 Random seed", scale=0, elem_id="dice")
        with gr.Row():
            sampling_rate = setting_slider("sampling_rate", 0.5)
            id_images = setting_slider("id_images", 3)
            window = setting_slider("window", 4)
        consistency = gr.Radio(
            [("every token (uniform)", "uniform"), ("characters only (subject)", "subject")],
            value="uniform",
            label=text.CONSISTENCY_LABEL,
            info="subject: panels share only the tokens that show the characters, so backgrounds do not bleed",
            elem_id="consistency",
        )
    numbers = dict(zip(text.UI_SETTINGS, (steps, guidance, width, height, seed, sampling_rate, id_images, window)))
    return AdvancedSettings(negative, numbers, dice, consistency)


def image_uploads(label: str, elem_id: str) -> gr.File:
    """A box for several images, its raw values checked by the studio itself (``studio_uploads``). No
    ``file_types``: the browser would refuse another file with a bare "Error" badge and a passing toast,
    where the studio names the file and says what it takes."""
    upload = gr.File(label=label, file_count="multiple", type="filepath", elem_id=elem_id)
    upload.data_model = AnyUploadValue
    return upload


def steering_inputs() -> Steering:
    """Reference photos (file named after the character) and control images (named after panel and kind)."""
    with gr.Accordion("Reference photos and poses", open=False, elem_id="steering"):
        table = gr.Dataframe(
            headers=["Character", "Description", "Reference photo"],
            value=[],
            interactive=False,
            label="Characters",
            column_widths=["22%", "53%", "25%"],
            wrap=True,
            elem_id="characters-table",
        )
        gr.Markdown(
            "Name each **photo** after its character (`Nora.png`), each **control image** after its panel "
            "and kind (`3-openpose.png`, `5-canny.jpg`, `7-depth.png`).",
            elem_id="steering-help",
        )
        photos = image_uploads("Reference photos", "reference-photos")
        controls = image_uploads("Control images", "control-images")
        status = gr.Markdown("", label="Uploads status", elem_id="steering-status", latex_delimiters=[])
        photo_adapter = gr.Radio(
            [("the whole photo", "image"), ("the face (FaceID)", "face")],
            value="image",
            label=text.PHOTO_ADAPTER_LABEL,
            info="face: only the identity of the photo's face steers, not its clothes, light or background",
            elem_id="photo-adapter",
        )
        with gr.Row():
            photo_scale = setting_slider("reference_scale", DEFAULT_REFERENCE_SCALE)
            control_scale = setting_slider("control_scale", DEFAULT_CONTROL_SCALE)
    return Steering(photos, photo_scale, controls, control_scale, table, photo_adapter, status)


def run_buttons() -> RunButtons:
    with gr.Row():
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        stop = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False)  # on only while a run goes
    return RunButtons(generate, stop)


def page_viewer() -> PageViewer:
    """The reading direction of the layout, and one page at a time at the size the reader chooses."""
    direction = gr.Markdown(text.reading_direction("classic"), label="Reading direction", elem_id="reading-direction")
    with gr.Accordion("Read a page (click a page above)", open=False, elem_id="page-viewer") as viewer:
        zoom = gr.Slider(
            ZOOM_LEAST, ZOOM_MOST, value=100, step=10, label="Zoom (% of the view's width)", elem_id="zoom"
        )
        page = gr.Image(
            label="Page", type="filepath", interactive=False, height=720, elem_id="page-view", show_label=False
        )
    return PageViewer(direction, viewer, page, zoom)


def status_line() -> gr.Markdown:
    """The run's status, right under Generate and Stop: progress, results and every failure of a run."""
    return gr.Markdown("", label="Status", elem_id="status", latex_delimiters=[])


def results_panel(status: gr.Markdown) -> Results:
    gallery = gr.Gallery(label="Panels", columns=4, height=360, elem_id="panels", type="pil")
    pages = gr.Gallery(label="Comic pages", columns=2, height=640, object_fit="contain", elem_id="pages")
    reading = page_viewer()
    with gr.Row():
        # Hidden until there is a file to offer (shown by studio_text.shown_downloads).
        pdf = gr.File(label="PDF", elem_id="pdf", interactive=False, visible=False)
        cbz = gr.File(label="CBZ", elem_id="cbz", interactive=False, visible=False)
        panels_zip = gr.File(label="Panels (ZIP)", elem_id="panels-zip", interactive=False, visible=False)
        project_file = gr.File(label="Project", elem_id="project", interactive=False, visible=False)
    scores = gr.Dataframe(
        headers=SCORE_COLUMNS,
        label="Consistency",
        interactive=False,
        visible=False,
        elem_id="scores",
        wrap=True,
        column_widths=["32%", "23%", "23%", "22%"],  # all four headers whole at a phone's width
    )
    return Results(status, gallery, pages, pdf, cbz, panels_zip, project_file, reading, scores)


def panel_editing() -> PanelEditing:
    with gr.Accordion("Change one panel or the lettering", open=False, elem_id="panel-editor") as editor:
        note = gr.Markdown(
            "Click a panel in the gallery to edit it.",
            label="Redraw settings",
            elem_id="redraw-note",
            latex_delimiters=[],
        )
        with gr.Row():
            # No precision: 1.5 is refused by name, not rounded to a panel nobody asked for.
            number = gr.Number(value=1, minimum=1, label="Panel", elem_id="panel-number")
            seed = gr.Textbox(label="Panel seed (empty: a new one)", max_lines=1, elem_id="panel-seed")
            dice = gr.Button("🎲 New panel seed", scale=0, elem_id="panel-dice")
        prompt = gr.Textbox(label="Prompt ([Name] for each character)", elem_id="new-prompt")
        caption = gr.Textbox(
            label="Caption",
            info="Speech is edited in the Story box (@Mia: Hello!); Re-typeset then letters it",
            elem_id="new-caption",
        )
        with gr.Row():
            regenerate = gr.Button("Regenerate panel", elem_id="regenerate")
            stop = gr.Button("Stop", variant="stop", interactive=False, elem_id="redraw-stop")
        retypeset = gr.Button("Re-typeset pages (layout, captions, speech)", elem_id="retypeset")
    return PanelEditing(editor, note, number, seed, dice, prompt, caption, regenerate, retypeset, stop)


class AnyUploadValue(GradioRootModel):
    """A file uploaded to this studio: from a script, send gradio_client.handle_file("path/to/the/file").

    Any other value is let through to the studio's own check, which refuses it naming the field; a file record
    naming a file that was not uploaded here (a server path) is refused by Gradio before the studio sees it,
    with an error that carries no message."""

    root: FileData | Any = None


def project_panel() -> ProjectFiles:
    with gr.Accordion("Save or continue a project", open=False):
        include_bank = gr.Checkbox(
            False,
            label="Include the identity bank (hundreds of MB; left out, it is rebuilt exactly from the seeds)",
            elem_id="include-bank",
        )
        save = gr.Button("Download project", elem_id="project-save")
        # No file_types, as for images (image_uploads): any other file is refused on the project's own line.
        upload = gr.File(label="Load a project file (.zip)", type="filepath", elem_id="upload")
        upload.data_model = AnyUploadValue  # the studio checks the value itself (events take raw values)
        status = gr.Markdown("", label="Project status", elem_id="project-status", latex_delimiters=[])
    return ProjectFiles(save, include_bank, upload, status)


def animate_tab() -> AnimateTab:
    gr.Markdown(
        "Animate the transition between two generated panels (AnimateDiff on SD 1.5, conditioned "
        "frame by frame on CLIP image embeddings interpolated by the Semantic Motion Predictor)."
    )
    with gr.Row():
        from_panel = gr.Number(value=1, minimum=1, label="From panel", elem_id="from-panel")
        to_panel = gr.Number(value=2, minimum=1, label="To panel", elem_id="to-panel")
        frames = setting_slider("frames", DEFAULT_FRAMES)
        fps = setting_slider("fps", DEFAULT_FPS)
    with gr.Row():
        animate = gr.Button("Animate", variant="primary", elem_id="animate")
        stop = gr.Button("Stop", variant="stop", elem_id="animate-stop", interactive=False)  # on while a clip is made
    note = gr.Markdown(label="Clip status", elem_id="animation-note", latex_delimiters=[])
    with gr.Row():
        video = gr.Video(label="MP4", elem_id="video", interactive=False)
        gif = gr.Image(label="GIF", type="filepath", elem_id="gif", interactive=False)
    return AnimateTab(from_panel, to_panel, frames, fps, animate, stop, note, video, gif)
