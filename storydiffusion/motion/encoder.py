"""OpenCLIP image encoder giving the token embeddings the Semantic Motion Predictor works in.

The predictor models motion in CLIP image space (the paper uses OpenCLIP ViT-H-14), where large
motions are easier to model than in latents. ``encode`` returns the last layer's tokens (CLS +
patches, after the final layer norm); ``encode_pooled`` the projected CLIP embedding for metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import ModelError

DEFAULT_MODEL = "ViT-H-14"
DEFAULT_PRETRAINED = "laion2b_s32b_b79k"
TINY_MODEL = "tiny"
ENCODER_LAYERS = ("penultimate", "last")
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ImageInput = Sequence[Image.Image] | torch.Tensor


class ClipImageEncoder(torch.nn.Module):
    """A frozen OpenCLIP vision tower with its preprocessing built in (resize, centre crop, normalise)."""

    def __init__(
        self,
        visual: torch.nn.Module,
        mean: Sequence[float] = _CLIP_MEAN,
        std: Sequence[float] = _CLIP_STD,
        model_name: str = TINY_MODEL,
        pretrained: str | None = None,
    ):
        super().__init__()
        self.visual = visual.eval().requires_grad_(False)
        self.model_name = model_name
        self.pretrained = pretrained
        self.layer = "last"
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(
        cls,
        model_name: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        layer: str = "penultimate",
    ) -> ClipImageEncoder:
        """Load a real OpenCLIP model (open_clip downloads its weights); ``"tiny"`` gives ``tiny()``.

        ``layer`` picks the tokens: "penultimate" (default, what public IP-Adapter Plus weights expect)
        or "last" (after the final layer norm).
        """
        if layer not in ENCODER_LAYERS:
            raise ModelError(f"unknown encoder layer {layer!r}: choose {' or '.join(ENCODER_LAYERS)}")
        if model_name == TINY_MODEL:
            return cls.tiny().to(device=device, dtype=dtype)
        import open_clip

        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, device="cpu")
        except Exception as exc:  # open_clip raises many kinds (RuntimeError, OSError, hub errors)
            raise ModelError(
                f"Could not load the OpenCLIP image encoder {model_name!r} ({pretrained}): {exc}. "
                "open_clip downloads its weights from the internet on first use; connect once to fill "
                "the cache, pass another --encoder/--pretrained, or use --tiny-encoder for an offline test."
            ) from exc
        visual = model.visual
        if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "class_embedding"):
            raise ModelError(
                f"OpenCLIP model {model_name!r} has no ViT image tower; pick a ViT model such as ViT-H-14."
            )
        cfg = getattr(visual, "preprocess_cfg", None) or {}
        encoder = cls(visual, cfg.get("mean", _CLIP_MEAN), cfg.get("std", _CLIP_STD), model_name, pretrained)
        encoder.layer = layer
        del model  # the text tower is not needed
        return encoder.to(device=device, dtype=dtype)

    @classmethod
    def tiny(
        cls, seed: int = 0, image_size: int = 32, patch_size: int = 8, width: int = 64, layers: int = 2
    ) -> ClipImageEncoder:
        """A tiny random-weight OpenCLIP ViT built offline, for tests (same code path as the real tower)."""
        from open_clip.transformer import VisionTransformer

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            visual = VisionTransformer(
                image_size=image_size,
                patch_size=patch_size,
                width=width,
                layers=layers,
                heads=max(1, width // 32),
                mlp_ratio=4.0,
                output_dim=32,
            )
        return cls(visual, model_name=TINY_MODEL, pretrained=None)

    # ----------------------------------------------------------------- properties
    @property
    def image_size(self) -> int:
        size = self.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def width(self) -> int:
        return int(self.visual.class_embedding.shape[-1])

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(int(g) for g in self.visual.grid_size)  # type: ignore[return-value]

    @property
    def num_tokens(self) -> int:
        rows, cols = self.grid_size
        return 1 + rows * cols

    @property
    def device(self) -> torch.device:
        return self.visual.class_embedding.device

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.class_embedding.dtype

    # ----------------------------------------------------------------- encoding
    def preprocess(self, images: ImageInput) -> torch.Tensor:
        """Images (PIL list, or a (B, 3, H, W) tensor in [0, 1] or uint8) -> normalised model input."""
        if isinstance(images, torch.Tensor):
            batch = images if images.ndim == 4 else images.unsqueeze(0)
            if batch.dtype == torch.uint8:
                batch = batch.float() / 255.0
            pixels = [self._resize_crop(img.float()) for img in batch]
        else:
            if len(images) == 0:
                raise ValueError("encode() needs at least one image")
            pixels = [self._resize_crop(_pil_to_tensor(img)) for img in images]
        stacked = torch.stack(pixels).to(self.device)
        stacked = (stacked - self.mean) / self.std
        return stacked.to(self.dtype)

    def _resize_crop(self, image: torch.Tensor) -> torch.Tensor:
        """Resize the short side to the model's size (bicubic, antialiased), then centre crop: CLIP's recipe."""
        size = self.image_size
        _, height, width = image.shape
        scale = size / min(height, width)
        new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
        if (new_h, new_w) != (height, width):
            image = F.interpolate(
                image[None], size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
            )[0]
        top, left = (new_h - size) // 2, (new_w - size) // 2
        return image[:, top : top + size, left : left + size].clamp(0.0, 1.0)

    @torch.no_grad()
    def _forward(self, images: ImageInput) -> tuple[torch.Tensor, torch.Tensor]:
        # "penultimate": the second-to-last block's output without the final norm, the tokens IP-Adapter
        # Plus was trained on; "last": the last block after the final norm.
        penultimate = self.layer == "penultimate"
        out = self.visual.forward_intermediates(
            self.preprocess(images),
            indices=2 if penultimate else 1,
            normalize_intermediates=not penultimate,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        pick = 0 if penultimate else -1
        tokens = torch.cat([out["image_intermediates_prefix"][pick], out["image_intermediates"][pick]], dim=1)
        return tokens.float(), out["image_features"].float()

    def encode(self, images: ImageInput) -> torch.Tensor:
        """Token embeddings (B, T, D): CLS + patch tokens of the last layer after the final layer norm (float32)."""
        return self._forward(images)[0]

    def encode_pooled(self, images: ImageInput) -> torch.Tensor:
        """The projected CLIP image embedding (B, D_proj), as used for CLIP similarity metrics (float32)."""
        return self._forward(images)[1]

    def forward(self, images: ImageInput) -> torch.Tensor:
        return self.encode(images)


def _pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL image -> (3, H, W) float tensor in [0, 1], without torchvision."""
    rgb = image.convert("RGB")
    data = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return data.view(rgb.height, rgb.width, 3).permute(2, 0, 1).float() / 255.0
