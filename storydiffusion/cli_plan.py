"""The ``plan`` subcommand: a story's predicted memory per phase, and the settings that fit a budget."""

from __future__ import annotations

import argparse

from .cli_checks import check_bank_flags, check_model_flag, generation_settings


def run_plan(args: argparse.Namespace) -> int:
    """Print the predicted memory of each phase; with --vram/--ram, the settings that fit (exit 2 if none)."""
    from .cli_generate import _load_story_and_model, check_story_images
    from .cli_output import quiet_model_libraries

    check_model_flag(args.model)
    check_bank_flags(args)
    story, manifest_model = _load_story_and_model(args.story)
    check_story_images(story)  # a photo or pose generate would refuse is refused here too, by the same words
    settings = generation_settings(story.settings, args)
    from .memory_plan import MemoryPlanner, fit_budget, format_fit, format_plan, nothing_fits  # torch: after the checks

    with quiet_model_libraries():
        planner = MemoryPlanner(
            story,
            settings,
            args.model or manifest_model,
            device=args.device,
            dtype=args.dtype,
            control_union=args.control_union,
        )
    requested = planner.requested(**_plan_placement(args))
    print(format_plan(planner, planner.predict(requested)))
    if args.vram is None and args.ram is None:
        return 0
    fit = fit_budget(planner, vram=args.vram, ram=args.ram)
    print(format_fit(fit))
    if not fit.fits:
        raise nothing_fits(fit, args.vram, args.ram)
    return 0


def _plan_placement(args: argparse.Namespace) -> dict:
    """The placement flags of ``plan`` as ``MemoryPlanner.requested`` takes them; --low-vram adds its preset's."""
    from .models.low_vram import LOW_VRAM

    if args.low_vram:  # the preset already turns on every flag it can be combined with
        return LOW_VRAM.plan_options()
    vae = "tiling" if args.vae_tiling else "slicing" if args.vae_slicing else "plain"
    return {"cpu_offload": args.cpu_offload, "vae": vae, "bank_tier": "device" if args.bank_on_device else "host"}
