"""The ``storydiffusion`` command: runs the subcommands, shows progress, maps errors to exit codes.

The arguments are in ``cli_parser.py``; the work is done by the library.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .cli_parser import build_parser
from .errors import ModelOutOfMemory, StoryDiffusionError, model_memory
from .rundir import RunWriter, check_output_dir, prepare_output_dir
from .settings import SETTING_RANGES

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
OUT_OF_MEMORY_HINT = (
    "lower --height/--width, --window or --id-images, or add --cpu-offload and --vae-tiling; "
    "the panels finished so far are in the output folder"
)


def _load_story_and_model(path: str):
    """A story file, or the manifest of an earlier run (then its model too)."""
    from .rundir import read_manifest
    from .settings import GenerationSettings
    from .story import Story, load_story

    if path.endswith(".json"):
        try:
            manifest = read_manifest(path)
        except StoryDiffusionError:
            manifest = None  # a story file in JSON, or unreadable: load_story says which
        if manifest is not None:
            story = Story.from_dict(manifest["story"])
            story.settings = GenerationSettings.from_dict(manifest["settings"])
            return story, manifest.get("model", {}).get("name")
    return load_story(path), None


def run_generate(args: argparse.Namespace) -> int:
    """Check everything, load the model, generate (or continue the run in --out), then compose if asked."""
    from .bank import IdentityBank
    from .pipeline import StoryPipeline
    from .resume import earlier_run, is_incomplete

    if args.export and not args.layout:
        args.layout = "classic"
    if args.layout:  # a bad layout or export list fails now, not after the panels are generated
        from .layout.compose import check_options

        check_options(args.layout, args.export)
    story, manifest_model = _load_story_and_model(args.story)
    settings = _generation_settings(story.settings, args)
    _check_panel_numbers(args.panels, len(story.panels))
    earlier = earlier_run(args.out)
    continuing = earlier is not None and (args.panels is not None or is_incomplete(earlier))
    check_output_dir(args.out, overwrite=args.overwrite or continuing)  # before any model loads; deletes nothing
    SETTING_RANGES["lora_scale"].check("--lora-scale", args.lora_scale)
    bank = IdentityBank.load(args.bank) if args.bank else None
    with model_memory():
        pipeline = StoryPipeline.from_pretrained(
            args.model or manifest_model,
            device=args.device,
            dtype=args.dtype,
            cpu_offload=args.cpu_offload,
            vae_slicing=args.vae_slicing,
            vae_tiling=args.vae_tiling,
            lora=args.lora,
            lora_scale=args.lora_scale,
        )
    out, writer, panels = _run_folder(args, earlier if continuing else None, story, settings, pipeline)
    with _StepBar(args.quiet) as bar, model_memory():
        result = pipeline.generate(
            story,
            settings,
            panels=panels,
            bank=bank,
            bank_storage="device" if args.bank_on_device else "auto",
            callback=bar.update,
            on_start=writer.start,
            on_panel=writer.panel,
        )
    _report_generation(result, out, writer.finish(result, save_bank=args.save_bank))
    if args.layout:
        from .layout.compose import compose_run

        _report_compose(compose_run(out, layout=args.layout, export=args.export or ()))
    return 0


def _run_folder(args: argparse.Namespace, earlier, story, settings, pipeline):
    """The output folder, its writer and the panels to draw: a continued run keeps what it may keep;
    a new run (or --overwrite of another one) starts from a prepared, empty folder."""
    from .resume import plan_continuation

    if earlier is not None:
        resolved = pipeline.resolve_settings(story, settings)
        try:
            plan = plan_continuation(args.out, earlier, story, resolved, pipeline.spec.name, args.panels)
        except StoryDiffusionError:
            if not args.overwrite:
                raise
        else:
            return Path(args.out), RunWriter(args.out, plan.keep, plan.bank_file), plan.panels
    out = prepare_output_dir(args.out, overwrite=args.overwrite)
    return out, RunWriter(out), args.panels


def _check_panel_numbers(panels: list[int] | None, count: int) -> None:
    """--panels names panels of this story: checked before the model loads or the folder changes."""
    if panels is None:
        return
    if not panels:
        raise StoryDiffusionError("--panels names no panel: give 1-based panel numbers such as 2,5")
    missing = [index + 1 for index in panels if not 0 <= index < count]
    if missing:
        raise StoryDiffusionError(
            f"--panels {missing[0]} does not exist: the story has {count} panels, numbered from 1"
        )


def _generation_settings(base, args: argparse.Namespace):
    """The story's settings with the command line's options on top, checked against SETTING_RANGES."""
    settings = base.merged(
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        height=args.height,
        width=args.width,
        sampling_rate=args.sampling_rate,
        id_images=args.id_images,
        window=args.window,
        mode="off" if args.no_consistency else args.mode,
        first_consistent_step=args.first_consistent_step,
        style=args.style,
        negative_prompt=args.negative_prompt,
        scheduler=args.scheduler,
    )
    settings.validate()
    return settings


class _StepBar:
    """A tqdm bar over every denoising step of a story run, naming the panels being drawn."""

    def __init__(self, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=None, unit="step", disable=quiet, file=sys.stderr)

    def update(self, progress) -> None:
        if self.bar.total is None:
            self.bar.total = progress.batches * progress.steps
        self.bar.n = progress.batch * progress.steps + progress.step
        shown = ",".join(str(i + 1) for i in progress.panels) or "reference portraits"
        self.bar.set_postfix_str(f"panels {shown}" + (" (identity set)" if progress.kind == "identity" else ""))
        self.bar.refresh()

    def __enter__(self) -> _StepBar:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()


def _report_generation(result, out, manifest) -> None:
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"{len(result.panels)} panels in {out / 'panels'}; manifest {manifest}")
    if result.bank is not None and len(result.bank):
        print(f"identity bank: {result.bank.nbytes() / 2**20:.1f} MiB for {len(result.bank.sources())} identity images")


def run_compose(args: argparse.Namespace) -> int:
    from .layout.compose import compose_run

    result = compose_run(
        args.run_dir,
        layout=args.layout,
        export=args.export,
        title=not args.no_title,
        fit=args.fit,
        dpi=args.dpi,
        lettering=not args.no_lettering,
    )
    _report_compose(result)
    return 0


def run_animate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .motion.animate import animate_run, check_request, read_run_panels

    # bad input fails before any model is loaded
    check_request(args.frames, args.fps, steps=args.steps, guidance=args.guidance, strength=args.strength)
    read_run_panels(args.run_dir, args.start, args.end)
    bar = tqdm(total=None, unit="step", disable=args.quiet, file=sys.stderr)

    def progress(update) -> None:
        bar.total = update.steps
        bar.n = update.step
        bar.refresh()

    try:
        with model_memory():
            result = animate_run(
                args.run_dir,
                args.start,
                args.end,
                frames=args.frames,
                fps=args.fps,
                model=args.model,
                predictor=args.predictor,
                prompt=args.prompt,
                negative_prompt=args.negative_prompt,
                seed=args.seed,
                steps=args.steps,
                guidance=args.guidance,
                strength=args.strength,
                device=args.device,
                dtype=args.dtype,
                callback=progress,
            )
    finally:
        bar.close()
    print(f"{len(result.frames)} frames: {result.mp4}, {result.gif} ({result.note}; {result.seconds:.1f} s)")
    return 0


def _report_compose(result) -> None:
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    extra = "".join(f", {path}" for kind, path in result.files.items() if kind != "pages")
    count = len(result.pages)
    print(
        f"{count} {result.template} page{'s' if count != 1 else ''} in {result.run_dir / 'pages'}{extra} ({result.seconds:.1f} s)"
    )


def _stop_on_sigterm() -> None:
    """SIGTERM (a closed terminal, a cluster's time limit) stops a run as Ctrl+C does: the finished
    panels and a manifest that says the run is incomplete stay in the folder."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _stop_on_sigterm()
    try:
        if args.command == "generate":
            return run_generate(args)
        if args.command == "compose":
            return run_compose(args)
        if args.command == "animate":
            return run_animate(args)
    except ModelOutOfMemory as error:
        print(f"error: out of memory ({error}): {OUT_OF_MEMORY_HINT}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoryDiffusionError as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory while reading the input: check the size of the files given", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}: check the path and its permissions", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "interrupted: the finished panels are in the output folder and listed in its story.json; "
            "run the same command again to draw the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT
