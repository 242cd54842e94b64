"""The page's reading aids: the reading direction of the chosen layout, and one page at a time, zoomed.

Page-only events (no API endpoint): they show what the session already made, and the zoom runs in
the browser (``studio_page_code.ZOOM_PAGE``).
"""

from __future__ import annotations

import gradio as gr

from . import studio_text as text
from .errors import StoryDiffusionError
from .studio import session_of
from .studio_page_code import ZOOM_PAGE
from .studio_parts import Studio

PAGE_ONLY = {"queue": False, "api_visibility": "private"}


def wire_reading(studio: Studio) -> None:
    reading = studio.results.reading

    def pick_page(state, selected: gr.SelectData):
        """Clicking a page in the gallery opens it in the page view."""
        session = session_of(state)
        pages = session.pages.pages if session.pages is not None else []
        if not 0 <= selected.index < len(pages):
            return gr.skip(), gr.skip()
        session.reading_page = selected.index
        return str(pages[selected.index]), gr.Accordion(open=True)

    def follow_pages(state):
        """Pages typeset anew (another layout, a redrawn panel, a new story, a loaded project): the page view
        shows the new page at the place it showed, or nothing once there is no such page."""
        session = session_of(state)
        pages = session.pages.pages if session.pages is not None else []
        if session.reading_page is None:
            return gr.skip()
        if session.reading_page >= len(pages):
            session.reading_page = None
            return None
        return str(pages[session.reading_page])

    def direction_of(layout, direction):
        try:
            return text.reading_direction(text.layout_value(layout), text.direction_value(direction))
        except StoryDiffusionError:  # the layout's and direction's own events report a wrong value
            return gr.skip()

    studio.results.pages.select(pick_page, [studio.session], [reading.page, reading.viewer], **PAGE_ONLY)
    studio.results.pages.change(follow_pages, [studio.session], [reading.page], **PAGE_ONLY)
    for picked in (studio.inputs.layout.change, studio.inputs.direction.change):
        picked(direction_of, [studio.inputs.layout, studio.inputs.direction], [reading.direction], **PAGE_ONLY)
    # A new page keeps the zoom; a new reading direction opens the page at its first panel.
    for zoom_changed in (reading.zoom.change, reading.page.change, reading.direction.change):
        zoom_changed(None, [reading.zoom], None, js=ZOOM_PAGE, **PAGE_ONLY)
