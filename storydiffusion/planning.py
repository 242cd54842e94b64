"""Which images are generated together and what each one reads: identity sets, batches, windows.

A plan is a list of batches. Memory stays bounded because a batch holds at most ``window`` panels
(or one identity set), and the bank holds only identity images (identity mode) or the previous
window (window mode), never every panel of the story.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .attention_context import ImageSlot, stable_hash
from .errors import StoryError, counted
from .settings import GenerationSettings
from .story import Story


@dataclass(frozen=True)
class PlannedImage:
    """One image to generate. ``panel_index`` is None for a hidden reference portrait."""

    source_id: int
    seed: int
    panel_index: int | None
    character: str | None = None


@dataclass
class Batch:
    """Images generated together and what each reads and writes; ``forget_after``: bank entries to drop after it."""

    kind: str  # "identity", "panels", "window" or "plain"
    images: list[PlannedImage]
    slots: list[ImageSlot]
    character: str | None = None
    forget_after: list[int] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return any(slot.reads_batch or slot.reads_bank or slot.writes for slot in self.slots)


def derive_seed(story_seed: int, *parts: object) -> int:
    """A per-panel seed from the story seed: stable, independent of the other panels."""
    return stable_hash(story_seed, *parts) % 2**32


def panel_seed(story: Story, index: int, settings: GenerationSettings) -> int:
    explicit = story.panels[index].seed
    return int(explicit) if explicit is not None else derive_seed(settings.seed, "panel", index)


def reference_source_id(character_number: int, image_number: int) -> int:
    """Hidden reference portraits get negative ids so they never collide with panel indices."""
    return -(1 + character_number * 64 + image_number)


def identity_sets(story: Story, settings: GenerationSettings) -> dict[str, list[int]]:
    """Panel indices forming each character's identity set (empty list: it needs reference portraits).

    Explicit ``identity_panels`` win; otherwise the first ``id_images`` panels where the character
    appears alone. A panel can belong to one identity set only.
    """
    sets: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for name in story.characters:
        if name in story.identity_panels:
            chosen = list(story.identity_panels[name])
        else:
            chosen = [i for i, panel in enumerate(story.panels) if tuple(panel.characters) == (name,)]
            chosen = chosen[: settings.id_images]
        for index in chosen:
            if index in owner:
                raise StoryError(
                    f"panel {index + 1} is in the identity sets of both {owner[index]} and {name}: "
                    "give each character its own identity panels"
                )
            owner[index] = name
        sets[name] = chosen
    return sets


def drawn_panels(story: Story, settings: GenerationSettings, panels: list[int] | None) -> set[int]:
    """The panels whose control maps a run needs: those asked for and, in identity mode, every identity
    panel (drawn or already banked, its map is part of the bank's signature either way)."""
    wanted = {i for i in (range(len(story.panels)) if panels is None else panels) if 0 <= i < len(story.panels)}
    if settings.mode != "identity":
        return wanted
    return wanted | {member for members in identity_sets(story, settings).values() for member in members}


def plan_story(
    story: Story,
    settings: GenerationSettings,
    panels: list[int] | None = None,
    banked: dict[str, list[int]] | None = None,
) -> list[Batch]:
    """Batches that generate ``panels`` (default: all) of ``story``.

    ``banked`` maps characters that already have a bank (from an earlier run or a project file) to
    their source ids there: their identity sets are not generated again, and a requested identity
    panel of theirs is regenerated as a reader of the bank.
    """
    wanted = list(range(len(story.panels))) if panels is None else sorted(set(panels))
    for index in wanted:
        if not 0 <= index < len(story.panels):  # 0-based here: say it so, a -1 is no "panel 0"
            raise StoryError(
                f"panel index {index} does not exist: the story has {counted(len(story.panels), 'panel')}, "
                f"indices 0..{len(story.panels) - 1} (0 is the first)"
                if index < 0
                else f"panel {index + 1} does not exist: the story has {counted(len(story.panels), 'panel')}"
            )
    if settings.mode == "off":
        return _chunks(story, settings, wanted, kind="plain")
    if settings.mode == "window":
        return _window_plan(story, settings, wanted)
    return _identity_plan(story, settings, wanted, dict(banked or {}))


def _image(story: Story, settings: GenerationSettings, index: int) -> PlannedImage:
    return PlannedImage(source_id=index, seed=panel_seed(story, index, settings), panel_index=index)


def _chunks(story: Story, settings: GenerationSettings, wanted: list[int], kind: str) -> list[Batch]:
    return [
        Batch(kind, [_image(story, settings, i) for i in chunk], [ImageSlot(i) for i in chunk])
        for chunk in _split(wanted, settings.window)
    ]


def _split(items: list[int], size: int) -> list[list[int]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _window_plan(story: Story, settings: GenerationSettings, wanted: list[int]) -> list[Batch]:
    """Consecutive windows: each panel reads its window-mates and the previous window's samples."""
    batches: list[Batch] = []
    previous: list[int] = []
    chunks = _split(wanted, settings.window)
    for number, chunk in enumerate(chunks):
        has_next = number + 1 < len(chunks)
        slots = [
            ImageSlot(
                source_id=i,
                reads_batch=tuple(q for q in range(len(chunk)) if q != position),
                reads_bank=tuple(previous),
                writes=has_next,
            )
            for position, i in enumerate(chunk)
        ]
        images = [_image(story, settings, i) for i in chunk]
        batches.append(Batch("window", images, slots, forget_after=list(previous)))
        previous = chunk
    return batches


def _identity_plan(
    story: Story, settings: GenerationSettings, wanted: list[int], banked: dict[str, list[int]]
) -> list[Batch]:
    sets = identity_sets(story, settings)
    needed_characters = {name for i in wanted for name in story.panels[i].characters}
    sources: dict[str, list[int]] = {}
    batches: list[Batch] = []
    generated: set[int] = set()
    for number, (name, members) in enumerate(sets.items()):
        if name not in needed_characters:
            continue
        if name in banked:
            sources[name] = list(banked[name])
            continue
        if members:
            images = [_image(story, settings, i) for i in members]
        else:
            images = [
                PlannedImage(
                    source_id=reference_source_id(number, k),
                    seed=derive_seed(settings.seed, "reference", name, k),
                    panel_index=None,
                    character=name,
                )
                for k in range(settings.id_images)
            ]
        slots = [
            ImageSlot(
                source_id=image.source_id,
                reads_batch=tuple(q for q in range(len(images)) if q != position),
                writes=True,
            )
            for position, image in enumerate(images)
        ]
        batches.append(Batch("identity", images, slots, character=name))
        sources[name] = [image.source_id for image in images]
        generated.update(members)

    rest = [i for i in wanted if i not in generated]
    for chunk in _split(rest, settings.window):
        slots = []
        for i in chunk:
            reads = [s for name in story.panels[i].characters for s in sources.get(name, []) if s != i]
            slots.append(ImageSlot(source_id=i, reads_bank=tuple(reads)))
        batches.append(Batch("panels", [_image(story, settings, i) for i in chunk], slots))
    # Identity panels the caller did not ask for are still generated (they build the bank); the
    # pipeline reports only the panels asked for.
    return batches
