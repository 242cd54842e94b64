"""The studio page's parts: the components of each panel of the page, grouped, as ``studio_widgets`` builds
them and the event wiring (``studio_events``, ``studio_generation``, ...) reads them."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from . import studio_text as text


@dataclass
class StoryInputs:
    title: gr.Textbox
    characters: gr.Textbox
    story: gr.Textbox
    example: gr.Dropdown
    style: gr.Dropdown
    model: gr.Dropdown
    layout: gr.Dropdown
    direction: gr.Radio  # how the pages read: as the layout does, or left to right / right to left in any

    def texts(self) -> list[gr.Textbox]:
        return [self.title, self.characters, self.story]


@dataclass
class AdvancedSettings:
    negative: gr.Textbox
    numbers: dict[str, gr.Slider | gr.Textbox]  # by setting name, in the order of text.UI_SETTINGS
    dice: gr.Button
    consistency: gr.Radio

    def values(self) -> list:
        """The widgets whose values ``text.settings_from_ui`` reads after the style: negative prompt, numbers,
        then what panels share."""
        return [self.negative, *(self.numbers[name] for name in text.UI_SETTINGS), self.consistency]


@dataclass
class Steering:
    """Reference photos and control images, matched to the story by file name; their strengths; and the
    characters table that shows which character has a photo."""

    photos: gr.File
    photo_scale: gr.Slider
    controls: gr.File
    control_scale: gr.Slider
    table: gr.Dataframe
    photo_adapter: gr.Radio  # the whole photo (IP-Adapter) or its face (FaceID): kept in the session
    status: gr.Markdown  # the uploads' check, as soon as a file arrives: what each one steers, or what is wrong

    def values(self) -> list:
        return [self.photos, self.photo_scale, self.controls, self.control_scale]


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
    reading: PageViewer
    scores: gr.Dataframe | None = None  # filled after a run when the studio has an encoder (studio_scores)

    def files(self) -> list:
        """The file boxes, shown only once they hold a file."""
        return [self.pdf, self.cbz, self.panels_zip]

    def downloads(self) -> list:
        """The widgets filled by ``StudioSession.downloads()``, in its order."""
        return [self.pages, self.pdf, self.cbz, self.panels_zip]


@dataclass
class PageViewer:
    direction: gr.Markdown
    viewer: gr.Accordion
    page: gr.Image
    zoom: gr.Slider


@dataclass
class PanelEditing:
    editor: gr.Accordion
    note: gr.Markdown
    number: gr.Number
    seed: gr.Textbox
    dice: gr.Button
    prompt: gr.Textbox
    caption: gr.Textbox
    regenerate: gr.Button
    retypeset: gr.Button
    stop: gr.Button  # a redraw's Stop, beside its button (the page's Stop can be a screen away on a phone)

    def fields(self) -> list:
        """What choosing a panel fills in (``text.panel_for_editing``'s order), then the settings note
        (which is also the editor's status line: a redraw's progress and failures show there)."""
        return [self.number, self.prompt, self.caption, self.seed, self.note]


@dataclass
class ProjectFiles:
    save: gr.Button
    include_bank: gr.Checkbox
    upload: gr.File
    status: gr.Markdown


@dataclass
class AnimateTab:
    from_panel: gr.Number
    to_panel: gr.Number
    frames: gr.Slider
    fps: gr.Slider
    animate: gr.Button
    stop: gr.Button
    note: gr.Markdown
    video: gr.Video
    gif: gr.Image

    def clip(self) -> list:
        """The last clip and its note: they belong to the story they were made from."""
        return [self.note, self.video, self.gif]


@dataclass
class Studio:
    session: gr.State
    notice: gr.Markdown
    inputs: StoryInputs
    steering: Steering
    advanced: AdvancedSettings
    buttons: RunButtons
    results: Results
    editing: PanelEditing
    project: ProjectFiles
    animate: AnimateTab

    def run_controls(self, *stops: gr.Button) -> list[gr.Button]:
        """A run's Stop buttons, then every control that starts work in a session or replaces its story
        (``studio_status.START_BUTTONS``): Generate, Animate, Regenerate panel, Re-typeset, Download project, the
        project upload and the examples. A run turns them all off and its Stops on: a project loaded or an
        example picked while a story is drawn would be drawn over, or mixed with it, when the run ends."""
        return [
            *stops,
            self.buttons.generate,
            self.animate.animate,
            self.editing.regenerate,
            self.editing.retypeset,
            self.project.save,
            self.project.upload,
            self.inputs.example,
        ]
