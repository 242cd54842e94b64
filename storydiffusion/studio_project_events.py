"""The studio's project events: save the session as a project file, load one uploaded to the page back
into every widget (its story, settings, panels and pages)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import gradio as gr

from . import studio_status as run_status
from . import studio_text as text
from .model_pool import ModelPool
from .project import ProjectLimits
from .story import story_to_text
from .studio import session_of
from .studio_errors import action
from .studio_events import failed, forgotten_project, show_filled
from .studio_gallery import gallery_items
from .studio_parts import Studio


def wire_project(
    studio: Studio, pool: ModelPool, limits: ProjectLimits | None, door: gr.Button, uploads: Collection[str]
) -> Any:
    """Saving and loading projects; ``uploads`` is the page's record of files uploaded to it (the only
    files a project may be loaded from). Returns the event of a project's loading, for follow-ups."""
    inputs, results = studio.inputs, studio.results

    def save_project(state, include_bank):
        include_bank = text.checkbox_value("Include the identity bank", include_bank)
        return str(session_of(state).save_project(include_bank=include_bank))

    def load_project(state, path, model, layout):
        """Gradio checks the upload (its size, that it is an uploaded file); the library checks the archive.
        Every setting of the project comes back into the page, with its panels and pages."""
        path = text.uploaded_path("Project", path, uploads)
        session, layout = session_of(state), text.layout_value(layout)
        project = session.load_project(path, pool.get(model), limits, layout)
        layout = session.layout
        panels = session.panels()
        offered = [project.model] if pool.allow_custom else pool.choices()
        settings, model_note = text.loaded_settings(project.settings, project.model, offered)
        session.photo_adapter = project.settings.reference_adapter  # how its photos steered: the radio follows
        return (
            session,
            project.story.title,
            *story_to_text(project.story),
            *settings,
            layout,
            *[run_status.loaded_message(project.story, len(panels), model_note)] * 2,  # the project's line, the page's
            gallery_items(panels, session.home),
            *session.downloads().as_tuple(),
            session.photo_adapter,
            text.direction_choice(session.direction),
        )

    # The line is emptied first, so that what follows reads this save's outcome on it, not an earlier one.
    asked = studio.project.save.click(lambda: "", None, [studio.project.status], queue=False, api_visibility="private")
    saved = action(
        asked.then,
        save_project,
        [studio.session, studio.project.include_bank],
        [results.project_file],
        status=studio.project.status,
        api_name="save_project",
        api_door=door,
    )
    show_filled(saved, [results.project_file])
    saved.then(
        lambda path, line, bank: (
            gr.skip() if failed(line) or not path else run_status.saved_project_message(path, bank)
        ),
        [results.project_file, studio.project.status, studio.project.include_bank],
        [studio.project.status],
        queue=False,
        api_visibility="private",
    )
    loaded = action(
        studio.project.upload.upload,
        load_project,
        [studio.session, studio.project.upload, inputs.model, inputs.layout],
        [
            studio.session,
            *inputs.texts(),
            inputs.style,
            inputs.model,
            *studio.advanced.values(),
            inputs.layout,
            studio.project.status,
            results.status,  # its last run's or layout's words are of the work the project replaced
            results.gallery,
            *results.downloads(),
            studio.steering.photo_adapter,
            inputs.direction,
        ],
        status=studio.project.status,
        api_name="load_project",
        api_door=door,
    )
    show_filled(loaded, results.files())
    page_only = {"queue": False, "api_visibility": "private"}
    clip = studio.animate.clip()
    loaded.then(  # the clip of another story, and a project saved before: unless the load was refused
        lambda line: (gr.skip(),) * (len(clip) + 1) if failed(line) else ("", None, None, forgotten_project()),
        [studio.project.status],
        [*clip, results.project_file],
        **page_only,
    )
    # An emptied box has nothing to say about the project it held.
    studio.project.upload.clear(lambda: "", None, [studio.project.status], queue=False, api_visibility="private")
    return loaded
