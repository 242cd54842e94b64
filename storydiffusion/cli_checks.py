"""The command line's own checks: each flag is checked under its name (``--guidance must be ...``)
before any model loads or the output folder changes, so a message names what the user typed."""

from __future__ import annotations

import argparse
import os
import signal
import threading

from .errors import StoryDiffusionError, counted, shown
from .settings import SETTING_RANGES, GenerationSettings, check_text
from .structured import MAX_NUMBER_CHARS, check_regular_file, plain_digits
from .styles import check_style_name
from .weight_sources import lora_weights_file, missing_lora_message

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl+C
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report a kill

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "Terminated",
    "interrupted_exit",
    "stop_on_sigterm",
    "folder_value",
    "decimal_value",
    "whole_value",
    "check_bank_flags",
    "check_model_flag",
    "check_weights_flag",
    "check_panel_numbers",
    "generation_settings",
]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so that it stops as it does on Ctrl+C (the finished work kept)."""


def stop_on_sigterm() -> None:
    """SIGTERM (a closed terminal, a cluster's time limit) stops a command as Ctrl+C does: the finished
    panels and a manifest that says the run is incomplete, or the last checkpoint, stay in the folder."""

    def interrupt(signum, frame):
        raise Terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def interrupted_exit(stop: KeyboardInterrupt) -> int:
    """The exit code a shell would report had the signal not been caught: 130 for Ctrl+C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


def whole_value(text: str) -> int:
    """A flag's whole number as a story file writes it: ASCII digits with an optional minus (``int`` would
    also take '١٢', '1_000' and '²'), so that the CLI and the story file accept the same numbers."""
    digits = text.strip().removeprefix("-")
    if not plain_digits(digits) or len(digits) > MAX_NUMBER_CHARS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number written with the digits 0-9, such as 30, got {shown(text)}"
        )
    return int(text)


def decimal_value(text: str) -> float:
    """A flag's decimal number in ASCII (``float`` would also take '٧.٥' and '7_5'); 'nan' and 'inf' pass
    here and are refused by the setting's range, which names the flag and the allowed values."""
    if not text.isascii() or "_" in text or len(text) > MAX_NUMBER_CHARS:
        raise argparse.ArgumentTypeError(
            f"expected a number written with the digits 0-9, such as 7.5, got {shown(text)}"
        )
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 7.5, got {shown(text)}") from None


def folder_value(text: str) -> str:
    """argparse's type for a folder: an empty one (an unset shell variable) would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: name a folder (an unset shell variable?)")
    return text


def check_model_flag(model: str | None) -> None:
    """--model checked before anything heavy is imported: a misspelt name is refused in a moment."""
    if model is None:
        return
    check_weights_flag(model, "--model")
    from .models.registry import check_model_name, load_model_registry

    check_model_name(model, load_model_registry())


def check_weights_flag(value: str, flag: str) -> None:
    """An empty value (an unset shell variable) would silently mean the default, and a local path that is
    neither a folder nor a regular file (a named pipe) would block the loader forever."""
    if not value.strip():
        raise StoryDiffusionError(
            f"{flag} is empty: give a name from configs/models.yaml, a hub id, a folder or a file, or leave {flag} out"
        )
    if os.path.exists(value) and not os.path.isdir(value):
        check_regular_file(value, flag)


def check_listed(value: str | None, flag: str, choices: str) -> None:
    """A flag given with nothing in it (``--export=``, ``--export=,``, an unset shell variable) would silently
    mean leaving it out: refused, saying what it takes."""
    if value is not None and not value.replace(",", "").strip():
        raise StoryDiffusionError(f"{flag} is empty: give {choices}, or leave {flag} out")


def check_lora_flag(lora: str | None) -> None:
    """--lora as --model, and a path that is not there refused before the model it would go into loads."""
    if lora is None:
        return
    check_weights_flag(lora, "--lora")
    refused = missing_lora_message(lora) or lora_weights_file(lora)[1]
    if refused is not None:
        raise StoryDiffusionError(f"--lora: {refused}")


def check_bank_flags(args: argparse.Namespace) -> None:
    """--bank-memory bounds a bank held in host memory, and --low-vram keeps it there; --bank-on-device
    holds none there."""
    if getattr(args, "bank_memory", None) is not None and args.bank_on_device:
        raise StoryDiffusionError(
            "--bank-memory bounds the identity bank in host memory, --bank-on-device keeps it in GPU memory: "
            "give one of them"
        )
    if args.low_vram and args.bank_on_device:
        raise StoryDiffusionError(
            "--low-vram keeps the identity bank in host memory to save GPU memory, --bank-on-device puts it in "
            "GPU memory: give one of them"
        )


def check_panel_numbers(panels: list[int] | None, count: int) -> None:
    """--panels names panels of this story: checked before the model loads or the folder changes."""
    if panels is None:
        return
    if not panels:
        raise StoryDiffusionError("--panels names no panel: give 1-based panel numbers such as 2,5")
    missing = [index + 1 for index in panels if not 0 <= index < count]
    if missing:
        raise StoryDiffusionError(
            f"--panels {missing[0]} does not exist: the story has {counted(count, 'panel')}, numbered from 1"
        )


def generation_settings(base: GenerationSettings, args: argparse.Namespace) -> GenerationSettings:
    """The story's settings with the command line's options on top, checked against SETTING_RANGES.

    Each option given is checked under its flag first (``--guidance must be ...``), so a message
    names what the user typed rather than the setting behind it.
    """
    checked = ("steps", "guidance", "seed", "height", "width", "id_images", "window", "first_consistent_step")
    for name in (*checked, "subject_threshold"):
        if getattr(args, name) is not None:
            SETTING_RANGES[name].check("--" + name.replace("_", "-"), getattr(args, name))
    if isinstance(args.sampling_rate, float):
        SETTING_RANGES["sampling_rate"].check("--sampling-rate", args.sampling_rate)
    elif isinstance(args.sampling_rate, dict):
        for factor, rate in args.sampling_rate.items():
            SETTING_RANGES["sampling_rate"].check(f"--sampling-rate {factor}:", rate)
    for name in ("style", "scheduler", "negative_prompt"):
        if getattr(args, name) is not None:
            check_text("--" + name.replace("_", "-"), getattr(args, name))
    if args.style is not None:
        check_style_name(args.style, "--style")
    if args.scheduler is not None:
        from .models.schedulers import check_scheduler_name

        check_scheduler_name(args.scheduler, "--scheduler")
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
        consistency=args.consistency,
        reference_adapter=args.reference_adapter,
        subject_threshold=args.subject_threshold,
        first_consistent_step=args.first_consistent_step,
        style=args.style,
        negative_prompt=args.negative_prompt,
        scheduler=args.scheduler,
    )
    settings.validate()
    return settings
