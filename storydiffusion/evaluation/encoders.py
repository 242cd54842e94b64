"""The encoders a story's consistency is measured with, chosen by name.

``tiny`` (a random-weight CLIP built offline, for tests and the demo), ``open_clip:MODEL[/PRETRAINED]``
(an OpenCLIP model: a tag such as ``openai`` or a local ``.safetensors`` file) and
``transformers:REPO_OR_FOLDER`` (a transformers CLIP model, e.g. ``openai/clip-vit-large-patch14``, the
model torchmetrics' CLIPScore uses by default). Every encoder returns unit-length embeddings, so a
similarity is a dot product. Weights come from a local folder or file or the hub cache; the hub is
asked only when the process is online (``HF_HUB_OFFLINE`` unset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ModelError
from .encoder_names import DEFAULT_ENCODER, ENCODER_KINDS, TINY_ENCODER

BATCH = 16


class StoryEncoder(Protocol):
    """Images and texts into one embedding space, unit length: what CLIP-T and CLIP-I are computed in."""

    name: str

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor: ...

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor: ...


class ImageEmbedder(Protocol):
    """Images into unit-length embeddings (DreamSim, a face model): similarity is a dot product."""

    name: str

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor: ...


def _batched(encode, items: Sequence[Any]) -> torch.Tensor:
    parts = [encode(list(items[i : i + BATCH])) for i in range(0, len(items), BATCH)]
    return F.normalize(torch.cat(parts).float(), dim=-1) if parts else torch.zeros(0, 1)


def _features(output: Any) -> torch.Tensor:
    """transformers 4 returns the projected features; 5 may wrap them in an output object."""
    if isinstance(output, torch.Tensor):
        return output
    return output.pooler_output if getattr(output, "pooler_output", None) is not None else output[0]


class TransformersClip:
    """A transformers ``CLIPModel`` with its tokenizer and image processor."""

    def __init__(self, model: Any, tokenizer: Any, processor: Any, name: str, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.processor = processor
        self.name = name
        self.device = torch.device(device)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        def encode(chunk):
            pixels = self.processor(images=[image.convert("RGB") for image in chunk], return_tensors="pt")
            values = pixels["pixel_values"].to(self.device, self.model.dtype)
            return _features(self.model.get_image_features(pixel_values=values)).cpu()

        return _batched(encode, images)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        def encode(chunk):
            tokens = self.tokenizer(chunk, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            tokens = {
                key: value.to(self.device) for key, value in tokens.items() if key in ("input_ids", "attention_mask")
            }
            return _features(self.model.get_text_features(**tokens)).cpu()

        return _batched(encode, texts)


class OpenClip:
    """An OpenCLIP model with its own preprocessing and tokenizer."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, name: str, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device)

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        def encode(chunk):
            pixels = torch.stack([self.preprocess(image.convert("RGB")) for image in chunk]).to(self.device)
            return self.model.encode_image(pixels).cpu()

        return _batched(encode, images)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return _batched(lambda chunk: self.model.encode_text(self.tokenizer(chunk).to(self.device)).cpu(), texts)


def tiny_clip(seed: int = 0) -> TransformersClip:
    """A random-weight CLIP of width 32 on 32x32 pictures with the genuine CLIP tokenizer, built offline."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from ..models.tiny import _build_random
    from ..tokenizer import build_clip_tokenizer

    tower = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=32,
    )
    model = _build_random(lambda: CLIPModel(config), seed, 20)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return TransformersClip(model, build_clip_tokenizer(), processor, TINY_ENCODER)


def load_encoder(spec: str | None = None, device: str | torch.device = "cpu") -> StoryEncoder:
    """The encoder ``spec`` names (``ENCODER_KINDS``); ModelError says what was wrong and what to pass."""
    spec = (spec or DEFAULT_ENCODER).strip()
    if spec == TINY_ENCODER:
        return tiny_clip()
    kind, _, source = spec.partition(":")
    if kind == "open_clip" and source:
        return _open_clip(source, spec, device)
    if kind == "transformers" and source:
        return _transformers_clip(source, spec, device)
    raise ModelError(f"encoder {spec!r} is not known: use one of {', '.join(ENCODER_KINDS)}")


def _open_clip(source: str, spec: str, device) -> OpenClip:
    import open_clip

    model_name, _, pretrained = source.partition("/")
    pretrained = pretrained or "openai"
    if Path(pretrained).suffix and Path(pretrained).suffix != ".safetensors":
        raise ModelError(f"encoder {spec!r}: a local OpenCLIP weight file must be .safetensors (no pickles)")
    try:
        with _open_clip_logs_quiet():
            model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # open_clip raises many kinds (RuntimeError, OSError, hub errors)
        raise ModelError(_not_loaded(spec, exc)) from exc
    return OpenClip(model, preprocess, tokenizer, spec, device)


def _transformers_clip(source: str, spec: str, device) -> TransformersClip:
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    try:
        model = CLIPModel.from_pretrained(source, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(source)
        processor = CLIPImageProcessor.from_pretrained(source)
    except Exception as exc:  # hub, file and config errors alike
        raise ModelError(_not_loaded(spec, exc)) from exc
    return TransformersClip(model, tokenizer, processor, spec, device)


@contextmanager
def _open_clip_logs_quiet() -> Iterator[None]:
    """open_clip logs a failed download on the root logger (``ERROR:root:...``) before it raises; the error
    it raises is said once, as ours (``_not_loaded``), so its log line is dropped while it loads."""

    def not_open_clips(record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname

    root = logging.getLogger()
    root.addFilter(not_open_clips)
    try:
        yield
    finally:
        root.removeFilter(not_open_clips)


def _not_loaded(spec: str, exc: Exception) -> str:
    reason = " ".join(str(exc).split())
    if len(reason) > 200:  # cut between words: a cut URL or word reads as garbage
        reason = reason[:200].rsplit(" ", 1)[0] + " …"
    return (
        f"could not load the encoder {spec!r} ({type(exc).__name__}: {reason}); its weights come from the hub "
        "once (then its cache) or a local folder: connect once, name a local folder, or use the encoder 'tiny' offline"
    )
