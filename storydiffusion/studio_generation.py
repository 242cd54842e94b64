"""The studio's Generate button: the story checked before the GPU queue, then drawn with the run's
uploads, panel by panel; Stop. (``studio_events`` wires the other widgets.)"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import gradio as gr

from . import studio_status as run_status
from . import studio_text as text
from .errors import SettingsError, StoryDiffusionError
from .model_pool import ModelPool
from .settings import REFERENCE_ADAPTERS
from .streaming import PanelDone, RunFailed, RunFinished, StepDone
from .studio import session_of
from .studio_errors import UPLOAD_PROBLEMS, action, failure_line
from .studio_events import (
    end_of_run,
    failed,
    forget_saved_project,
    gpu_task,
    show_filled,
    stop_if_closed,
    stop_message,
    stop_on_page,
    unchanged,
)
from .studio_gallery import gallery_items
from .studio_parts import Studio
from .studio_uploads import CONTROLS_LABEL, PHOTOS_LABEL, characters_rows, steering_from_ui, uploads_summary


def start_if_checked(state, status: str):
    """The page's gate between the check and the run: a failed check (its line starts with ⚠) stops the
    chain silently (the status line already says why); a passed one announces the run to the session,
    so that Stop reaches it even while it waits for the GPU. (Its outputs are the session alone: a gate that
    stops the chain marks its outputs with an error badge, which the examples' picker would show.)"""
    if failed(status):
        raise gr.Error("the story did not pass its check", visible=False, print_exception=False)
    session = session_of(state)
    session.expect_run()
    return session


def wire_generation(studio: Studio, pool: ModelPool, door: gr.Button, uploads: Collection[str] = ()) -> Any:
    """Generate and its check; ``uploads`` is the page's record of uploaded files (photos and control images
    are read only from there). Returns the event of a page run's end, for follow-ups."""
    inputs, results = studio.inputs, studio.results

    def checked_run(title, characters, story_text, style, negative, numbers, consistency, steering, adapter="image"):
        """The story, settings and uploads the widgets give, each checked under its widget's name."""
        try:
            settings = text.settings_from_ui(style, negative, numbers, consistency, adapter)
        except SettingsError as error:  # "Steps must be 1..1000": on a shared studio, its own limit too
            raise SettingsError(pool.limits.noted(str(error)) if pool.limits else str(error)) from None
        story = text.story_from_ui(title, characters, story_text, settings)
        pool.check_work(settings, story)  # a shared server's limits, before the request queues for the GPU
        return story, settings, steering_from_ui(story, steering, uploads)

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
        consistency="uniform",
        reference_photos=None,
        photo_strength=0.6,
        control_images=None,
        control_strength=0.8,
    ):
        """Checked before the GPU queue, so a typo is reported at once and next to the status line."""
        numbers = (steps, guidance, width, height, seed, sampling_rate, id_images, window)
        steering = (reference_photos, photo_strength, control_images, control_strength)
        story, _, _ = checked_run(title, characters, story_text, style, negative, numbers, consistency, steering)
        return run_status.queued_message(story)

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
        consistency="uniform",
        reference_photos=None,
        photo_strength=0.6,
        control_images=None,
        control_strength=0.8,
        direction=text.AS_THE_LAYOUT,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        numbers = (steps, guidance, width, height, seed, sampling_rate, id_images, window)
        steering = (reference_photos, photo_strength, control_images, control_strength)
        session = session_of(state)
        story, settings, steered = checked_run(
            title, characters, story_text, style, negative, numbers, consistency, steering, session.photo_adapter
        )
        # A layout or direction picked while it runs replaces these (choose_layout, choose_direction).
        session.layout, session.direction = text.layout_value(layout), text.direction_value(direction)
        with pool.lease(model) as pipeline:  # a device of its own while it draws (one per GPU: --devices)
            text.check_face_steering(pipeline, settings, bool(steered.photos))
            text.check_model_limits(pipeline, story, settings)  # before the last story leaves the page
            notice = run_status.notice_markdown(pool.notice(model))
            nothing = ([], None, None, None)  # a new run: the last run's pages and files go
            yield session, run_status.STARTING_MESSAGE, [], *nothing, notice
            for event in session.generate(pipeline, story, settings, pool.check_choice(model), steered):
                if isinstance(event, StepDone):
                    progress(event.progress.fraction, desc=run_status.step_message(event.progress))
                    stop_if_closed(request, session)
                    yield unchanged(8)  # a tab closed meanwhile ends the run here (stream_generation)
                elif isinstance(event, PanelDone):
                    done = run_status.panels_done_message(len(session.panels()), len(story.panels))
                    yield session, done, gallery_items(session.panels(), session.home), *nothing, notice
                elif isinstance(event, RunFailed):
                    raise event.error
                elif isinstance(event, RunFinished):
                    downloads = session.typeset_if_drawn()  # stopped before its first panel: the last story's
                    kept_last = not event.result.panels and bool(session.panels())
                    typeset = session.pages.seconds if session.pages is not None and event.result.panels else None
                    finished = run_status.finished_message(
                        event.result, len(story.panels), session.page_warnings, kept_last, typeset
                    )
                    panels = gallery_items(session.panels(), session.home)
                    yield session, finished, panels, *downloads.as_tuple(), notice

    gr.on(
        [inputs.characters.change, studio.steering.photos.change],
        lambda characters, photos: characters_rows(characters, photos, uploads),
        [inputs.characters, studio.steering.photos],
        [studio.steering.table],
        queue=False,
        preprocess=False,  # the raw upload records: their file names are all the table shows
        api_visibility="private",
    )

    def check_steering(title, characters, story_text, photos, photo_scale, controls, control_scale, status):
        """The uploads checked as they arrive, on their own line: what each file steers, or what is wrong
        with one (a run would refuse it). A refusal of uploads left on the run's status line is now stale,
        so it goes. Without a story that parses, files cannot be matched: Generate tells the story's mistake."""
        labels = (
            PHOTOS_LABEL,
            CONTROLS_LABEL,
            *(text.SETTING_LABELS[name] for name in ("reference_scale", "control_scale")),
        )
        line = str(status or "")
        stale = line.startswith(tuple(f"⚠ {label}" for label in labels)) or UPLOAD_PROBLEMS in line.split("\n")[0]
        run_line = "" if stale else gr.skip()
        try:
            story = text.story_from_ui(title, characters, story_text)
        except StoryDiffusionError:
            return "", run_line
        try:
            found = steering_from_ui(story, [photos, photo_scale, controls, control_scale], uploads)
        except StoryDiffusionError as error:
            return failure_line(error), run_line
        return text.plain_markdown(uploads_summary(found)), run_line

    steering = studio.steering
    gr.on(
        [steering.photos.change, steering.controls.change, inputs.characters.blur, inputs.story.blur],
        check_steering,
        [inputs.title, inputs.characters, inputs.story, *steering.values(), results.status],
        [steering.status, results.status],
        queue=False,
        preprocess=False,
        api_visibility="private",
        show_progress="hidden",
    )

    def choose_photo_adapter(state, adapter):
        """How reference photos steer this user's next runs (the whole photo, or its face), kept in the session."""
        session = session_of(state)
        session.photo_adapter = text.choice_value(text.PHOTO_ADAPTER_LABEL, adapter, list(REFERENCE_ADAPTERS))
        return session

    action(
        studio.steering.photo_adapter.change,
        choose_photo_adapter,
        [studio.session, studio.steering.photo_adapter],
        [studio.session],
        status=results.status,
        api_name="photo_adapter",
        api_door=door,
        queue=False,
    )

    story_widgets = [*inputs.texts(), inputs.style]
    checked = action(
        studio.buttons.generate.click,
        check_story,
        [*story_widgets, *studio.advanced.values(), *studio.steering.values()],
        [results.status],
        status=results.status,
        api_name="check_story",
        api_door=door,
        concurrency_limit=None,
    )
    buttons = studio.run_controls(studio.buttons.stop)
    page_only = {"queue": False, "api_visibility": "private"}
    running = checked.success(start_if_checked, [studio.session, results.status], [studio.session], **page_only)
    running.success(lambda: run_status.run_buttons(True), None, buttons, **page_only)  # Generate off, Stop on
    last_run = [*results.files(), *([results.scores] if results.scores is not None else [])]
    running.success(lambda: [gr.update(visible=False)] * len(last_run), None, last_run, **page_only)  # its files go
    running.success(lambda: ("", None, None), None, studio.animate.clip(), **page_only)  # and the last story's clip
    forget_saved_project(studio, running, results.status)  # and a project saved of the last story
    run_ended = action(
        running.success,
        generate,
        [
            studio.session,
            *story_widgets,
            inputs.model,
            inputs.layout,
            *studio.advanced.values(),
            *studio.steering.values(),
            inputs.direction,
        ],
        [studio.session, results.status, results.gallery, *results.downloads(), studio.notice],
        status=results.status,
        api_name="generate",
        api_door=door,
        concurrency_limit=pool.concurrency,
        concurrency_id="gpu",
    ).then(end_of_run, [studio.session], buttons, **page_only)
    show_filled(run_ended, results.files())
    # Stop skips the queue: it must reach a run even when the queue is full.
    studio.buttons.stop.click(stop_on_page, [studio.session], [studio.buttons.stop], **page_only)
    door.click(stop_message, [studio.session], [results.status], queue=False, api_name="stop")  # API: says what it did
    return run_ended
