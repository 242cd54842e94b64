"""``generate a.yaml b.yaml c.yaml --out-root runs/``: several stories in one command, one folder each.

Under several processes the stories are divided when there are at least as many as processes (each
process draws whole stories alone, the only writer of their folders); with fewer stories than
processes each story is spread over all of them in turn (``distributed.py``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .rundir import check_output_path

_FOLDER_SIGNS = re.compile(r"[^\w.-]+")


def story_folder_name(path: str) -> str:
    """The folder a story's run gets under --out-root: the file's stem (a run's story.json: its folder's name)."""
    source = Path(path)
    stem = source.parent.name if source.name == "story.json" else source.stem
    return _FOLDER_SIGNS.sub("_", stem).strip("._") or "story"


def story_jobs(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One copy of ``args`` per story, with ``story`` and ``out`` set; the flags that name one story's
    things (--out, --panels, --bank) are refused with several stories."""
    stories = list(args.story)
    if args.out is not None and args.out_root is not None:
        raise SettingsError("give --out (one story) or --out-root (a folder per story), not both")
    if args.out is None and args.out_root is None:
        raise SettingsError("--out is required: the folder the run is written to (or --out-root, a folder per story)")
    if args.out is not None and len(stories) > 1:
        raise SettingsError(f"{len(stories)} stories need --out-root (a folder per story), not --out")
    if len(stories) > 1:
        for flag, value in (("--panels", args.panels), ("--bank", args.bank)):
            if value is not None:
                raise SettingsError(f"{flag} names things of one story: give one story with it")
    if args.out is not None:
        return [_job(args, stories[0], args.out)]
    folders = [story_folder_name(path) for path in stories]
    repeated = sorted({name for name in folders if [n.casefold() for n in folders].count(name.casefold()) > 1})
    if repeated:
        raise SettingsError(f"two stories would share the folder {repeated[0]!r} under --out-root: rename one")
    check_output_path(Path(args.out_root), flag="--out-root")  # a file there is named by its own flag
    return [_job(args, path, str(Path(args.out_root) / name)) for path, name in zip(stories, folders)]


def _job(args: argparse.Namespace, story: str, out: str) -> argparse.Namespace:
    job = argparse.Namespace(**vars(args))
    job.story, job.out = story, out
    return job


def divide_stories(count: int, share: Any) -> tuple[list[int], Any]:
    """Which stories this process draws, and the share each is drawn with: whole stories round-robin
    (no share) when there are at least as many as processes, else every story over every process."""
    if share is None:
        return list(range(count)), None
    if count >= share.world:
        return [index for index in range(count) if index % share.world == share.rank], None
    return list(range(count)), share
