"""The studio page's events: what each widget does, wired to the library (``app.py`` builds the page).

Every action is registered through ``studio_errors.action``: the page's door shows a failure on the
status line, the API's door (same name) raises it. Every event takes its widgets' raw values
(preprocess=False) and checks them in ``studio_text``, so an API client sending a wrong type gets a
message naming the field. The session state starts empty; ``session_of`` gives each user their own.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from . import studio_status as run_status
from . import studio_text as text
from .errors import GenerationCancelled, StoryDiffusionError
from .model_pool import ModelPool, shown_name
from .streaming import StepDone, stream_call
from .studio import StudioSession, random_seed, session_of
from .studio_errors import action
from .studio_gallery import gallery_items
from .studio_page_code import KEEP_TAB_DRAFT, SHOW_EDITOR, TAB_DRAFT_FIRST
from .studio_parts import Studio
from .studio_server import gpu_seconds_for

try:  # Hugging Face ZeroGPU: GPU work runs inside spaces.GPU, for a time computed from the work; elsewhere a no-op.
    import spaces

    def gpu_task(function):
        return spaces.GPU(duration=gpu_seconds_for(function))(function)

except ImportError:

    def gpu_task(function):
        return function


def page_closed(request: gr.Request | None) -> bool:
    """Whether the browser tab that asked for a run has gone: Gradio marks its session closed when the
    page's heartbeat ends. A tab closed before its run even started leaves no other trace (the run's event
    never had a client to lose), so each step asks this too. False for API clients and direct calls."""
    try:
        return bool(request.request.app.state_holder.session_data[request.session_hash].is_closed)
    except (AttributeError, KeyError, TypeError):
        return False


def stop_if_closed(request: gr.Request | None, session: StudioSession) -> None:
    """Between two steps of a run: its tab gone, the session's run stops (no one is there to see it)."""
    if page_closed(request):
        session.stop()


def unchanged(outputs: int) -> tuple:
    """What a run yields between two steps: nothing changes on the page, but Gradio learns whether the
    page is still there (it stops iterating once its tab is closed)."""
    return tuple(gr.skip() for _ in range(outputs))


def end_of_run(state):
    """After a page run, story or clip (finished, stopped or refused): the session knows nothing runs; its
    buttons back to idle (start on, Stop off)."""
    if isinstance(state, StudioSession):
        state.run_over()
    return run_status.run_buttons(False)


def stop_message(state: StudioSession | None) -> str:
    """Stop: the run in progress (a story or a clip) ends after its current step."""
    stopping = state is not None and state.stop()
    return run_status.STOPPING_MESSAGE if stopping else run_status.NOTHING_RUNNING_MESSAGE


def stop_on_page(state: StudioSession | None) -> dict:
    """The page's Stop: the run in progress ends after its current step and says so on its own line ("Stopped
    after …"); Stop turns off at once. Only the button changes here: this answer may reach the page after the
    run's last one, and a status text from it would then cover the run's own (either order leaves Stop off)."""
    if state is not None:
        state.stop()
    return gr.update(interactive=False)


def show_filled(event, boxes: list) -> None:
    """After ``event``, show each file box only once it holds a file (a private follow-up, so that the
    event itself returns plain paths, as API clients want them)."""
    event.then(text.shown_if_filled, boxes, boxes, queue=False, api_visibility="private")


def failed(line: str | None) -> bool:
    """Whether an action's line says it failed: an action's failure is its line's text (``studio_errors.action``),
    so Gradio counts it a success, and ``.success`` follow-ups run for it too."""
    return str(line or "").startswith("⚠")


def forgotten_project() -> dict:
    """The Project box emptied: the file it offered was saved from the session's work as it was before."""
    return gr.update(value=None, visible=False)


def forget_saved_project(studio: Studio, event: Any, line: Any) -> None:
    """After ``event`` changed the session's work (unless its ``line`` says it failed), the Project box no
    longer offers the project saved before, nor its line says it was saved: that file is the work as it was."""
    event.then(
        lambda text: (gr.skip(), gr.skip()) if failed(text) else (forgotten_project(), ""),
        [line],
        [studio.results.project_file, studio.project.status],
        queue=False,
        api_visibility="private",
    )


def remember_story(demo: gr.Blocks, studio: Studio) -> None:
    """Keep the title, characters and story in the browser's own storage, so a reload loses no typing.

    Each tab keeps its own draft (``sessionStorage``: a reload of tab A never brings back what tab B typed);
    a new tab starts from the last draft typed in this browser (``gr.BrowserState``). Restored when the page
    loads; the server keeps nothing of it (the browser stores what it returns).
    """
    boxes = studio.inputs.texts()
    saved = gr.BrowserState(["", "", ""], storage_key="storydiffusion-story")
    gr.on(
        [box.change for box in boxes],
        lambda *texts: list(texts),
        boxes,
        saved,
        js=KEEP_TAB_DRAFT,
        queue=False,
        trigger_mode="always_last",
        api_visibility="private",
    )
    demo.load(text.restored_story, [saved, *boxes], boxes, js=TAB_DRAFT_FIRST, queue=False, api_visibility="private")


def wire_story_inputs(studio: Studio, examples: dict[str, tuple], door: gr.Button) -> None:
    inputs = studio.inputs
    filled = [*inputs.texts(), inputs.style, studio.advanced.numbers["seed"], inputs.layout, inputs.direction]
    steering = studio.steering
    filled += [steering.photo_adapter, steering.photo_scale, steering.control_scale, studio.advanced.consistency]
    filled.append(studio.results.status)

    def pick_example(state, name):
        """An example sets everything it needs: the texts, its style and seed, a layout that suits it and the way
        its pages read (the session's too, so pages typeset next read as the page says), how its photos steer,
        what its panels share, and on the status line which files to upload, if any."""
        session = session_of(state)
        if name is None or name == "":
            return session, *(gr.skip() for _ in filled)
        values = examples[text.choice_value("Examples", name, list(examples))]
        session.direction = text.direction_value(values[filled.index(inputs.direction)])
        return session, *values

    action(
        inputs.example.change,
        pick_example,
        [studio.session, inputs.example],
        [studio.session, *filled],
        status=studio.results.status,
        api_name="pick_example",
        api_door=door,
        queue=False,
    )
    studio.advanced.dice.click(random_seed, None, [studio.advanced.numbers["seed"]], queue=False)


def wire_panel_editing(studio: Studio, pool: ModelPool, door: gr.Button) -> Any:
    """Editing one panel: choosing it, redrawing it, re-typesetting, the layout. Returns the redraw's event."""
    inputs, results, editing = studio.inputs, studio.results, studio.editing

    @gpu_task
    def regenerate_panel(
        state,
        number,
        prompt,
        caption,
        seed,
        model,
        layout,
        story_box,
        request: gr.Request = None,
        progress=gr.Progress(),
    ):
        """Redraw one panel (the seed given, or a new one) and write its prompt and caption back to the
        Story box, so that later re-typesetting reads the story as it now is."""
        session, number = session_of(state), text.panel_number_from_ui(number)
        prompt, layout = text.text_value("Prompt", prompt), text.layout_value(layout)
        caption = None if caption is None else text.text_value("Caption", caption)
        story_box = text.text_value("Story", story_box)  # every input checked before the panel is drawn
        seed = None if seed is None or seed == "" else text.setting_value("seed", seed, "Panel seed")
        chosen = pool.check_choice(model)
        if session.model and chosen != session.model and not pool.offers(session.model):  # a loaded project's
            raise StoryDiffusionError(
                f"Model: this story was drawn with {shown_name(session.model)}, which this studio does not offer, "
                f"so its panels cannot be redrawn here; press Generate to draw it all with {shown_name(chosen)}"
            )
        if session.result is not None:  # a loaded project's settings may ask more than this server allows
            pool.check_work(session.result.settings, redraw=True)
        before = text.story_text_of(session.story)
        with pool.lease(chosen) as pipeline:  # a device of its own while it draws (one per GPU: --devices)
            if session.result is not None:
                text.check_face_steering(pipeline, session.result.settings, bool(session.steered.photos))
            redraw = stream_call(
                lambda callback: session.regenerate_panel(
                    pipeline, number - 1, prompt or None, seed, caption, callback=callback, model=chosen
                ),
                stop=session.stop,
            )
            try:
                for event in redraw:
                    if isinstance(event, StepDone):
                        progress(event.progress.fraction, desc=run_status.step_message(event.progress))
                        stop_if_closed(request, session)
                        yield unchanged(9)  # a tab closed meanwhile ends the redraw here (stream_call)
                    else:
                        panel = event.value
            except GenerationCancelled as stopped:  # Stop: the panel, the story and the pages stay as they were
                yield session, str(stopped), *unchanged(7)
                return
        session.retypeset(layout)
        panels = gallery_items(session.panels(), session.home)
        story_box, note = text.story_box_after_redraw(story_box, before, session.story, number - 1)
        downloads = session.downloads().as_tuple()
        message = run_status.with_warnings(run_status.regenerated_message(number, note), session.page_warnings)
        yield session, message, panels, *downloads, story_box, str(panel.seed)

    def retypeset(state, title, characters, story_text, layout):
        session, layout = session_of(state), text.layout_value(layout)
        session.check_typesetting()
        session.retypeset(layout, text.story_from_ui(title, characters, story_text))
        message = run_status.with_warnings(run_status.typeset_message(layout), session.page_warnings)
        return session, message, *session.downloads().as_tuple()

    def change_layout(state, layout):
        session, layout = session_of(state), text.layout_value(layout)
        if layout == session.layout:  # the picker left unchanged (Tab past it): nothing to typeset or say
            return session, gr.skip(), *(gr.skip() for _ in session.downloads().as_tuple())
        pages = session.choose_layout(layout)
        return (
            session,
            run_status.with_warnings(
                run_status.layout_chosen_message(layout, pages is not None), session.page_warnings if pages else ()
            ),
            *session.downloads().as_tuple(),
        )

    def change_direction(state, direction):
        session, direction = session_of(state), text.direction_value(direction)
        pages = session.choose_direction(direction)  # typeset again even when the session reads so already: an
        # example sets the session's direction without typesetting the pages of the story drawn before it
        message = run_status.direction_chosen_message(session.layout, direction, pages is not None)
        return (
            session,
            run_status.with_warnings(message, session.page_warnings if pages else ()),
            *session.downloads().as_tuple(),
        )

    def edit_panel(state, number):
        """Fill the editor with a panel's prompt, caption and seed, and say which settings a redraw uses."""
        session, number = session_of(state), text.panel_number_from_ui(number)
        if session.story is None or session.result is None:  # nothing drawn yet: nothing to fill in
            return (number, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
        fields = text.panel_for_editing(session.story, session.panels(), number)
        return (*fields, text.redraw_settings_note(session.result.settings), gr.Accordion(open=True))

    def pick_panel(state, selected: gr.SelectData):
        """Clicking a panel in the gallery opens the editor on it."""
        return edit_panel(state, text.selected_panel_number(selected.index, selected.value))

    editor_fields = [*editing.fields(), editing.editor]
    private = {"queue": False, "api_visibility": "private"}
    studio.results.gallery.select(pick_panel, [studio.session], editor_fields, **private)
    studio.results.gallery.select(None, None, None, js=SHOW_EDITOR, **private)  # in the browser, at once
    action(
        editing.number.input,
        edit_panel,
        [studio.session, editing.number],
        editor_fields,
        status=editing.note,  # the editor's own line: a later redraw's outcome replaces it there
        api_name="edit_panel",
        api_door=door,
        queue=False,
    )
    editing.dice.click(random_seed, None, [editing.seed], **private)

    def begin_redraw(state):
        """On the page: the redraw is announced (so Stop reaches it while it waits for the GPU); every start
        button off and Stop on until it ends, as for a story."""
        session = session_of(state)
        session.expect_run()
        return session, *run_status.run_buttons(True, stops=2)

    def end_of_redraw(state):
        """``end_of_run``, for the page's Stop and the editor's."""
        end_of_run(state)
        return run_status.run_buttons(False, stops=2)

    buttons = studio.run_controls(studio.buttons.stop, editing.stop)
    started = editing.regenerate.click(begin_redraw, [studio.session], [studio.session, *buttons], **private)
    regenerated = action(
        started.success,
        regenerate_panel,
        [
            studio.session,
            editing.number,
            editing.prompt,
            editing.caption,
            editing.seed,
            inputs.model,
            inputs.layout,
            inputs.story,
        ],
        [studio.session, editing.note, results.gallery, *results.downloads(), inputs.story, editing.seed],
        status=editing.note,
        api_name="regenerate_panel",
        api_door=door,
        concurrency_limit=pool.concurrency,
        concurrency_id="gpu",
    )
    regenerated.then(end_of_redraw, [studio.session], buttons, **private)
    editing.stop.click(stop_on_page, [studio.session], [editing.stop], **private)  # skips the queue, as the others
    retypeset_click = action(
        editing.retypeset.click,
        retypeset,
        [studio.session, *inputs.texts(), inputs.layout],
        [studio.session, editing.note, *results.downloads()],
        status=editing.note,
        api_name="retypeset",
        api_door=door,
    )
    layout_changed = action(
        inputs.layout.input,  # the user's choice only: a project or example setting the layout typesets itself
        change_layout,
        [studio.session, inputs.layout],
        [studio.session, results.status, *results.downloads()],
        status=results.status,
        api_name="change_layout",
        api_door=door,
    )
    direction_changed = action(
        inputs.direction.input,  # the user's choice only, as the layout's
        change_direction,
        [studio.session, inputs.direction],
        [studio.session, results.status, *results.downloads()],
        status=results.status,
        api_name="change_direction",
        api_door=door,
    )
    # The editor's line told of its last redraw or re-typeset; pages typeset anew by the Layout menu make it old.
    for event in (layout_changed, direction_changed):
        event.then(lambda: "", None, [editing.note], queue=False, api_visibility="private")
    for event in (regenerated, retypeset_click, layout_changed, direction_changed):
        show_filled(event, results.files())
    for event in (regenerated, retypeset_click):  # a project saved before holds the panels or captions as they were
        forget_saved_project(studio, event, editing.note)
    return regenerated


def wire_animate(studio: Studio, pool: ModelPool, door: gr.Button) -> None:
    tab = studio.animate

    @gpu_task
    def animate(state, from_panel, to_panel, frames, fps, request: gr.Request = None, progress=gr.Progress()):
        start = text.panel_number_from_ui(from_panel, "From panel")
        end = text.panel_number_from_ui(to_panel, "To panel")
        frames, fps = text.setting_value("frames", frames), text.setting_value("fps", fps)
        session = session_of(state)
        clip = stream_call(
            lambda callback: session.animate(pool.transition(), start, end, frames, fps, callback=callback),
            stop=session.stop,
        )
        try:
            for event in clip:
                if isinstance(event, StepDone):
                    progress(*run_status.animation_progress(event.progress.step, event.progress.steps))
                    stop_if_closed(request, session)
                    yield unchanged(3)  # a tab closed meanwhile ends the clip here (stream_call)
                else:
                    result = event.value
        except GenerationCancelled:
            yield run_status.ANIMATION_STOPPED_MESSAGE, None, None
            return
        yield run_status.animation_note(start, end, result), str(result.mp4), str(result.gif)

    def begin_clip(state):
        """On the page: the clip is announced (so Stop reaches it while it waits for the GPU) and said to be
        under way, since making it can take minutes; Animate off and Stop on until it ends."""
        session = session_of(state)
        session.expect_run()
        return session, run_status.ANIMATING_MESSAGE, *run_status.run_buttons(True)

    buttons = studio.run_controls(tab.stop)
    page_only = {"queue": False, "api_visibility": "private"}
    started = tab.animate.click(begin_clip, [studio.session], [studio.session, tab.note, *buttons], **page_only)
    action(
        started.success,
        animate,
        [studio.session, tab.from_panel, tab.to_panel, tab.frames, tab.fps],
        [tab.note, tab.video, tab.gif],
        status=tab.note,
        api_name="animate",
        api_door=door,
        concurrency_limit=1,  # one video pipeline for everyone: one clip at a time
        concurrency_id="gpu" if pool.concurrency == 1 else "video",  # one device: after the story runs
    ).then(end_of_run, [studio.session], buttons, **page_only)
    tab.stop.click(stop_on_page, [studio.session], [tab.stop], **page_only)  # skips the queue, as the story's Stop
