"""A story's consistency and prompt alignment, measured as the paper and later benchmarks do.

* **CLIP-T** of a panel: the cosine of its image embedding with the embedding of the text it shows
  (``Story.panel_prompt``: descriptions and scene, without the style; ``text_prefix`` in front, e.g.
  "A photo depicts " as the ConsiStory+ protocol does). ``clip_score`` is ``2.5 * cos``, the CLIPScore
  scale (Hessel et al., 2021, without its clamp at 0) that the ConsiStory+ protocol reports and that the
  StoryDiffusion paper's CLIP-T values (about 0.66) fit.
* **CLIP-I** of a character: the mean cosine between the image embeddings of every pair of panels
  that show it, on the whole panel and, where the run knows where the character is (its region, or
  its saved subject mask), on that crop. With a reference photo that can be read, the mean cosine of
  each panel with the photo too (ViStoryBench's "cross" similarity; the pairs are its "self").
* **DreamSim** (a distance: lower is closer) and **face** similarity, the same pairs, when those
  models are given.

The story's numbers are means over panels (CLIP-T) and over characters (the rest).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from PIL import Image

from ..errors import StoryError, shown
from ..story import Story
from .encoders import ImageEmbedder, StoryEncoder

CLIP_SCORE_WEIGHT = 2.5
Crop = tuple[Image.Image, str]  # the character's part of a panel, and where it came from: "region" or "mask"


@dataclass
class PanelScore:
    panel: int  # 1-based, as files and tables number panels
    prompt: str
    characters: list[str]
    clip_t: float
    clip_score: float
    clip_i: dict[str, float] = field(default_factory=dict)  # per character: mean with its other panels
    crops: dict[str, str] = field(default_factory=dict)  # per character: where its crop came from


@dataclass
class CharacterScore:
    panels: list[int]  # 1-based
    clip_i: float | None = None
    clip_i_crop: float | None = None
    clip_i_reference: float | None = None
    dreamsim: float | None = None
    face: float | None = None
    faces_found: int | None = None


@dataclass
class StoryScores:
    encoder: str
    panels: list[PanelScore]
    characters: dict[str, CharacterScore]
    summary: dict[str, float | None]
    notes: list[str] = field(default_factory=list)
    image_encoder: str | None = None  # the encoder of the similarities between pictures

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SUMMARY_KEYS = ("clip_t", "clip_score", "clip_i", "clip_i_crop", "clip_i_reference", "dreamsim", "face")


def pair_similarities(embeddings: torch.Tensor) -> torch.Tensor:
    """The cosine of every unordered pair of rows (unit-length embeddings)."""
    count = embeddings.shape[0]
    if count < 2:
        return torch.zeros(0)
    rows, cols = torch.triu_indices(count, count, offset=1)
    return (embeddings[rows] * embeddings[cols]).sum(dim=-1)


def mean_pair_similarity(embeddings: torch.Tensor) -> float | None:
    """Mean cosine over all pairs, or None for fewer than two images."""
    pairs = pair_similarities(embeddings)
    return float(pairs.mean()) if pairs.numel() else None


def _others_mean(embeddings: torch.Tensor) -> list[float | None]:
    """For each row, its mean cosine with every other row."""
    if embeddings.shape[0] < 2:
        return [None] * embeddings.shape[0]
    sims = embeddings @ embeddings.T
    sims.fill_diagonal_(0)
    return [float(v) for v in sims.sum(dim=1) / (embeddings.shape[0] - 1)]


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


class _UnitLength:
    """An encoder whose embeddings are made unit length, whatever it returns, so that every similarity computed
    from them is a cosine in [-1, 1] (the Protocols ask for unit length; a plug-in may forget)."""

    def __init__(self, encoder: Any):
        self.encoder, self.name = encoder, encoder.name

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.nn.functional.normalize(self.encoder.encode_images(images).float(), dim=-1)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(self.encoder.encode_texts(texts).float(), dim=-1)


def _check_images(story: Story, images: Any) -> None:
    """``images`` map 0-based panel indexes of ``story`` to PIL images: -1 is not the last panel here."""
    if not isinstance(images, Mapping):
        raise StoryError(f"images must map 0-based panel indexes to PIL images, not {type(images).__name__}")
    count = len(story.panels)
    for index, image in images.items():
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise StoryError(f"images: {shown(index)} is not a 0-based index of the story's {count} panels")
        if not isinstance(image, Image.Image):
            raise StoryError(f"images[{index}] must be a PIL image, not {type(image).__name__}")


def score_story(
    story: Story,
    images: Mapping[int, Image.Image],
    encoder: StoryEncoder,
    *,
    crops: Mapping[tuple[int, str], Crop] | None = None,
    references: Mapping[str, Image.Image] | None = None,
    dreamsim: ImageEmbedder | None = None,
    faces: Any | None = None,
    text_prefix: str = "",
    image_encoder: ImageEmbedder | None = None,
) -> StoryScores:
    """Scores of the panels ``images`` holds (0-based index -> picture) of ``story``.

    ``image_encoder`` computes the similarities between pictures (CLIP-I, crop, photo) when a protocol
    uses another model for them than for CLIP-T (ConsiStory+: ViT-B/32 for CLIP-T, ViT-B/16 for CLIP-I).
    ``faces`` is a ``FaceEmbedder`` (``extra_models``): per image an embedding or None without a face.
    """
    _check_images(story, images)
    crops = crops or {}
    encoder = _UnitLength(encoder)  # a plug-in's embeddings of any length: the similarities stay cosines
    image_encoder = _UnitLength(image_encoder) if image_encoder is not None else None
    dreamsim = _UnitLength(dreamsim) if dreamsim is not None else None
    indices = sorted(images)
    pictures = [images[i] for i in indices]
    image_embeddings = encoder.encode_images(pictures)
    pictures_encoder = image_encoder or encoder
    between = pictures_encoder.encode_images(pictures) if image_encoder is not None else image_embeddings
    prompts = [story.panel_prompt(i) for i in indices]
    text_embeddings = encoder.encode_texts([text_prefix + prompt for prompt in prompts])
    clip_t = (image_embeddings * text_embeddings).sum(dim=-1).tolist()
    row = {index: position for position, index in enumerate(indices)}
    panels = [
        PanelScore(i + 1, prompt, list(story.panels[i].characters), t, CLIP_SCORE_WEIGHT * t)
        for i, prompt, t in zip(indices, prompts, clip_t)
    ]
    notes: list[str] = []
    characters: dict[str, CharacterScore] = {}
    for name, shown_in in story.character_panels().items():
        drawn = [i for i in shown_in if i in row]
        if not drawn:
            continue
        score = CharacterScore([i + 1 for i in drawn])
        own = between[[row[i] for i in drawn]]
        score.clip_i = mean_pair_similarity(own)
        for i, value in zip(drawn, _others_mean(own)):
            if value is not None:
                panels[row[i]].clip_i[name] = value
        cropped = [(i, crops[(i, name)]) for i in drawn if (i, name) in crops]
        for i, (_, source) in cropped:
            panels[row[i]].crops[name] = source
        if len(cropped) >= 2:
            score.clip_i_crop = mean_pair_similarity(pictures_encoder.encode_images([c for _, (c, _) in cropped]))
        if references and name in references:
            photo = pictures_encoder.encode_images([references[name]])[0]
            score.clip_i_reference = float((own @ photo).mean())
        if dreamsim is not None and len(drawn) >= 2:
            score.dreamsim = 1.0 - mean_pair_similarity(dreamsim.encode_images([images[i] for i in drawn]))
        if faces is not None:
            found = [e for e in faces.embed_faces([images[i] for i in drawn]) if e is not None]
            score.faces_found = len(found)
            if len(found) >= 2:
                score.face = mean_pair_similarity(torch.nn.functional.normalize(torch.stack(found).float(), dim=-1))
        characters[name] = score
    lonely = [name for name, score in characters.items() if score.clip_i is None]
    if lonely:
        notes.append(f"CLIP-I needs two panels of a character: {', '.join(lonely)} shown in one")
    summary = {
        "clip_t": _mean([p.clip_t for p in panels]),
        "clip_score": _mean([p.clip_score for p in panels]),
        **{key: _mean([getattr(c, key) for c in characters.values()]) for key in SUMMARY_KEYS[2:]},
    }
    return StoryScores(encoder.name, panels, characters, summary, notes, pictures_encoder.name)
