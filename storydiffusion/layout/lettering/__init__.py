"""Comic lettering: narration captions, speech bubbles and the page title, drawn onto a page image.

The original tool wrote every text in one Latin font and dropped captions; a comic needs narration
boxes, speech bubbles pointing at their speakers, and glyphs for every script of the story. The
:class:`Lettering` engine decides where each text goes inside a panel cell, how large it can be,
and draws it with a :class:`~storydiffusion.layout.lettering.fonts.FontChain` (per-glyph font
fallback), so:

* a caption is a light narration box at the top or bottom of the cell, at most ~35 % of its height;
  its font shrinks until the text fits and, at the minimum size, the text is cut with an ellipsis;
* speech bubbles (ellipses, or rounded rectangles when space is short) are laid out in reading order
  in the part of the cell the caption leaves free, never overlapping each other or the caption, each
  with a tail toward where its speaker probably stands (``speakers`` listed left to right);
* nothing is ever drawn outside the cell, and every decision is returned in a
  :class:`LetteringReport` so the layout engine and tests can check it.

All sizes are pixels at ``scale`` 1.0 (tuned for panel cells about 400-700 px wide) and multiplied by
``scale``. Everything is deterministic: the same input draws the same pixels.

One job per module:

- ``letterer``       :class:`Lettering`, the entry point: place everything in a cell, then draw it;
- ``style``          colours and sizes, and those sizes in pixels at a scale;
- ``report``         what was drawn (:class:`LetteringReport`, :class:`TextBlock`, :class:`Bubble`);
- ``fonts``          bundled faces and per-glyph fallback chains (character maps read with fontTools);
- ``linebreak``      where a line may end, in every script the fonts cover;
- ``fitting``        the largest font size at which text fits a box, else cut with an ellipsis;
- ``captions``       caption and title placement;
- ``bubble_shape``   a bubble's text lines and body size before placement;
- ``packing``        bubbles packed into rows in reading order;
- ``tails``          packed bubbles to page pixels, with tails aimed at their speakers;
- ``bubble_layout``  the search over sizes and shapes, and what is cut when nothing fits;
- ``drawing``        painting placed captions and bubbles;
- ``geometry``       boxes and triangles.
"""

from __future__ import annotations

from .geometry import Box, box_contains, boxes_overlap
from .letterer import Lettering
from .report import Bubble, LetteringReport, TextBlock
from .style import LetteringStyle

__all__ = [
    "Box",
    "Bubble",
    "Lettering",
    "LetteringReport",
    "LetteringStyle",
    "TextBlock",
    "box_contains",
    "boxes_overlap",
]
