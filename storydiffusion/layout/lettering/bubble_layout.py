"""Speech bubbles for one cell: the largest font, nicest shape and packing at which every bubble fits,
or, when none does, the bubbles that fit in reading order with the first one that does not cut short."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .bubble_shape import BubbleShape, BubbleSizer, Speech
from .fonts import FontChain
from .geometry import Box
from .packing import Region, Slot, pack_rows, tail_length
from .report import Bubble, TextBlock
from .style import Pixels
from .tails import place_bubbles

__all__ = ["bubble_region", "layout_bubbles"]

Packer = Callable[[list[BubbleShape]], list[Slot] | None]


def bubble_region(px: Pixels, cell: Box, caption: TextBlock | None, position: str) -> Region:
    """The part of the cell left for bubbles: inside the margin, clear of the caption."""
    m = px.margin
    x, y, w, h = cell[0] + m, cell[1] + m, cell[2] - 2 * m, cell[3] - 2 * m
    if caption is not None:
        cy, ch = caption.box[1], caption.box[3]
        if position == "top":
            bottom = y + h
            y = cy + ch + px.gap
            h = bottom - y
        else:
            h = cy - px.gap - y
    return Region(x, y, max(0, w), max(0, h))


def layout_bubbles(
    chain: FontChain,
    px: Pixels,
    region: Region,
    speeches: Sequence[Speech],
    speakers: Sequence[str],
    direction: str,
) -> tuple[list[Bubble], list[Speech]]:
    """The bubbles that fit, and the speeches left out. Tries font sizes from the largest, then
    ellipses before rounded rectangles, then pleasant 3:1 text blocks before full-width ones, then
    rows that follow where speakers stand before plain reading order."""
    if region.w <= 0 or region.h <= 0:
        return [], list(speeches)
    targets = [_speaker_x(region, speech.speaker, speakers) for speech in speeches]
    sizer = BubbleSizer(chain, px, region.w, region.h)
    for size in px.bubble_sizes:
        for shape in ("ellipse", "rounded"):
            for wide in (False, True):
                sized = [sizer.shape(speech, size, shape, wide) for speech in speeches]
                shapes = [s for s in sized if s is not None]
                if len(shapes) < len(speeches):
                    continue
                for by_speaker in (True, False):
                    slots = pack_rows(chain, px, region, shapes, targets, size, by_speaker)
                    if slots is not None:
                        return place_bubbles(chain, px, region, shapes, slots, targets, size, direction), []
    return _layout_truncated(chain, px, region, sizer, speeches, targets, direction)


def _layout_truncated(
    chain: FontChain,
    px: Pixels,
    region: Region,
    sizer: BubbleSizer,
    speeches: Sequence[Speech],
    targets: list[float],
    direction: str,
) -> tuple[list[Bubble], list[Speech]]:
    """Smallest font, compact rounded bubbles: keeps the bubbles that fit in reading order, cuts
    the first one that does not to the room left (or, when not one line of it fits, ends the
    last bubble shown with an ellipsis), and leaves out the rest."""
    size = px.bubble_sizes[-1]

    def pack(shapes: list[BubbleShape]) -> list[Slot] | None:
        return pack_rows(chain, px, region, shapes, targets[: len(shapes)], size, False)

    shapes: list[BubbleShape] = []
    slots: list[Slot] = []
    rest: list[Speech] = []
    for i, speech in enumerate(speeches):
        whole = sizer.shape(speech, size, "rounded", True)
        trial = pack([*shapes, whole]) if whole is not None else None
        if whole is not None and trial is not None:
            shapes, slots = [*shapes, whole], trial
            continue
        room = region.h - _used_height(chain, px, slots, shapes, size) - tail_length(chain, px, size)
        cut = sizer.shape(speech, size, "rounded", True, max_height=room, ellipsis=True)
        trial = pack([*shapes, cut]) if cut is not None else None
        if cut is not None and trial is not None:
            shapes, slots, rest = [*shapes, cut], trial, list(speeches[i + 1 :])
        else:
            rest = list(speeches[i:])
            if shapes:
                shapes, slots = _mark_last(sizer, speeches[i - 1], shapes, slots, pack)
        break
    return place_bubbles(chain, px, region, shapes, slots, targets, size, direction), rest


def _mark_last(
    sizer: BubbleSizer, speech: Speech, shapes: list[BubbleShape], slots: list[Slot], pack: Packer
) -> tuple[list[BubbleShape], list[Slot]]:
    """The last bubble shown re-set to end with an ellipsis (the dialogue goes on in bubbles left
    out), if it still packs; otherwise unchanged."""
    last = shapes[-1]
    marked = sizer.shape(speech, last.size, "rounded", True, max_height=last.height, ellipsis=True)
    trial = pack([*shapes[:-1], marked]) if marked is not None else None
    if marked is None or trial is None:
        return shapes, slots
    return [*shapes[:-1], marked], trial


def _used_height(chain: FontChain, px: Pixels, slots: list[Slot], shapes: list[BubbleShape], size: int) -> int:
    """Height taken by the rows already packed, with their tails and the gap after them."""
    if not slots:
        return 0
    bottom = max(slot.y + s.height for slot, s in zip(slots, shapes))
    return bottom + tail_length(chain, px, size) + px.gap


def _speaker_x(region: Region, speaker: str, speakers: Sequence[str]) -> float:
    """Where the speaker probably stands, in reading coordinates (0 = where reading starts):
    characters stand in the order of ``speakers``; an unknown speaker is taken as centred."""
    if speaker in speakers:
        return region.w * (list(speakers).index(speaker) + 0.5) / len(speakers)
    return region.w / 2
