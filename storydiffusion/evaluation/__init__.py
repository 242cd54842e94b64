"""Measuring a story: CLIP-T, CLIP-I (whole panel, crop, reference photo), DreamSim and faces, for one
run folder (``evaluate``) or a whole prompt set with its settings varied (``benchmark``).

The names below load on first use (PEP 562), as diffusers' do: the command line reads the encoder names
without importing torch, so ``storydiffusion --help`` answers at once."""

from importlib import import_module
from types import MappingProxyType
from typing import Any

_WHERE = MappingProxyType(
    {
        "DEFAULT_ENCODER": "encoder_names",
        "TINY_ENCODER": "encoder_names",
        "StoryEncoder": "encoders",
        "load_encoder": "encoders",
        "tiny_clip": "encoders",
        "evaluate_run": "run_metrics",
        "format_scores": "run_metrics",
        "write_metrics": "run_metrics",
        "StoryScores": "story_metrics",
        "mean_pair_similarity": "story_metrics",
        "pair_similarities": "story_metrics",
        "score_story": "story_metrics",
    }
)
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_WHERE[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
