"""The ``evaluate`` and ``benchmark`` subcommands: their arguments and how they run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .evaluation.encoders import DEFAULT_ENCODER, ENCODER_KINDS


def add_evaluate(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("run", help="a run folder written by generate (its story.json and panels/)")
    _add_measures(evaluate)
    evaluate.add_argument("--no-write", action="store_true", help="print the scores only; do not write metrics.json")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")


def _add_measures(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoder",
        default=DEFAULT_ENCODER,
        help=f"CLIP model for CLIP-T and CLIP-I: {', '.join(ENCODER_KINDS)} (default {DEFAULT_ENCODER})",
    )
    parser.add_argument("--dreamsim", metavar="DIR", help="DreamSim's weights folder (pip install dreamsim)")
    parser.add_argument(
        "--face-model", metavar="DIR", help="an InsightFace model pack folder, e.g. buffalo_l (pip install insightface)"
    )
    parser.add_argument("--device", default="cpu", help="where the encoders run (default cpu)")
    parser.add_argument(
        "--text-prefix", default="", help="put before each prompt for CLIP-T, e.g. 'A photo depicts ' (ConsiStory+)"
    )


def load_measures(args: argparse.Namespace) -> dict[str, Any]:
    """The encoders the flags name, loaded (ModelError, exit 2, for a name or folder that does not load)."""
    from .evaluation.encoders import load_encoder
    from .evaluation.extra_models import dreamsim_folder, face_folder, load_dreamsim, load_face_model

    if args.dreamsim:  # the folders are checked before any model loads
        dreamsim_folder(args.dreamsim)
    if args.face_model:
        face_folder(args.face_model)
    return {
        "encoder": load_encoder(args.encoder, args.device),
        "dreamsim": load_dreamsim(args.dreamsim, args.device) if args.dreamsim else None,
        "faces": load_face_model(args.face_model) if args.face_model else None,
    }


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a run folder, print the table (or JSON) and write metrics.json beside story.json."""
    from .evaluation.run_metrics import check_run, evaluate_run, format_scores, metrics_record, write_metrics

    check_run(args.run)  # a folder that is not a run is refused before any encoder loads
    scores = evaluate_run(args.run, **load_measures(args), text_prefix=args.text_prefix)
    print(json.dumps(metrics_record(scores), indent=2) if args.json else format_scores(scores))
    if not args.no_write:
        path = write_metrics(args.run, scores)
        if not args.json:
            print(f"wrote {path}")
    return 0
