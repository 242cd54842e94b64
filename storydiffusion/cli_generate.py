"""The ``generate`` subcommand: every story and flag checked before any folder changes, the model loaded
once, each story drawn into its folder (continued, staged for --overwrite, over several processes)."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cli_checks import (
    check_bank_flags,
    check_listed,
    check_lora_flag,
    check_model_flag,
    check_panel_numbers,
    generation_settings,
)
from .cli_output import StepBar, quiet_model_libraries, report_compose, report_generation
from .cli_run_target import RunTarget, run_target
from .cli_stories import divide_stories, story_jobs
from .errors import StoryDiffusionError, StoryError, model_memory
from .run_manifest import manifest_model_name, manifest_panels
from .run_targets import refuse_foreign_targets
from .rundir import MANIFEST_NAME, check_output_dir
from .settings import SETTING_RANGES


def _command_line_share(args: argparse.Namespace):
    """This process's place among the processes launched together, None alone (distributed.py, imported
    only then: a single process checks its inputs before torch loads)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from .distributed import command_line_share

    return command_line_share(args)


def _load_story_and_model(path: str):
    """A story file, or the manifest of an earlier run (then its model too)."""
    from .run_inputs import altered_copies, altered_copy_message
    from .run_manifest import ManifestFormatError, read_manifest, story_from_manifest
    from .story import load_story

    if path.endswith(".json"):
        try:
            manifest = read_manifest(path)
        except ManifestFormatError:
            raise  # another version's run: as a story file it would be a list of unknown keys
        except StoryDiffusionError:
            manifest = None  # a story file in JSON, or unreadable: load_story says which
        if manifest is not None:
            story = story_from_manifest(manifest, Path(path).name, base=Path(path).parent)  # its inputs/ there
            manifest_panels(manifest, Path(path).name)  # checked as compose, evaluate and animate check it
            for altered in altered_copies(story, manifest, Path(path).parent):  # drawn from the run's own pictures
                raise StoryError(f"{Path(path).name}: {altered_copy_message(*altered)}")
            return story, manifest_model_name(manifest, Path(path).name)
    return load_story(path), None


def check_story_images(story):
    """The characters' reference photos, read, and the panels' control images, header-checked (only the
    light imports when a story has neither)."""
    if not any(c.reference for c in story.characters.values()) and not any(p.control for p in story.panels):
        return {}
    from .story_references import story_images

    return story_images(story)


def run_generate(args: argparse.Namespace) -> int:
    """Check every story and option before any folder changes, then draw each story: into --out, or one
    folder each under --out-root; over the processes launched together when there are several."""
    share = _command_line_share(args)  # several processes launched together (distributed.py)
    try:
        jobs, checked, (mine, story_share) = _agreed(share, lambda: _check_generate(args, share))
        pipelines: dict = {}
        for index in mine:
            code = _draw_story(jobs[index], checked[index], story_share, pipelines)
            if code != 0:
                return code
        return 0
    finally:
        if share is not None:
            from .distributed import release_processes

            release_processes(share)


def _check_generate(args: argparse.Namespace, share) -> tuple[list, list, tuple]:
    """The flags, then every story, its folder and its bank, before any model loads; each folder by the process
    that writes it (the first of several, or the one drawing that story alone). Also which stories this process
    draws, and with which share (``divide_stories``)."""
    check_listed(args.layout, "--layout", "a layout name such as classic or manga")
    check_listed(args.export, "--export", "pdf, cbz and/or zip, separated by commas")
    if (args.export or args.direction) and not args.layout:
        args.layout = "classic"
    if args.layout:  # a bad layout or export list fails now, not after the panels are generated
        from .layout.compose import check_options

        check_options(args.layout, args.export, direction=args.direction)
    check_model_flag(args.model)
    check_lora_flag(args.lora)
    check_bank_flags(args)
    if args.face_model:  # a folder that cannot be InsightFace's pack fails now, not after the model loads
        from .faces import face_folder

        face_folder(args.face_model)
    SETTING_RANGES["lora_scale"].check("--lora-scale", args.lora_scale)
    jobs = story_jobs(args)  # one Namespace per story, its story and out set
    mine, story_share = divide_stories(len(jobs), share)

    def writes(index: int) -> bool:
        if share is None:
            return True
        return share.writes if story_share is not None else index in mine

    checked = [_story_checked(job, writes(index), len(jobs), share is None) for index, job in enumerate(jobs)]
    return jobs, checked, (mine, story_share)


def _story_checked(job: argparse.Namespace, writes: bool, stories: int, alone: bool = True) -> _CheckedStory:
    """``_check_story``; among several stories, a refusal names the file it is about."""
    try:
        return _check_story(job, writes, alone)
    except StoryDiffusionError as error:
        name = Path(job.story).name
        if stories == 1 or name in str(error):
            raise
        raise StoryDiffusionError(f"{name}: {error}") from None


def _agreed(share, step):
    """``step()``; under several processes they all stop together when it fails on any one of them."""
    if share is None:
        return step()
    try:
        outcome, error = step(), None
    except StoryDiffusionError as failure:
        outcome, error = None, failure
    share.agree(error)
    return outcome


@dataclass
class _CheckedStory:
    story: Any
    manifest_model: str | None
    photos: dict
    settings: Any
    earlier: Any
    continuing: bool
    bank: Any
    compose_only: bool = False  # every panel is drawn: the command stopped before its pages were all made


def _targets(args: argparse.Namespace, story, drawn: list[int] | None = None) -> list[str]:
    """Every file this story's run (and its --layout) may write in --out; ``drawn``: the panels a continued
    run draws (None: all of them)."""
    from .run_inputs import story_inputs
    from .run_targets import compose_targets, story_targets

    inputs = [item.name for item in story_inputs(story).values()]  # the story's pictures, copied into the run
    names = story_targets(story, masks=args.save_masks, bank=args.save_bank, panels=drawn, inputs=inputs)
    if args.layout:
        from .layout.compose import parse_exports

        names += compose_targets(parse_exports(args.export), len(story.panels) + 1)
    return names


def _check_story(args: argparse.Namespace, writes: bool = True, alone: bool = True) -> _CheckedStory:
    """One story's file, images, settings, panels, output folder (where ``writes``) and bank, checked.
    ``alone``: one process (several draw together, and only ever a run that has something to draw)."""
    from .layout.compose import parse_exports
    from .resume import composition_left, earlier_run, refuse_finished, to_continue
    from .run_targets import EXPORT_NAMES

    story, manifest_model = _load_story_and_model(args.story)
    photos = check_story_images(story)  # every photo read, every control image's header checked: before any model
    settings = generation_settings(story.settings, args)
    check_panel_numbers(args.panels, len(story.panels))
    if writes:  # a device that does not exist or is not here, before any model loads
        from .models.devices import select_device

        select_device(args.device)
    bank = _read_bank(args.bank, settings.mode) if args.bank else None  # the user's inputs, then the folder
    if photos and settings.reference_adapter == "face":  # the face model, before the diffusion model loads
        from .faces import check_face_model
        from .models.registry import load_model_registry

        spec = load_model_registry().get(args.model or manifest_model or "")
        check_face_model(args.face_model, tiny=spec is not None and spec.source == "tiny")
    earlier = earlier_run(args.out) if writes else None
    continuing = to_continue(earlier, args.out, args.panels)
    compose_only = False
    if earlier is not None and not args.overwrite:  # a broken record fails before the model, naming its entry
        manifest_model_name(earlier, str(Path(args.out) / MANIFEST_NAME))
        manifest_panels(earlier, str(Path(args.out) / MANIFEST_NAME))
        if not continuing:
            exports = [EXPORT_NAMES[kind] for kind in parse_exports(args.export) if kind in EXPORT_NAMES]
            compose_only = (
                bool(args.layout)
                and alone
                and composition_left(earlier, args.out, story, exports, settings, args.model or manifest_model)
            )
            if not compose_only:
                refuse_finished(earlier, args.out)
    if writes:
        # Before any model loads; deletes nothing.
        check_output_dir(args.out, overwrite=args.overwrite or continuing or compose_only)
        drawn = _continued_panels(args, earlier, story, settings) if continuing and not args.overwrite else None
        drawn = [] if compose_only else drawn  # it draws nothing: only its pages and exports are checked
        refuse_foreign_targets(args.out, _targets(args, story, drawn))  # nor replaces a file of the user's
    return _CheckedStory(story, manifest_model, photos, settings, earlier, continuing, bank, compose_only)


def _continued_panels(args: argparse.Namespace, manifest, story, settings) -> list[int] | None:
    """The panels a continued run draws in place (0-based): those of --panels, else those the earlier run left
    undrawn; None when it draws them all (a window reads the one before it, so it starts again)."""
    from .resume import unfinished_panels

    if args.panels is not None:
        return args.panels
    return None if settings.mode == "window" else unfinished_panels(manifest, args.out, len(story.panels))


def _draw_story(args: argparse.Namespace, checked: _CheckedStory, share, pipelines: dict) -> int:
    """Load the model (once for every story naming it), then draw one checked story into its folder:
    continuing the run there, or with --overwrite staging its replacement; compose if asked."""
    story, photos, bank = checked.story, checked.photos, checked.bank
    if checked.compose_only:  # nothing to draw, so no model: the pages the stopped command did not make
        from .layout.compose import compose_run

        print(f"{args.out} holds every panel of this story already: making its pages")
        report_compose(compose_run(args.out, layout=args.layout, export=args.export or (), direction=args.direction))
        return 0
    pipeline, settings, controls = _agreed(share, lambda: _prepare_model(args, checked, pipelines))
    if share is None:
        target = run_target(args, checked.earlier if checked.continuing else None, story, settings, pipeline)
    else:  # the first process writes the manifest; each process draws, and writes where all see the folder
        from .distributed import NoWriter

        earlier = checked.earlier if checked.continuing else None
        target = _agreed(share, lambda: run_target(args, earlier, story, settings, pipeline) if share.writes else None)
        where = share.broadcast_json(
            {"panels": target.panels, "folder": str(target.writer.out.absolute())} if share.writes else None
        )
        target = target if share.writes else RunTarget(Path(args.out), NoWriter(), where["panels"])
        share = share.writing_into(where["folder"], target.writer.record if share.writes else None)
    result = _draw(args, pipeline, story, settings, bank, target, photos, controls, share)
    if share is not None and not share.writes:
        if result.bank is not None:
            result.bank.close()  # its disk tier, if it spilled: every process has its own
        return 0
    report_generation(result, target.out, target.finish(result, args.save_bank, args.bank))
    if result.bank is not None:
        result.bank.close()  # its disk tier, if it spilled
    if args.layout:
        from .layout.compose import compose_run

        report_compose(compose_run(target.out, layout=args.layout, export=args.export or (), direction=args.direction))
    elif result.panels:
        _compose_again(target.out)
    return 0


def _compose_again(out: Path) -> None:
    """Pages composed before from earlier panels are typeset again as they were, or the user is told to."""
    from .layout import LayoutError
    from .layout.compose import compose_again

    try:
        composed = compose_again(out)
    except LayoutError as error:
        print(
            f"warning: the pages in {out} show the earlier panels and could not be typeset again ({error}): "
            f"run 'storydiffusion compose {out} --layout ...'",
            file=sys.stderr,
        )
        return
    if composed is not None:
        report_compose(composed)


def _prepare_model(args: argparse.Namespace, checked: _CheckedStory, pipelines: dict):
    """The story's model (one kept loaded at a time), its adapters and control maps, the bank checked
    against it: everything that can fail before the folder changes. The pipeline, resolved settings, and
    the control images, each file read once at the run's size."""
    from .controlnets import story_control_pictures

    model = args.model or checked.manifest_model
    if model not in pipelines:
        pipelines.clear()  # stories naming other models load them in turn: never two at once
        pipelines[model] = _load_pipeline(args, checked.manifest_model)
    pipeline = pipelines[model]
    if checked.photos:
        with model_memory(), quiet_model_libraries():
            pipeline.attach_references(checked.settings.reference_adapter)  # its weights, before the folder changes
    settings = pipeline.resolve_settings(checked.story, checked.settings)
    if args.layout:  # pages that cannot be typeset are refused before a panel is drawn
        from .layout.compose import check_pages_fit

        check_pages_fit(args.layout, checked.story, (settings.width, settings.height))
    if settings.reference_adapter == "face":  # a photo without a face is refused now; a whole photo cannot fail
        pipeline.reference_embeddings(checked.story, checked.photos, settings)
    controls = story_control_pictures(checked.story, (settings.width, settings.height))
    with model_memory(), quiet_model_libraries():
        pipeline.control_maps(checked.story, settings, given=controls)  # their ControlNets loaded
    if checked.bank is not None:  # does it fit the model, settings and characters? before any step runs
        pipeline.check_bank(checked.bank, checked.story, settings, args.panels, checked.photos, controls)
    return pipeline, settings, controls


def _read_bank(path: str, mode: str):
    """--bank, read and checked against --mode before any model loads (its fit to the model comes after)."""
    from .bank import IdentityBank

    bank = IdentityBank.load(path)
    bank.check_mode(mode)
    return bank


def _load_pipeline(args: argparse.Namespace, manifest_model: str | None):
    from .pipeline import StoryPipeline

    with model_memory(), quiet_model_libraries():
        return StoryPipeline.from_pretrained(
            args.model or manifest_model,
            device=args.device,
            dtype=args.dtype,
            cpu_offload=args.cpu_offload,
            vae_slicing=args.vae_slicing,
            vae_tiling=args.vae_tiling,
            low_vram=args.low_vram,
            control_union=args.control_union,
            face_model=args.face_model,
            lora=args.lora,
            lora_scale=args.lora_scale,
        )


def _draw(
    args: argparse.Namespace,
    pipeline,
    story,
    settings,
    bank,
    target: RunTarget,
    photos=None,
    controls=None,
    share=None,
):
    """Generate into the target's folder; a staged run that is interrupted says here what it kept."""
    try:
        with StepBar(args.quiet) as bar, model_memory(), quiet_model_libraries():  # our warnings say it once
            return pipeline.generate(
                story,
                settings,
                panels=target.panels,
                bank=bank,
                bank_storage="device" if args.bank_on_device else "auto",
                bank_memory=args.bank_memory,
                bank_prefetch=args.bank_prefetch,
                keep_masks=args.save_masks,
                references=photos,
                control_images=controls,
                callback=bar.update,
                on_start=target.writer.start,
                on_panel=target.writer.panel,
                share=share,
            )
    except KeyboardInterrupt as stop:
        if target.staged:
            print(f"interrupted: {target.kept_note()}", file=sys.stderr)
            stop.reported_elsewhere = True
        raise
    except BaseException:
        if target.staged:
            print(f"note: {target.kept_note()}", file=sys.stderr)
        raise
