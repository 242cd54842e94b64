"""The ``evaluate`` and ``benchmark`` subcommands: their arguments and how they run."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from .cli_checks import folder_value, whole_value
from .evaluation.encoder_names import DEFAULT_ENCODER, ENCODER_KINDS


def add_evaluate(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument(
        "run", type=folder_value, help="a run folder written by generate (its story.json and panels/)"
    )
    _add_measures(evaluate)
    evaluate.add_argument("--no-write", action="store_true", help="print the scores only; do not write metrics.json")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")


def _add_measures(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help=f"CLIP model for CLIP-T and CLIP-I: {', '.join(ENCODER_KINDS)} (default {DEFAULT_ENCODER})",
    )
    parser.add_argument(
        "--image-encoder",
        help="another CLIP for the similarities between pictures (CLIP-I), as --encoder; default: the same",
    )
    parser.add_argument(
        "--dreamsim",
        metavar="DIR",
        help="a folder holding DreamSim's checkpoints, filled once by its package (pip install dreamsim); "
        "they are PyTorch pickles: name only a folder you filled yourself",
    )
    parser.add_argument(
        "--face-model", metavar="DIR", help="an InsightFace model pack folder, e.g. buffalo_l (pip install insightface)"
    )
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu: where models run (default auto)")
    parser.add_argument(
        "--text-prefix",
        default="",
        help="put before each prompt for CLIP-T, e.g. 'A photo depicts ' (a ConsiStory+ set puts that one)",
    )


MAX_PREFIX_CHARS = 200  # a few words ("A photo depicts "): CLIP reads 77 tokens, and the prompt must fit after it


def check_text_prefix(prefix: str) -> None:
    """--text-prefix is text short enough to leave CLIP room for the prompt it precedes."""
    from .settings import SettingsError, check_text

    check_text("--text-prefix", prefix)
    if len(prefix) > MAX_PREFIX_CHARS:
        raise SettingsError(
            f"--text-prefix is {len(prefix):,} characters long; at most {MAX_PREFIX_CHARS} are allowed, so that "
            "CLIP, which reads 77 tokens, still reads the prompt after it"
        )


def load_measures(args: argparse.Namespace) -> dict[str, Any]:
    """The encoders the flags name, loaded (ModelError, exit 2, for a name or folder that does not load)."""
    from .errors import ModelError
    from .evaluation.encoders import load_encoder
    from .evaluation.extra_models import dreamsim_folder, face_folder, load_dreamsim, load_face_model
    from .models.devices import select_device

    if args.dreamsim:  # the folders are checked before any model loads
        dreamsim_folder(args.dreamsim)
    if args.face_model:
        face_folder(args.face_model)
    device = select_device(args.device)

    def by_flag(flag: str, spec: str) -> Any:
        try:
            return load_encoder(spec, device)
        except ModelError as error:  # which of the two encoder flags it was
            raise ModelError(f"{flag}: {error}") from None

    return {
        "encoder": by_flag("--encoder", args.encoder),
        "image_encoder": by_flag("--image-encoder", args.image_encoder) if args.image_encoder else None,
        "dreamsim": load_dreamsim(args.dreamsim, device) if args.dreamsim else None,
        "faces": load_face_model(args.face_model) if args.face_model else None,
    }


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a run folder, print the table (or JSON) and write metrics.json beside story.json."""
    from .evaluation.run_metrics import (
        check_metrics_file,
        check_run,
        evaluate_run,
        format_scores,
        metrics_record,
        write_metrics,
    )

    check_text_prefix(args.text_prefix)
    check_run(args.run)  # a folder that is not a run, or a metrics.json of the user's: before any encoder loads
    if not args.no_write:
        check_metrics_file(args.run)
    scores = evaluate_run(args.run, **load_measures(args), text_prefix=args.text_prefix)
    print(json.dumps(metrics_record(scores), indent=2) if args.json else format_scores(scores))
    if not args.no_write:
        path = write_metrics(args.run, scores)
        if not args.json:
            print(f"wrote {path}")
    return 0


def add_benchmark(benchmark: argparse.ArgumentParser) -> None:
    from .evaluation.variant_names import DEFAULT_VARIANTS, NAMED_VARIANTS, VARIED_SETTINGS

    benchmark.add_argument(
        "prompt_set", help="a story file or folder of them, a ConsiStory+ YAML, or a ViStoryBench folder"
    )
    benchmark.add_argument(
        "--out", required=True, type=folder_value, help="a new or empty folder (or an earlier benchmark's, to continue)"
    )
    benchmark.add_argument(
        "--kind",
        default="auto",
        choices=["auto", "stories", "consistory", "vistorybench"],
        help="the prompt set's kind",
    )
    benchmark.add_argument("--model", help="as for generate (default: the registry's default model)")
    benchmark.add_argument("--dtype", default="auto", help="as for generate")
    benchmark.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated: {', '.join(NAMED_VARIANTS)} (default {','.join(DEFAULT_VARIANTS)})",
    )
    benchmark.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="SETTING=V1,V2",
        help=f"one more variant per value, e.g. sampling_rate=0.3,0.7 ({', '.join(VARIED_SETTINGS)}); repeatable",
    )
    for name in ("steps", "height", "width", "seed"):
        benchmark.add_argument("--" + name, type=whole_value, help="for every story, as for generate")
    benchmark.add_argument("--limit", type=whole_value, help="only the first N stories of the set")
    benchmark.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_measures(benchmark)


def run_benchmark_command(args: argparse.Namespace) -> int:
    """Read and check everything, load the model and encoders, then draw, score and compare."""
    from .cli_checks import check_model_flag

    check_model_flag(args.model)  # a misspelt model in a moment, before the libraries below (torch) load
    check_text_prefix(args.text_prefix)
    from tqdm import tqdm

    from .cli_output import quiet_model_libraries
    from .errors import SettingsError, model_memory
    from .evaluation.benchmark import plan_benchmark, run_benchmark, variants_from
    from .evaluation.prompt_sets import read_prompt_set
    from .settings import SETTING_RANGES

    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit must be a whole number from 1, got {args.limit}")
    stories = read_prompt_set(args.prompt_set, args.kind)[: args.limit]
    if args.text_prefix:  # the user's prefix for CLIP-T, in place of the one a prompt set's kind implies
        stories = [dataclasses.replace(item, text_prefix=args.text_prefix) for item in stories]
    variants = variants_from([n.strip() for n in args.variants.split(",") if n.strip()], args.vary)
    overrides = {
        name: getattr(args, name) for name in ("steps", "height", "width", "seed") if getattr(args, name) is not None
    }
    for name, value in overrides.items():  # named by the flag, not by the story each would be refused in
        SETTING_RANGES[name].check(f"--{name}", value)
    plan_benchmark(stories, variants, args.out, overrides)  # the folder, settings and pictures: before any model
    measures = load_measures(args)
    from .pipeline import StoryPipeline

    with model_memory(), quiet_model_libraries():
        pipeline = StoryPipeline.from_pretrained(args.model, device=args.device, dtype=args.dtype)
    bar = tqdm(total=len(stories) * len(variants), unit="run", disable=args.quiet)
    try:
        comparison = run_benchmark(
            stories,
            variants,
            pipeline,
            args.out,
            **measures,
            overrides=overrides,
            on_run=lambda name, drawn: (bar.set_postfix_str(name), bar.update()),
        )
    finally:
        bar.close()
    from .evaluation.comparison import comparison_markdown

    print(comparison_markdown(comparison, f"{len(stories)} stories x {len(variants)} variants"))
    print(f"wrote {Path(args.out) / 'results.md'} and {Path(args.out) / 'results.csv'}")
    return 0
