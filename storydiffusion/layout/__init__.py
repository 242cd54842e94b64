"""Comic pages from generated panels: a small layout engine driven by the templates in ``layouts/``.

One job per module, so a layout change never regenerates an image:

- ``templates``        page templates read from ``layouts/<name>.yaml`` and validated;
- ``template_values``  the values a template writes (lengths, paper sizes, colours) in pixels and RGB;
- ``paginate``         panels to pages and cells (pixel boxes) with their reading order;
- ``fit``              one panel image into one cell (centre crop or letterbox);
- ``render``           pages drawn: background, panels, borders, then lettering;
- ``lettering/``       captions, speech bubbles, title, fonts (a package, one module per step);
- ``export``           PNG pages, PDF, CBZ with ComicInfo.xml, ZIP of panels, all written atomically;
- ``compose``          all of the above for a run folder (``python -m storydiffusion compose``).

Nothing is imported here but the error type, so importing a submodule stays cheap.
"""

from __future__ import annotations

from ..errors import StoryDiffusionError

__all__ = ["LayoutError"]


class LayoutError(StoryDiffusionError, ValueError):
    """A layout template, a layout option or a run folder to compose is invalid; the message says how to fix it."""
