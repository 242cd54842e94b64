"""Prompt sets a benchmark draws: our own story files, a ConsiStory+-style subject list, a ViStoryBench folder.

Each becomes a list of ``BenchmarkStory``: a name for its run folder, a ``Story`` and what its protocol
scores with (a text prefix for CLIP-T, reference pictures for the "cross" similarity). The benchmarks'
prompts are read from the path the user gives; none ship with this project.

* **Story files**: a ``.yaml``/``.json`` story, or a folder of them.
* **ConsiStory+** (the file 1Prompt1Story publishes): a mapping of domains to lists of entries
  ``{concept_token, style, subject, settings: [scene, ...]}`` (a bare list of entries is read too).
  Each entry is one story: one character (the subject) in each scene, the prompt being
  ``"{style} {subject} {scene}"``; CLIP-T reads it after "A photo depicts ", as that protocol does.
* **ViStoryBench**: a folder of numbered story folders (or one of them), each with ``story.json``
  (``Characters``: description ``prompt_en``; ``Shots``: camera, plot, static description, setting, the
  characters appearing) and ``image/<character>/`` reference pictures, used only to score against.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoryDiffusionError, StoryError, shown
from ..story import STORY_KEYS, Story, load_story
from ..story.files import STORY_SUFFIXES
from ..structured import parse_json, parse_yaml, plain_digits, read_text

CONSISTORY_PREFIX = "A photo depicts "
CONSISTORY_KEYS = ("style", "subject", "settings")
VISTORY_SHOT_FIELDS = (
    "Shot Perspective Design",
    "Plot Correspondence",
    "Static Shot Description",
    "Setting Description",
)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_STORIES = 10_000
_SAFE_NAME = re.compile(r"[^\w.-]+")  # letters and digits of any script: 猫 and 犬 stay apart
_NAME_CHARACTERS = re.compile(r"[^\w '.-]+")  # what a character name may hold (story/validation.py)


@dataclass
class BenchmarkStory:
    name: str  # its run folder's name: letters, digits, '_', '-', '.'
    story: Story
    text_prefix: str = ""
    references: dict[str, Path] = field(default_factory=dict)  # per character: a picture to score against
    source: str = ""  # where the set has it (a file's name, an entry): named when two share a folder


def read_prompt_set(path: str | Path, kind: str = "auto") -> list[BenchmarkStory]:
    """The stories of a prompt set; ``kind`` is auto, stories, consistory or vistorybench."""
    source = Path(path)
    if not source.exists():
        raise StoryError(f"prompt set {path}: no such file or folder")
    readers = {"stories": _story_files, "consistory": _consistory, "vistorybench": _vistorybench}
    if kind != "auto" and kind not in readers:
        raise StoryError(f"--kind {kind!r} is not known: use auto, {', '.join(readers)}")
    kind = _detect(source) if kind == "auto" else kind
    if kind == "vistorybench" and not source.is_dir():
        raise StoryError(f"--kind vistorybench: {path} is a file; name the ViStoryBench folder (or one story's)")
    if kind == "consistory" and source.is_dir():
        raise StoryError(f"--kind consistory: {path} is a folder; name the ConsiStory+ YAML or JSON file")
    stories = readers[kind](source)
    if not stories:
        raise StoryError(f"prompt set {path} holds no story")
    if len(stories) > MAX_STORIES:
        raise StoryError(f"prompt set {path} holds {len(stories)} stories: at most {MAX_STORIES}")
    seen: dict[str, BenchmarkStory] = {}
    for item in stories:  # folders differing in case collide on macOS and Windows
        key = item.name.casefold()
        if key in seen:
            first = seen[key]
            which = f" ({first.source} and {item.source})" if first.source and item.source else ""
            raise StoryError(
                f"prompt set {path}: two stories{which} would share the run folder {first.name!r} ({item.name!r}): "
                "rename one"
            )
        seen[key] = item
    return stories


def _detect(source: Path) -> str:
    if source.is_dir():
        folders = [source, *_numbered(source)]
        return "vistorybench" if any(_is_vistory(folder / "story.json") for folder in folders) else "stories"
    if _is_vistory(source):  # its pictures are in the folder beside it
        raise StoryError(
            f"{source} is a ViStoryBench story: name its folder ({source.parent}), which holds its pictures"
        )
    if source.suffix.lower() in (".yaml", ".yml", ".json"):
        data = _read(source)
        if isinstance(data, list) or (isinstance(data, dict) and data and not set(STORY_KEYS) & set(data)):
            return "consistory"  # no key a story has: read as domains, whose errors then name the domain
    return "stories"


def _is_vistory(path: Path) -> bool:
    """A ViStoryBench ``story.json`` (its ``Shots``), not a run's manifest of the same name."""
    if not path.is_file():
        return False
    try:
        data = _read(path)
    except StoryDiffusionError:  # too large or not JSON: a run's manifest, or not a story at all
        return False
    return isinstance(data, dict) and "Shots" in data


def _read(path: Path) -> Any:
    text = read_text(path, "prompt set").lstrip("\ufeff")
    return parse_json(text, path.name) if path.suffix.lower() == ".json" else parse_yaml(text, path.name)


def _domains(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(isinstance(value, list) for value in data.values())


def _numbered(folder: Path) -> list[Path]:
    found = [
        d for d in folder.iterdir() if d.is_dir() and not d.is_symlink() and plain_digits(d.name) and len(d.name) <= 9
    ]
    return sorted(found, key=lambda d: int(d.name))


def plain(text: str) -> str:
    """A benchmark's text as our prompts read it: brackets would be tags and '#' a caption, so they go."""
    return " ".join(text.replace("[", "(").replace("]", ")").replace("#", " ").split())


def _text(value: Any, where: str, required: bool = True) -> str:
    """A text field of a prompt set, made plain; anything but text is refused naming its place."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise StoryError(f"{where} must be text, got {shown(value)}")
    return plain(value)


def _folder_name(text: str) -> str:
    """A story's run folder: its name's letters and digits (NFKC), at most 60 (240 bytes, under any file
    system's limit)."""
    return _SAFE_NAME.sub("_", unicodedata.normalize("NFKC", text)).strip("_.")[:60] or "story"


def _story_files(source: Path) -> list[BenchmarkStory]:
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix.lower() in STORY_SUFFIXES)
    return [BenchmarkStory(_folder_name(path.stem), _named_story(path), source=path.name) for path in files]


def _named_story(path: Path) -> Story:
    """A story of a folder of them: its errors name its file, as generate names them."""
    try:
        return load_story(path)
    except StoryDiffusionError as error:
        message = str(error)
        if message.startswith(path.name) or message.startswith(str(path)):
            raise
        raise StoryError(f"{path.name}: {message}") from None


def _consistory(source: Path) -> list[BenchmarkStory]:
    data = _read(source)
    groups = {"set": data} if isinstance(data, list) else data if _domains(data) else None
    if groups is None:
        items = data.items() if isinstance(data, dict) else []
        wrong = next((f": {key} is {shown(value)}" for key, value in items if not isinstance(value, list)), None)
        raise StoryError(
            f"{source.name}: a ConsiStory+ set is a list of entries, or a mapping of domains to lists of entries"
            + (wrong or f", not {shown(data)}")
        )
    stories = []
    for domain, entries in groups.items():
        for index, entry in enumerate(entries):
            where = f"{source.name}: {domain}[{index}]"
            if not isinstance(entry, dict) or any(key not in entry for key in CONSISTORY_KEYS[1:]):
                raise StoryError(f"{where} must have 'subject' and 'settings' (and may have 'style')")
            scenes = entry["settings"]
            if not isinstance(scenes, list):
                raise StoryError(f"{where}.settings must be a list of scene prompts, got {shown(scenes)}")
            if not scenes:
                raise StoryError(f"{where}.settings is empty: give at least one scene prompt")
            style = _text(entry.get("style"), f"{where}.style", required=False)
            subject = _text(entry["subject"], f"{where}.subject")
            panels = [
                f"{style} [Subject] {_text(scene, f'{where}.settings[{number}]')}".strip()
                for number, scene in enumerate(scenes)
            ]
            story_data = {"title": subject, "characters": {"Subject": subject}, "panels": panels}
            try:
                story = Story.from_dict({**story_data, "settings": {"style": "none"}})
            except StoryError as error:
                raise StoryError(f"{where}: {error}") from None
            stories.append(BenchmarkStory(_folder_name(f"{domain}_{index}"), story, CONSISTORY_PREFIX))
    return stories


def _vistorybench(source: Path) -> list[BenchmarkStory]:
    if (source / "story.json").is_file():
        return [_vistory_story(source)]
    return [_vistory_story(folder) for folder in _numbered(source) if (folder / "story.json").is_file()]


def _character_name(key: str) -> str:
    """A ViStoryBench character key as a name our stories accept: other signs become spaces."""
    return " ".join(_NAME_CHARACTERS.sub(" ", plain(key)).split()) or "Character"


def _vistory_cast(characters: dict, where: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each character key's name in our stories, and each name's description; two keys may not share a name."""
    names: dict[str, str] = {}
    cast: dict[str, str] = {}
    for key, value in characters.items():
        name = _character_name(str(key))
        if name.casefold() in {known.casefold() for known in cast}:
            other = next(k for k, n in names.items() if n.casefold() == name.casefold())
            raise StoryError(f"{where}: characters {other!r} and {key!r} would both be named {name!r}")
        if not isinstance(value, dict):
            raise StoryError(f"{where}: Characters.{key} must be a mapping with prompt_en")
        names[str(key)], cast[name] = name, _text(value.get("prompt_en"), f"{where}: Characters.{key}.prompt_en")
    return names, cast


def _shot_text(shot: dict, key: str, where: str) -> str:
    value = shot.get(key)
    if isinstance(value, dict):
        return _text(value.get("en"), f"{where}.{key}.en", required=False)
    return _text(value, f"{where}.{key}", required=False)


def _vistory_story(folder: Path) -> BenchmarkStory:
    where = f"{folder.name}/story.json"
    data = _read(folder / "story.json")
    characters = data.get("Characters") if isinstance(data, dict) else None
    shots = data.get("Shots") if isinstance(data, dict) else None
    if not isinstance(characters, dict) or not isinstance(shots, list):
        raise StoryError(f"{where} must have 'Characters' (a mapping) and 'Shots' (a list)")
    names, cast = _vistory_cast(characters, where)
    panels = []
    for position, shot in enumerate(shots):
        place = f"{where}: Shots[{position}]"
        if not isinstance(shot, dict):
            raise StoryError(f"{place} must be a mapping")
        appearing = shot.get("Characters Appearing", {})
        keys = appearing.get("en", []) if isinstance(appearing, dict) else appearing
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise StoryError(f"{place}.Characters Appearing.en must be a list of character names, got {shown(keys)}")
        unknown = [key for key in keys if key not in names]
        if unknown:
            raise StoryError(f"{place}.Characters Appearing.en names {unknown[0]!r}, not one of the story's Characters")
        tags = " ".join(f"[{names[key]}]" for key in keys)
        text = "; ".join(part for part in (_shot_text(shot, key, place) for key in VISTORY_SHOT_FIELDS) if part)
        panels.append(f"{tags} {text}".strip() if tags else f"[NC] {text}")
    try:
        story = Story.from_dict({"title": f"ViStoryBench {folder.name}", "characters": cast, "panels": panels})
    except StoryError as error:
        raise StoryError(f"{where}: {error}") from None
    return BenchmarkStory(_folder_name(folder.name), story, "", _vistory_references(folder, names))


def _vistory_references(folder: Path, names: dict[str, str]) -> dict[str, Path]:
    """Each character's first reference picture in ``image/<key>/``: a plain file inside the story's
    folder, never through a link or a key that is a path."""
    inside = folder.resolve()
    references = {}
    for key, name in names.items():
        pictures_dir = folder / "image" / key
        if Path(key).name != key or key in (".", "..") or pictures_dir.is_symlink() or (folder / "image").is_symlink():
            continue
        if not pictures_dir.is_dir() or not pictures_dir.resolve().is_relative_to(inside):
            continue
        pictures = sorted(p for p in pictures_dir.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
        if pictures and pictures[0].is_file() and not pictures[0].is_symlink():
            references[name] = pictures[0]
    return references
