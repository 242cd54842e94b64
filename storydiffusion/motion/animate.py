"""Animating the transition between two panels of a run folder: the library side of ``animate`` and the web tab.

``animate_run(out, 3, 4)`` reads ``out/story.json`` and ``out/panels/panel_003.png`` /
``panel_004.png`` and writes ``out/video/03-04.mp4``, ``03-04.gif`` and ``03-04.json`` (how it
was made). ``animate_images`` does the same for two images from anywhere (the web app).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..atomic import write_json
from ..errors import shown
from ..images import read_image
from ..run_manifest import manifest_panels, read_manifest, run_folder_manifest, story_from_manifest
from ..run_records import DIGESTS, file_digest
from ..run_targets import refuse_foreign_targets
from ..rundir import MANIFEST_NAME, PANELS_DIR, VIDEO_DIR, panel_filename
from ..settings import DEFAULT_FPS, DEFAULT_FRAMES
from .checkpoints import read_predictor_config
from .checks import AnimationError, check_animate_model, check_denoising, check_frames, check_setting, check_text
from .export import write_gif, write_mp4
from .video import TransitionPipeline, TransitionProgress


class PanelNumberError(AnimationError):
    """A panel number that the run does not have (numbers are 1-based, as in the file names)."""


class MissingPanelError(AnimationError):
    """The run's manifest names a panel whose image file is not there."""


@dataclass
class AnimationResult:
    """Files written and the frames, with a note on how the in-between embeddings were made."""

    mp4: Path
    gif: Path
    note: str
    frames: list[Image.Image] = field(repr=False)
    seconds: float = 0.0
    info: Path | None = None


def transition_name(start: int, end: int) -> str:
    """``03-04`` for panels 3 and 4 (1-based, two digits at least)."""
    return f"{start:02d}-{end:02d}"


def check_request(
    frames: int,
    fps: float,
    *,
    steps: int | None = None,
    guidance: float | None = None,
    strength: float | None = None,
    seed: int | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    predictor: str | Path | Any = None,
) -> None:
    """Fail before any model is loaded on settings that can never work (ranges: ``SETTING_RANGES``),
    on prompts longer than a story's, and on a predictor folder that cannot be read."""
    check_frames(frames)
    check_setting("fps", "--fps", fps)
    check_denoising(steps, guidance, strength)
    if seed is not None:
        check_setting("seed", "--seed", seed)
    for label, text in (("--prompt", prompt), ("--negative-prompt", negative_prompt)):
        if text is not None:
            check_text(label, text)
    if isinstance(predictor, (str, Path)):
        read_predictor_config(predictor)


def load_transition_pipeline(
    model: str | None = "default",
    predictor: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    **kwargs: Any,
) -> TransitionPipeline:
    """``tiny`` (offline, random weights), ``default`` (SD 1.5 + AnimateDiff v1-5-2 + IP-Adapter Plus) or an SD 1.5 hub id / folder."""
    from ..models.devices import select_device, select_dtype

    check_animate_model(model)
    select_dtype(select_device(device), dtype)  # a device or dtype that cannot be is refused for every model
    if model == "tiny":  # the offline demo draws on the CPU in float32
        return TransitionPipeline.tiny(predictor=predictor)
    if model in (None, "", "default"):
        return TransitionPipeline.from_pretrained(predictor=predictor, device=device, dtype=dtype, **kwargs)
    return TransitionPipeline.from_pretrained(base=model, predictor=predictor, device=device, dtype=dtype, **kwargs)


def read_run_panels(run_dir: str | Path, start: int, end: int) -> tuple[dict[str, Any], dict[str, Any], Path, Path]:
    """The manifest entries and image paths of panels ``start`` and ``end`` (1-based) of a run folder."""
    run = Path(run_dir)
    manifest = read_manifest(run_folder_manifest(run, "animate", AnimationError))
    total = len(story_from_manifest(manifest).panels)  # a hand-edited story.json is validated first
    entries = {index + 1: entry for index, entry in manifest_panels(manifest).items()}
    if start == end:
        raise PanelNumberError(f"--from and --to are both {start}: animate between two different panels")
    chosen = []
    for number in (start, end):
        if isinstance(number, bool) or not isinstance(number, int):
            raise PanelNumberError(f"panel numbers are whole numbers from 1, not {shown(number)}")
        if number < 1 or number > total:
            raise PanelNumberError(
                f"panel {number} does not exist: this run has panels 1 to {total} (numbers are 1-based)"
            )
        entry = entries.get(number)
        path = run / PANELS_DIR / panel_filename(number - 1)
        if entry is None or not path.is_file():
            raise MissingPanelError(
                f"panel {number} has no image ({path.relative_to(run).as_posix()}): generate it first, e.g. "
                f"`storydiffusion generate {run / MANIFEST_NAME} --out {run} --panels {number}` "
                "(it redraws that panel in place and keeps the others)"
            )
        chosen.append((entry, path))
    return chosen[0][0], chosen[1][0], chosen[0][1], chosen[1][1]


def check_clip_files(run_dir: str | Path, start: int, end: int) -> None:
    """Refuse a clip whose files (``video/SS-EE.mp4``, ``.gif``, ``.json``) would replace a file of the user's."""
    name = transition_name(start, end)
    clip_files = [f"{VIDEO_DIR}/{name}{suffix}" for suffix in (".mp4", ".gif", ".json")]
    refuse_foreign_targets(run_dir, clip_files, fix="animate a copy of the run folder")


def animate_images(
    pipeline: TransitionPipeline,
    start_image: Image.Image,
    end_image: Image.Image,
    prompt: str,
    out_dir: str | Path,
    frames: int = DEFAULT_FRAMES,
    fps: float = DEFAULT_FPS,
    name: str = "transition",
    callback: Callable[[TransitionProgress], None] | None = None,
    cancel: Any = None,
    **settings: Any,
) -> AnimationResult:
    """Animate between two images and write ``out_dir/name.mp4`` and ``.gif``: the web app's entry point.

    ``settings`` go to the pipeline (negative_prompt, steps, guidance, seed, height, width, strength).
    """
    check_request(frames, fps, prompt=_prompt_text(prompt), **_checked(settings))
    _check_clip_name(name)
    began = time.perf_counter()
    result = pipeline(start_image, end_image, prompt, frames=frames, callback=callback, cancel=cancel, **settings)
    out = Path(out_dir)
    mp4 = write_mp4(result.frames, out / f"{name}.mp4", fps)
    gif = write_gif(result.frames, out / f"{name}.gif", fps)
    return AnimationResult(
        mp4=mp4, gif=gif, note=result.note, frames=result.frames, seconds=time.perf_counter() - began
    )


def _prompt_text(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise AnimationError(f"prompt must be text (what the clip shows), not {type(prompt).__name__}")
    return prompt


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """The pipeline settings ``check_request`` checks by name (the rest the pipeline checks itself)."""
    names = ("steps", "guidance", "strength", "seed", "negative_prompt")
    return {name: settings[name] for name in names if settings.get(name) is not None}


def _check_clip_name(name: Any) -> None:
    """``name`` is a file name inside ``out_dir`` (``03-04``): never a path that leads out of it."""
    plain = isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name
    if not plain or any(ord(ch) < 32 for ch in name):
        raise AnimationError(
            f"name must be a plain file name without folders, such as '03-04', not {shown(name)}: the clip is "
            "written inside out_dir"
        )


def animate_run(
    run_dir: str | Path,
    start: int,
    end: int,
    frames: int = DEFAULT_FRAMES,
    fps: float = DEFAULT_FPS,
    model: str | None = "default",
    predictor: str | Path | None = None,
    prompt: str | None = None,
    negative_prompt: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    guidance: float = 7.5,
    strength: float = 0.9,
    device: str = "auto",
    dtype: str = "auto",
    pipeline: TransitionPipeline | None = None,
    callback: Callable[[TransitionProgress], None] | None = None,
    cancel: Any = None,
) -> AnimationResult:
    """Animate panel ``start`` -> ``end`` (1-based) of a run folder into ``run_dir/video/SS-EE.mp4`` / ``.gif``.

    The prompt defaults to the two panels' prompts joined; a loaded ``pipeline`` may be passed to
    animate several pairs without reloading the models.
    """
    check_request(
        frames,
        fps,
        steps=steps,
        guidance=guidance,
        strength=strength,
        seed=seed,
        prompt=prompt,
        negative_prompt=negative_prompt,
        predictor=predictor,
    )
    first, last, start_path, end_path = read_run_panels(run_dir, start, end)
    check_clip_files(run_dir, start, end)  # before any model loads
    name = transition_name(start, end)
    out = Path(run_dir) / VIDEO_DIR
    start_image, end_image = read_image(start_path), read_image(end_path)  # ImageInputError names a broken one
    if prompt is None:
        prompt = "; ".join(p for p in (first.get("prompt"), last.get("prompt")) if p)
    if negative_prompt is None:
        negative_prompt = first.get("negative_prompt") or None
    pipe = pipeline if pipeline is not None else load_transition_pipeline(model, predictor, device, dtype)
    settings: dict[str, Any] = dict(seed=seed, steps=steps, guidance=guidance, strength=strength)
    if negative_prompt:
        settings["negative_prompt"] = negative_prompt
    record = {
        "from": start,
        "to": end,
        "frames": frames,
        "fps": fps,
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "seed": seed,
        "steps": steps if steps is not None else pipe.default_steps,
        "guidance": guidance,
        "strength": strength,
        "model": pipe.name,
        "embeddings": "semantic motion predictor" if pipe.uses_predictor else "linear interpolation",
        "files": [f"{name}.mp4", f"{name}.gif"],
    }
    info = out / f"{name}.json"
    out.mkdir(parents=True, exist_ok=True)
    write_json(info, {**record, "complete": False})  # the clip's files are on record before they are written
    result = animate_images(
        pipe,
        start_image,
        end_image,
        prompt,
        out,
        frames=frames,
        fps=fps,
        name=name,
        callback=callback,
        cancel=cancel,
        **settings,
    )
    sha256 = {path.name: file_digest(path) for path in (result.mp4, result.gif)}  # an edit afterwards is the user's
    write_json(
        info,
        {
            **record,
            "sha256": sha256,
            "digests": DIGESTS,
            "note": result.note,
            "seconds": round(result.seconds, 3),
            "complete": True,
        },
    )
    result.info = info
    return result
