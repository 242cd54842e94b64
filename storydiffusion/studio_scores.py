"""The consistency table beside the pages: a finished story scored with the operator's CLIP encoder.

The operator chooses the encoder when starting the studio (``--scores-encoder``; the offline demo uses
the tiny one, a real model is used when its weights are in the local hub cache). One encoder serves
every user: it is loaded once, on the first table, and only read afterwards. Users never name one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import gradio as gr

from .errors import StoryDiffusionError
from .evaluation.encoders import DEFAULT_ENCODER, TINY_ENCODER, StoryEncoder, load_encoder
from .evaluation.run_metrics import evaluate_run
from .evaluation.story_metrics import StoryScores
from .models.devices import select_device
from .studio import StudioSession

STORY_ROW = "Story (CLIP-T)"
ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "preprocessor_config.json")
SCORING_QUEUE = {"concurrency_limit": 1, "concurrency_id": "scores"}  # beside the GPU queue, one at a time
logger = logging.getLogger(__name__)


def default_scores_encoder(model: str, offline_model: str) -> str | None:
    """The encoder a studio scores with when its operator names none: the tiny one for the offline demo,
    the default CLIP when its weights are already in the hub cache, else none (no table)."""
    if model == offline_model:
        return TINY_ENCODER
    from huggingface_hub import try_to_load_from_cache

    repo = DEFAULT_ENCODER.partition(":")[2]
    cached = all(isinstance(try_to_load_from_cache(repo, name), str) for name in ENCODER_FILES)
    return DEFAULT_ENCODER if cached else None


class StoryScorer:
    """The studio's one encoder, loaded on first use, and the table it gives a session's story."""

    def __init__(self, encoder_name: str | None, device: str = "auto"):
        self.encoder_name = encoder_name
        self.device = device
        self._encoder: StoryEncoder | None = None
        self._failure: StoryDiffusionError | None = None
        self._loading = threading.Lock()

    @property
    def available(self) -> bool:
        return self.encoder_name is not None

    def encoder(self) -> StoryEncoder:
        """The encoder, loaded on first use; one that failed to load is not tried again (ModelError)."""
        with self._loading:
            if self._failure is not None:
                raise self._failure
            if self._encoder is None:
                try:
                    self._encoder = load_encoder(self.encoder_name, select_device(self.device))
                except StoryDiffusionError as error:
                    self._failure = error
                    raise
            return self._encoder

    def scores(self, state: Any) -> StoryScores | None:
        """The scores of the session's drawn panels, or None (nothing drawn, or the encoder failed: logged)."""
        if not self.available or not isinstance(state, StudioSession) or not state.panels():
            return None
        try:
            return evaluate_run(state.run_dir, self.encoder(), read_references=False)
        except (StoryDiffusionError, OSError) as error:  # scores are extra: the run itself succeeded
            logger.warning("consistency scores not computed: %s", error)
            return None

    def table(self, state: Any) -> Any:
        """The table's update: shown with the scores, hidden without."""
        scores = self.scores(state)
        if scores is None:
            return gr.update(visible=False, value=None)
        return gr.update(visible=True, value=score_rows(scores), label=f"Consistency ({scores.encoder})")


def _shown(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def score_rows(scores: StoryScores) -> list[list[Any]]:
    """One row per character (its panels, CLIP-I whole and cropped), then the story's mean CLIP-T
    (the columns of ``SCORE_COLUMNS``)."""
    rows: list[list[Any]] = [
        [name, len(c.panels), _shown(c.clip_i), _shown(c.clip_i_crop)] for name, c in scores.characters.items()
    ]
    rows.append([STORY_ROW, len(scores.panels), _shown(scores.summary["clip_t"]), "-"])
    return rows


def wire_scores(table: gr.Dataframe, session: gr.State, scorer: StoryScorer, after: Sequence[Any], door: Any) -> None:
    """Fill the table after each event of ``after`` (a run, a redrawn panel); ``story_scores`` for API clients."""
    if not scorer.available:
        return
    for event in after:
        event.then(scorer.table, [session], [table], api_visibility="private", **SCORING_QUEUE)
    door.click(scorer.table, [session], [table], api_name="story_scores", **SCORING_QUEUE)
