"""Where a ``generate`` run is written: its own folder, a continued one kept in place, or (--overwrite of an
earlier run) a staging folder that replaces the earlier run only once the new one is finished."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .errors import StoryDiffusionError
from .rundir import RunWriter, prepare_output_dir


@dataclass
class RunTarget:
    """Where a run is written: ``out`` itself, or (--overwrite of an earlier run) a staging folder inside
    it that replaces the earlier run only once the new one is finished."""

    out: Path
    writer: RunWriter
    panels: list[int] | None
    staged: bool = False

    def kept_note(self) -> str:
        return (
            f"{self.out} still holds the earlier run, unchanged; the new run so far is in {self.writer.out}: "
            "run the same command again to finish it and replace the earlier run"
        )

    def finish(self, result, save_bank: bool, bank_file: str | None) -> Path:
        """The last manifest; a finished staged run then replaces the earlier run (never the --bank it read)."""
        manifest = self.writer.finish(result, save_bank=save_bank)
        if not self.staged or result.cancelled:
            return manifest
        from .staging import swap_in_staged_run

        return swap_in_staged_run(self.out, keep=(Path(bank_file),) if bank_file else ())


def run_target(args: argparse.Namespace, earlier, story, settings, pipeline) -> RunTarget:
    """Where to write and which panels to draw: a continued run keeps what it may keep in place; an
    --overwrite that would replace an earlier run is staged (or its staged run continued); anything
    else starts in a prepared folder. ``settings`` are resolved."""
    from .resume import plan_continuation
    from .staging import needs_staging, start_staged_run

    out = Path(args.out)
    face = pipeline.face_model_name(settings, any(c.reference for c in story.characters.values()))
    if earlier is not None:
        try:
            plan = plan_continuation(out, earlier, story, settings, pipeline.spec.name, args.panels, face)
        except StoryDiffusionError:
            if not args.overwrite:
                raise
        else:
            return RunTarget(out, _continuing_writer(out, plan, story, args), plan.panels)
    if args.overwrite and needs_staging(out):
        staging, plan = start_staged_run(out, story, settings, pipeline.spec.name, args.panels, face)
        if plan is None:
            return RunTarget(out, RunWriter(staging, drawing=args.panels, **_may_write(args)), args.panels, staged=True)
        return RunTarget(out, _continuing_writer(staging, plan, story, args), plan.panels, staged=True)
    out = prepare_output_dir(out, overwrite=args.overwrite)
    return RunTarget(out, RunWriter(out, drawing=args.panels, **_may_write(args)), args.panels)


def _continuing_writer(out: Path, plan, story, args: argparse.Namespace) -> RunWriter:
    drawing = plan.writer_drawing(len(story.panels))
    return RunWriter(out, plan.keep, plan.bank_file, drawing, plan.bank_digest, **_may_write(args))


def _may_write(args: argparse.Namespace) -> dict[str, bool]:
    """Which of the files a run writes on request this one may write: their names are checked before it starts."""
    return {"masks": args.save_masks, "bank": args.save_bank}
