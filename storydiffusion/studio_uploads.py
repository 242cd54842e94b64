"""Reference photos and control images uploaded to the studio, matched to the story by file name.

A photo is named after its character (``Nora.png``), a control image after its panel and kind
(``3-openpose.png``, ``5-canny.jpg``). Only files uploaded to this studio are read (Gradio's record of
uploads), each through the image gate; the story then names them by file name only, so a shared server
never reads a path a user wrote (``StoryPipeline.generate(read_files=False)``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .controlnets import MAX_CONTROL_RATIO
from .errors import StoryDiffusionError, counted, shown
from .images import IMAGE_FORMATS, image_size, read_image
from .reference_adapter import MAX_REFERENCE_RATIO, read_reference
from .story import Story, parse_characters
from .story.control import CONTROL_KINDS, DEFAULT_CONTROL_SCALE, PanelControl
from .story.model import DEFAULT_REFERENCE_SCALE
from .story.names import known_names, name_index, name_key

MAX_PHOTOS = 16
MAX_CONTROL_IMAGES = 64
PHOTOS_LABEL = "Reference photos"
CONTROLS_LABEL = "Control images"
_CONTROL_NAME = re.compile(rf"0*(?P<panel>\d{{1,5}})[-_ ](?P<kind>{'|'.join(CONTROL_KINDS)})", re.IGNORECASE)


@dataclass
class StoryUploads:
    """What a run's uploads add to a story: photos by character, control images by 0-based panel index
    (with their kind), and the two strengths."""

    photos: dict[str, tuple[str, Image.Image]] = field(default_factory=dict)  # name -> (file name, image)
    controls: dict[int, tuple[str, str, Image.Image]] = field(default_factory=dict)  # index -> (kind, file, image)
    photo_scale: float = DEFAULT_REFERENCE_SCALE
    control_scale: float = DEFAULT_CONTROL_SCALE

    def apply(self, story: Story) -> Story:
        """A copy of ``story`` whose characters and panels name their uploads (file names, never paths)."""
        story = Story.from_dict(story.to_dict())
        for name, (filename, _) in self.photos.items():
            story.characters[name] = dataclasses.replace(
                story.characters[name], reference=filename, reference_scale=self.photo_scale
            )
        for index, (kind, filename, _) in self.controls.items():
            story.panels[index].control = PanelControl(kind, filename, self.control_scale)
        return story

    @classmethod
    def from_project(
        cls, story: Story, photos: dict[str, Image.Image], controls: dict[int, Image.Image]
    ) -> StoryUploads:
        """The uploads a saved project carries, named as its story names them (file names only)."""
        found = cls()
        for name, image in photos.items():
            found.photos[name] = (story.characters[name].reference or f"{name}.png", image)
        for index, image in controls.items():
            control = story.panels[index].control
            found.controls[index] = (control.kind, control.image, image)
        return found

    @property
    def photo_images(self) -> dict[str, Image.Image]:
        return {name: image for name, (_, image) in self.photos.items()}

    @property
    def control_images(self) -> dict[int, Image.Image]:
        return {index: image for index, (_, _, image) in self.controls.items()}


def uploaded_files(label: str, value: Any, uploads: Collection[str], limit: int) -> list[Path]:
    """The uploaded files of a multi-file box, each one checked to be an upload to this studio."""
    from .studio_text import uploaded_path

    if value in (None, "", []):
        return []
    values = value if isinstance(value, list) else [value]
    if len(values) > limit:
        raise StoryDiffusionError(f"{label}: {len(values)} files; at most {limit} may be uploaded at once")
    return [Path(uploaded_path(label, item, uploads)) for item in values]


def story_uploads(
    story: Story,
    photos: Any,
    controls: Any,
    uploads: Collection[str],
    photo_scale: float = DEFAULT_REFERENCE_SCALE,
    control_scale: float = DEFAULT_CONTROL_SCALE,
) -> StoryUploads:
    """The photos and control images of two upload boxes, matched to ``story`` by file name and read. Every
    file is looked at before a refusal, which names each file that is wrong and why, in one message."""
    found = StoryUploads(photo_scale=photo_scale, control_scale=control_scale)
    problems: list[str] = []
    for path in uploaded_files(PHOTOS_LABEL, photos, uploads, MAX_PHOTOS):
        try:
            name = _photo_character(story, path, found)
            found.photos[name] = (path.name, read_reference(path, f"{PHOTOS_LABEL}: {path.name}"))
        except StoryDiffusionError as error:
            problems.append(str(error))
    for path in uploaded_files(CONTROLS_LABEL, controls, uploads, MAX_CONTROL_IMAGES):
        try:
            index, kind = _control_panel(story, path, found)
            picture = read_image(path, f"{CONTROLS_LABEL}: {path.name}", max_ratio=MAX_CONTROL_RATIO)
            found.controls[index] = (kind, path.name, picture)
        except StoryDiffusionError as error:
            problems.append(str(error))
    if len(problems) == 1:
        raise StoryDiffusionError(problems[0])
    if problems:
        raise UploadProblems(problems)
    return found


class UploadProblems(StoryDiffusionError):
    """Several uploaded files that cannot be used, each with its own message (``problems``): one line of them
    all for the API and the log, a list on the page (``studio_errors.failure_line``)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _photo_character(story: Story, path: Path, found: StoryUploads) -> str:
    """The character a photo is named after, refused when it names none or one that already has a photo."""
    name = name_index(story.characters).get(name_key(Path(path.name).stem))
    if name is None:
        raise StoryDiffusionError(
            f"{PHOTOS_LABEL}: {shown(path.name)} names no character of the story (characters: "
            f"{known_names(story.characters)}); name each photo after its character, e.g. Nora.png"
        )
    if name in found.photos:
        raise StoryDiffusionError(f"{PHOTOS_LABEL}: two photos of {name}; upload one per character")
    return name


def _control_panel(story: Story, path: Path, found: StoryUploads) -> tuple[int, str]:
    """The panel (0-based) and kind a control image is named after, refused when its name says neither, its
    panel is not in the story, or that panel already has one."""
    match = _CONTROL_NAME.fullmatch(Path(path.name).stem)
    if match is None:
        raise StoryDiffusionError(
            f"{CONTROLS_LABEL}: {shown(path.name)} does not say its panel and kind; name it like "
            f"3-openpose.png (kinds: {', '.join(CONTROL_KINDS)})"
        )
    panel = int(match["panel"])
    if not 1 <= panel <= len(story.panels):
        raise StoryDiffusionError(
            f"{CONTROLS_LABEL}: {path.name} is for panel {panel}, but the story has {counted(len(story.panels), 'panel')}"
        )
    if panel - 1 in found.controls:
        raise StoryDiffusionError(f"{CONTROLS_LABEL}: two images for panel {panel}; upload one per panel")
    return panel - 1, match["kind"].lower()


def steering_from_ui(story: Story, values: Sequence[Any], uploads: Collection[str]) -> StoryUploads:
    """Reference photos, photo strength, control images and control strength, matched to ``story``."""
    from .studio_text import setting_value

    photos, photo_scale, controls, control_scale = values
    photo_scale = setting_value("reference_scale", photo_scale)
    control_scale = setting_value("control_scale", control_scale)
    return story_uploads(story, photos, controls, uploads, photo_scale, control_scale)


def uploads_summary(found: StoryUploads) -> str:
    """What a run will take from the uploads, in one line: each photo's character, each control image's panel."""
    parts = [f"{filename} steers {name}" for name, (filename, _) in found.photos.items()]
    parts += [
        f"{filename} {kind} for panel {index + 1}" for index, (kind, filename, _) in sorted(found.controls.items())
    ]
    return f"Ready: {'; '.join(parts)}." if parts else ""


def characters_rows(characters: Any, photos: Any, uploads: Collection[str] = ()) -> list[list[str]]:
    """The characters table: each character of the Characters box, its description and the name of its
    photo among the images uploaded to this studio (``uploads``). A photo is listed once its header passes
    the image gate (cheap: nothing decoded); another kind of file, ``Mia.txt``, or a picture the run would
    refuse (too large, too long, not an image), is no one's photo. Rows of what parses."""
    from .studio_text import text_value, uploaded_path

    try:
        parsed = parse_characters(text_value("Characters", characters))
    except StoryDiffusionError:
        return []
    names = {}
    for item in photos if isinstance(photos, list) else [photos] if photos else []:
        record = item if isinstance(item, dict) else {"path": item}
        filename = str(record.get("orig_name") or Path(str(record.get("path") or "")).name)
        if Path(filename).suffix.lower() in _image_suffixes():
            try:
                image_size(uploaded_path(PHOTOS_LABEL, record, uploads), filename, max_ratio=MAX_REFERENCE_RATIO)
            except StoryDiffusionError:
                continue  # the uploads' line says what is wrong with it
            names[name_key(Path(filename).stem)] = filename
    return [[name, c.description, names.get(name_key(name), "—")] for name, c in parsed.items()]


def _image_suffixes() -> set[str]:
    """The file name endings of the image formats the studio reads (``.png``, ``.jpg``, ...)."""
    return {suffix for suffix, kind in Image.registered_extensions().items() if kind in IMAGE_FORMATS}
