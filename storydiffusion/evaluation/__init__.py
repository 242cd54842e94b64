"""Measuring a story: CLIP-T, CLIP-I (whole panel, crop, reference photo), DreamSim and faces, for one
run folder (``evaluate``) or a whole prompt set with its settings varied (``benchmark``)."""

from .encoders import DEFAULT_ENCODER, TINY_ENCODER, StoryEncoder, load_encoder, tiny_clip
from .run_metrics import evaluate_run, format_scores, write_metrics
from .story_metrics import StoryScores, mean_pair_similarity, pair_similarities, score_story

__all__ = [
    "DEFAULT_ENCODER",
    "TINY_ENCODER",
    "StoryEncoder",
    "StoryScores",
    "evaluate_run",
    "format_scores",
    "load_encoder",
    "mean_pair_similarity",
    "pair_similarities",
    "score_story",
    "tiny_clip",
    "write_metrics",
]
