"""Animated transitions between panels, driven by the Semantic Motion Predictor.

The predictor works in CLIP image space (OpenCLIP ViT-H-14 tokens, as in the paper), where large
motions are easier to model than in latents: the start and end frames are encoded, a few tokens per
frame are kept, linearly interpolated to L frames and refined by a transformer; the endpoints stay
pinned. Without trained weights, plain linear interpolation is used (and reported as such).
Train with ``python -m storydiffusion.motion.train --videos clips/ --out predictor/``.
"""

from .encoder import ClipImageEncoder
from .predictor import (
    PredictorConfig,
    SemanticMotionPredictor,
    interpolate_embeddings,
    linear_interpolation,
    select_tokens,
)

__all__ = [
    "ClipImageEncoder",
    "PredictorConfig",
    "SemanticMotionPredictor",
    "interpolate_embeddings",
    "linear_interpolation",
    "select_tokens",
]
