"""The ``storydiffusion`` command: runs the subcommands, shows progress, maps errors to exit codes.

The arguments are in ``cli_parser.py``; the work is done by the library.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from .cli_checks import check_listed, check_weights_flag, interrupted_exit, stop_on_sigterm
from .cli_parser import build_parser
from .errors import ModelOutOfMemory, StoryDiffusionError, model_memory
from .launcher import in_process_group, launch_processes, launched_by_us, leave_process_group, record_exit
from .settings import SETTING_RANGES

EXIT_BAD_INPUT = 2
OUT_OF_MEMORY_HINT = (
    "lower --height/--width, --window or --id-images, or add --cpu-offload and --vae-tiling; "
    "the panels finished so far are in the output folder"
)


def run_compose(args: argparse.Namespace) -> int:
    from .cli_output import report_compose
    from .layout.compose import compose_run

    check_listed(args.export, "--export", "png, pdf, cbz and/or zip, separated by commas")
    if args.dpi is not None:
        SETTING_RANGES["dpi"].check("--dpi", args.dpi)
    result = compose_run(
        args.run_dir,
        layout=args.layout,
        export=args.export,
        title=not args.no_title,
        fit=args.fit,
        dpi=args.dpi,
        lettering=not args.no_lettering,
        direction=args.direction,
    )
    report_compose(result)
    return 0


def run_animate(args: argparse.Namespace) -> int:
    from .cli_output import TransitionBar, quiet_model_libraries
    from .motion.animate import animate_run, check_clip_files, check_request, read_run_panels
    from .motion.checks import check_animate_model

    # bad input fails before any model is loaded
    check_weights_flag(args.model, "--model")
    check_animate_model(args.model)  # animate's own model names, not the registry's
    check_request(
        args.frames,
        args.fps,
        steps=args.steps,
        guidance=args.guidance,
        strength=args.strength,
        seed=args.seed,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        predictor=args.predictor,
    )
    read_run_panels(args.run_dir, args.start, args.end)
    check_clip_files(args.run_dir, args.start, args.end)
    with TransitionBar(args.quiet) as bar, model_memory(), quiet_model_libraries():
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
            callback=bar.update,
        )
    print(f"{len(result.frames)} frames: {result.mp4}, {result.gif} ({result.note}; {result.seconds:.1f} s)")
    return 0


@contextmanager
def _library_warnings_shown() -> Iterator[None]:
    """While a command runs, what the library logs as a warning (a fallback taken while loading, say) is printed
    as a ``warning:`` line; the library itself only logs (its package logger has a NullHandler)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("storydiffusion")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


INTERRUPTED_NOTES = {  # what a stopped command leaves, and what to do next
    "generate": "the finished panels are in the output folder and listed in its story.json; "
    "run the same command again to draw the rest (and make the pages, with --layout)",
    "compose": "the run's panels are untouched; run the same command again to make the pages",
    "animate": "the run's panels are untouched; run the same command again to make the clip",
    "benchmark": "the finished runs are kept; run the same command again to continue",
}


def _interrupted_note(args: argparse.Namespace) -> str:
    """What a stopped command left: a ``generate`` stopped before its first record (while the model loaded)
    left no run to point at."""
    if args.command == "generate":
        from .rundir import MANIFEST_NAME

        outs = [Path(args.out)] if getattr(args, "out", None) else []
        root = Path(args.out_root) if getattr(args, "out_root", None) else None
        outs += [folder for folder in root.iterdir() if folder.is_dir()] if root is not None and root.is_dir() else []
        if not any((out / MANIFEST_NAME).is_file() for out in outs):
            return "it stopped before any panel was drawn, and nothing was written; run the same command again"
    return INTERRUPTED_NOTES.get(args.command, "nothing was left half-written")


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The subcommand's function, its module imported only now: ``--help`` and a bad input answer at once,
    without loading torch or diffusers."""
    if name == "generate":
        from .cli_generate import run_generate

        return run_generate
    if name == "plan":
        from .cli_plan import run_plan

        return run_plan
    if name in ("evaluate", "benchmark"):
        from .cli_evaluation import run_benchmark_command, run_evaluate

        return run_evaluate if name == "evaluate" else run_benchmark_command
    return {"compose": run_compose, "animate": run_animate}[name]


def entry() -> NoReturn:
    """The ``storydiffusion`` command (and ``python -m storydiffusion``): ``main``'s code as the exit status;
    one of several processes leaves without the interpreter's teardown (``leave_process_group``)."""
    code = main()
    if in_process_group():
        leave_process_group(code)
    sys.exit(code)


EXIT_BROKEN_PIPE = 141  # as a shell reports a command ended by SIGPIPE


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0), or a usage error already printed as one line (2)
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    launching = args.command == "generate" and args.devices and "WORLD_SIZE" not in os.environ
    if not launching:
        stop_on_sigterm()
    with _library_warnings_shown():
        code = _run(args, argv, launching)
    if args.command == "generate" and not launching and launched_by_us():
        record_exit(code)  # the first process tells the --devices launcher how the run ended, and
        return 0  # torchrun hears "done", so it adds no report of its own to the message already printed
    return code


def _run(args: argparse.Namespace, argv: list[str] | None, launching: bool) -> int:
    try:
        if launching:  # check here, once, then run the same command as one process per device
            from .cli_generate import _check_generate

            _check_generate(args, None)
            return launch_processes(list(sys.argv[1:] if argv is None else argv), args.devices)
        return _command(args.command)(args)
    except ModelOutOfMemory as error:
        if not getattr(error, "reported_elsewhere", False):  # several processes: the first one says it
            print(f"error: out of memory ({error}): {OUT_OF_MEMORY_HINT}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoryDiffusionError as error:
        if not getattr(error, "reported_elsewhere", False):  # several processes: the first one says it
            print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print("error: out of memory while reading the input: check the size of the files given", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader of our output has gone (`| head`): nothing is wrong with the input
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit says nothing either
        return EXIT_BROKEN_PIPE
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}: check the path and its permissions", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as stop:
        if not getattr(stop, "reported_elsewhere", False):  # a staged run has printed what it kept
            print(f"interrupted: {_interrupted_note(args)}", file=sys.stderr)
        return interrupted_exit(stop)
    return EXIT_BAD_INPUT
