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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StoryError
from ..story import Story, load_story
from ..story.files import STORY_SUFFIXES
from ..structured import parse_json, parse_yaml, read_text

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
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_CHARACTERS = re.compile(r"[^\w '.-]+")  # what a character name may hold (story/validation.py)


@dataclass
class BenchmarkStory:
    name: str  # its run folder's name: letters, digits, '_', '-', '.'
    story: Story
    text_prefix: str = ""
    references: dict[str, Path] = field(default_factory=dict)  # per character: a picture to score against


def read_prompt_set(path: str | Path, kind: str = "auto") -> list[BenchmarkStory]:
    """The stories of a prompt set; ``kind`` is auto, stories, consistory or vistorybench."""
    source = Path(path)
    if not source.exists():
        raise StoryError(f"prompt set {path}: no such file or folder")
    kind = _detect(source) if kind == "auto" else kind
    readers = {"stories": _story_files, "consistory": _consistory, "vistorybench": _vistorybench}
    if kind not in readers:
        raise StoryError(f"prompt set kind {kind!r} is not known: use auto, {', '.join(readers)}")
    stories = readers[kind](source)
    if not stories:
        raise StoryError(f"prompt set {path} holds no story")
    if len(stories) > MAX_STORIES:
        raise StoryError(f"prompt set {path} holds {len(stories)} stories: at most {MAX_STORIES}")
    names = [item.name for item in stories]
    if len(set(names)) != len(names):
        raise StoryError(f"prompt set {path}: two stories would share a run folder name")
    return stories


def _detect(source: Path) -> str:
    if source.is_dir():
        if (source / "story.json").is_file() or any((d / "story.json").is_file() for d in _numbered(source)):
            return "vistorybench"
        return "stories"
    if source.suffix.lower() in (".yaml", ".yml", ".json"):
        data = _read(source)
        entries = data if isinstance(data, list) else [e for v in data.values() for e in v] if _domains(data) else []
        if entries and all(isinstance(e, dict) and "subject" in e and "settings" in e for e in entries):
            return "consistory"
    return "stories"


def _read(path: Path) -> Any:
    text = read_text(path, "prompt set").lstrip("\ufeff")
    return parse_json(text, path.name) if path.suffix.lower() == ".json" else parse_yaml(text, path.name)


def _domains(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(isinstance(value, list) for value in data.values())


def _numbered(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))


def plain(text: Any) -> str:
    """A benchmark's text as our prompts read it: brackets would be tags and '#' a caption, so they go."""
    return " ".join(str(text).replace("[", "(").replace("]", ")").replace("#", " ").split())


def _folder_name(text: str) -> str:
    return _SAFE_NAME.sub("_", text).strip("_.")[:80] or "story"


def _story_files(source: Path) -> list[BenchmarkStory]:
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.suffix.lower() in STORY_SUFFIXES)
    return [BenchmarkStory(_folder_name(path.stem), load_story(path)) for path in files]


def _consistory(source: Path) -> list[BenchmarkStory]:
    data = _read(source)
    groups = {"set": data} if isinstance(data, list) else data if _domains(data) else None
    if groups is None:
        raise StoryError(f"{source.name}: a ConsiStory+ set is a list of entries, or a mapping of domains to lists")
    stories = []
    for domain, entries in groups.items():
        for index, entry in enumerate(entries):
            where = f"{source.name}: {domain}[{index}]"
            if not isinstance(entry, dict) or any(key not in entry for key in CONSISTORY_KEYS[1:]):
                raise StoryError(f"{where} must have 'subject' and 'settings' (and may have 'style')")
            scenes = entry["settings"]
            if not isinstance(scenes, list) or not scenes:
                raise StoryError(f"{where}.settings must be a list of scene prompts")
            style = plain(entry.get("style") or "")
            panels = [f"{style} [Subject] {plain(scene)}".strip() for scene in scenes]
            data = {"title": plain(entry["subject"]), "characters": {"Subject": plain(entry["subject"])}}
            try:
                story = Story.from_dict({**data, "panels": panels, "settings": {"style": "none"}})
            except StoryError as error:
                raise StoryError(f"{where}: {error}") from None
            name = _folder_name(f"{domain}_{index}")
            stories.append(BenchmarkStory(name, story, CONSISTORY_PREFIX))
    return stories


def _vistorybench(source: Path) -> list[BenchmarkStory]:
    folders = (
        [source]
        if (source / "story.json").is_file()
        else [d for d in _numbered(source) if (d / "story.json").is_file()]
    )
    return [_vistory_story(folder) for folder in folders]


def _character_name(key: Any) -> str:
    """A ViStoryBench character key as a name our stories accept: other signs become spaces."""
    return " ".join(_NAME_CHARACTERS.sub(" ", plain(key)).split()) or "Character"


def _text(value: Any) -> str:
    return plain(value.get("en", "") if isinstance(value, dict) else value or "")


def _vistory_story(folder: Path) -> BenchmarkStory:
    where = f"{folder.name}/story.json"
    data = _read(folder / "story.json")
    characters = data.get("Characters") if isinstance(data, dict) else None
    shots = data.get("Shots") if isinstance(data, dict) else None
    if not isinstance(characters, dict) or not isinstance(shots, list):
        raise StoryError(f"{where} must have 'Characters' (a mapping) and 'Shots' (a list)")
    names = {key: _character_name(key) for key in characters}
    cast = {
        names[key]: _text(value.get("prompt_en", "")) if isinstance(value, dict) else ""
        for key, value in characters.items()
    }
    panels = []
    for position, shot in enumerate(shots):
        if not isinstance(shot, dict):
            raise StoryError(f"{where}: Shots[{position}] must be a mapping")
        appearing = shot.get("Characters Appearing", {})
        keys = appearing.get("en", []) if isinstance(appearing, dict) else []
        tags = " ".join(f"[{names[key]}]" for key in keys if isinstance(key, str) and key in names)
        text = "; ".join(part for part in (_text(shot.get(key)) for key in VISTORY_SHOT_FIELDS) if part)
        panels.append(f"{tags} {text}".strip() if tags else f"[NC] {text}")
    try:
        story = Story.from_dict({"title": f"ViStoryBench {folder.name}", "characters": cast, "panels": panels})
    except StoryError as error:
        raise StoryError(f"{where}: {error}") from None
    references = {}
    for key in characters:
        if Path(str(key)).name != key or key in (".", ".."):  # a name, never a path out of the story's folder
            continue
        pictures = sorted(p for p in (folder / "image" / key).glob("*") if p.suffix.lower() in PICTURE_SUFFIXES)
        if pictures and pictures[0].is_file() and not pictures[0].is_symlink():
            references[names[key]] = pictures[0]
    return BenchmarkStory(_folder_name(folder.name), story, "", references)
