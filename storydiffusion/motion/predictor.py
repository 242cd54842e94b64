"""Semantic Motion Predictor: plausible in-between CLIP image embeddings for two key frames.

The start and end frames' token embeddings are linearly interpolated to ``frames`` frames and a
transformer predicts a residual on top of that interpolation. The residual is multiplied by an
envelope 4t(1-t) and the first and last frames are copied from the inputs, so the endpoints are
pinned exactly by construction, and an untrained predictor (output layer initialised to zero) is
plain linear interpolation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save

from ..atomic import atomic_write_bytes, write_json
from ..errors import ModelError
from ..structured import parse_json, read_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKEN_SELECTIONS = ("cls+pooled", "pooled", "cls", "all")
NOTE_PREDICTOR = "semantic motion predictor"
NOTE_LINEAR = "linear interpolation, no trained predictor weights"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


# Far beyond the paper's predictor (1024 wide, 8 layers, about 100 million weights): what a config file may ask for.
MAX_PREDICTOR_PARAMETERS = 2_000_000_000
_CONFIG_RANGES = {
    "embed_dim": (1, 8192),
    "tokens": (1, 1024),
    "hidden": (1, 8192),
    "layers": (1, 64),
    "heads": (1, 128),
    "max_frames": (2, 4096),
    "dropout": (0.0, 1.0),
    "mlp_ratio": (0.25, 16.0),
}


@dataclass
class PredictorConfig:
    """Architecture of the predictor plus the encoder it was trained on (JSON round-trip)."""

    embed_dim: int = 1280  # width of the encoder's tokens (ViT-H-14: 1280)
    tokens: int = 16  # tokens kept per frame (see select_tokens)
    hidden: int = 1024  # paper: 1024
    layers: int = 8  # paper: 8
    heads: int = 16
    max_frames: int = 64  # resolution of the learned frame-position table
    token_selection: str = "cls+pooled"
    dropout: float = 0.0
    mlp_ratio: float = 4.0
    encoder_model: str = "ViT-H-14"
    encoder_pretrained: str | None = "laion2b_s32b_b79k"
    encoder_layer: str = "penultimate"  # which encoder tokens it was trained on

    def __post_init__(self) -> None:
        for name, (low, high) in _CONFIG_RANGES.items():  # a hand-made config must not ask for terabytes
            value = getattr(self, name)
            kinds = int if isinstance(low, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
                whole = "a whole number" if kinds is int else "a number"
                raise ValueError(f"{name} must be {whole} from {low} to {high}, not {value!r:.40}")
        if self.parameter_count() > MAX_PREDICTOR_PARAMETERS:
            raise ValueError(
                f"hidden {self.hidden}, layers {self.layers} and mlp_ratio {self.mlp_ratio} make a predictor of about "
                f"{self.parameter_count():,} parameters, more than the {MAX_PREDICTOR_PARAMETERS:,} one may have"
            )
        if not isinstance(self.token_selection, str) or self.token_selection not in TOKEN_SELECTIONS:
            raise ValueError(f"token_selection must be one of {TOKEN_SELECTIONS}, not {self.token_selection!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.tokens < 1 or self.max_frames < 2 or self.layers < 1:
            raise ValueError("tokens >= 1, max_frames >= 2 and layers >= 1 are required")
        least = {"cls": 1, "cls+pooled": 2}.get(self.token_selection, 1)
        if self.tokens < least or (self.token_selection == "cls" and self.tokens != 1):
            keeps = "exactly 1 token" if self.token_selection == "cls" else "the CLS token and at least 1 pooled cell"
            raise ValueError(
                f"token_selection {self.token_selection!r} keeps {keeps}, so tokens cannot be {self.tokens}"
            )

    def parameter_count(self) -> int:
        """About how many weights the predictor has: its transformer layers, and its input and output projections."""
        per_layer = (4 + 2 * self.mlp_ratio) * self.hidden**2
        return int(self.layers * per_layer + 2 * self.embed_dim * self.hidden + self.max_frames * self.hidden)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorConfig:
        """Build from a dict, ignoring unknown keys (written by newer versions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def tiny(cls, embed_dim: int = 64, tokens: int = 5) -> PredictorConfig:
        """A small config for CPU tests."""
        return cls(
            embed_dim=embed_dim,
            tokens=tokens,
            hidden=64,
            layers=2,
            heads=4,
            max_frames=16,
            encoder_model="tiny",
            encoder_pretrained=None,
            encoder_layer="last",
        )


# --------------------------------------------------------------------------- token selection
def _grid_shape(cells: int) -> tuple[int, int]:
    """The most square (rows, cols) grid with rows * cols == cells."""
    rows = int(math.isqrt(cells))
    while cells % rows:
        rows -= 1
    return rows, cells // rows


def select_tokens(token_embeddings: torch.Tensor, count: int, mode: str = "cls+pooled") -> torch.Tensor:
    """Keep ``count`` tokens per image (B, T, D) -> (B, count, D), deterministically.

    ``cls+pooled``: the CLS token plus the patch grid average-pooled to count-1 cells (the most
    square grid, e.g. 16 -> CLS + 3x5, 17 -> CLS + 4x4); ``pooled``: the grid pooled to ``count``
    cells; ``cls``: the CLS token only (count 1); ``all``: every token (count == T). Pooling keeps the
    layout of the image, which is what motion changes, at a fixed cost per frame.
    """
    if token_embeddings.ndim != 3:
        raise ValueError(f"token_embeddings must be (B, T, D), got {tuple(token_embeddings.shape)}")
    batch, total, dim = token_embeddings.shape
    if mode == "all":
        if count != total:
            raise ValueError(f"token selection 'all' needs count == {total} tokens, got {count}")
        return token_embeddings
    if mode == "cls":
        if count != 1:
            raise ValueError("token selection 'cls' keeps exactly 1 token")
        return token_embeddings[:, :1]
    if mode not in TOKEN_SELECTIONS:
        raise ValueError(f"unknown token selection {mode!r}; use one of {TOKEN_SELECTIONS}")
    side = math.isqrt(total - 1)
    if side * side != total - 1:
        raise ValueError(f"expected CLS + a square patch grid, got {total} tokens")
    cells = count - 1 if mode == "cls+pooled" else count
    if cells < 1 or cells > total - 1:
        raise ValueError(f"cannot pool {total - 1} patch tokens to {cells} cells (tokens={count}, mode={mode!r})")
    patches = token_embeddings[:, 1:].transpose(1, 2).reshape(batch, dim, side, side)
    pooled = F.adaptive_avg_pool2d(patches.float(), _grid_shape(cells)).to(token_embeddings.dtype)
    pooled = pooled.flatten(2).transpose(1, 2)
    return torch.cat([token_embeddings[:, :1], pooled], dim=1) if mode == "cls+pooled" else pooled


# --------------------------------------------------------------------------- interpolation
def _frame_times(frames: int, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if frames < 2:
        raise ValueError(f"frames must be at least 2 (start and end), got {frames}")
    return torch.linspace(0.0, 1.0, frames, device=device, dtype=dtype)


def linear_interpolation(start: torch.Tensor, end: torch.Tensor, frames: int) -> torch.Tensor:
    """(…) and (…) -> (frames, …): evenly spaced blend whose first/last frames equal start/end exactly."""
    if start.shape != end.shape:
        raise ValueError(f"start {tuple(start.shape)} and end {tuple(end.shape)} differ in shape")
    t = _frame_times(frames, start.device, start.dtype).view(frames, *([1] * start.ndim))
    mixed = start.unsqueeze(0) * (1 - t) + end.unsqueeze(0) * t
    return torch.cat([start.unsqueeze(0), mixed[1:-1], end.unsqueeze(0)], dim=0)


# --------------------------------------------------------------------------- the model
class SemanticMotionPredictor(torch.nn.Module):
    """Transformer refining the linear interpolation of start/end token embeddings into a motion.

    Layout: one joint transformer encoder over all ``frames x tokens`` embeddings (16 x 16 = 256 by
    default): every token attends to every token of every frame, endpoints included, which is cheap
    at this length and lets a token follow content that moves across the image.
    """

    def __init__(self, config: PredictorConfig):
        super().__init__()
        self.config = config
        c = config
        self.input_norm = torch.nn.LayerNorm(c.embed_dim)
        self.input_proj = torch.nn.Linear(c.embed_dim, c.hidden)
        self.frame_embedding = torch.nn.Parameter(torch.randn(c.max_frames, c.hidden) * 0.02)
        self.token_embedding = torch.nn.Parameter(torch.randn(c.tokens, c.hidden) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(
            c.hidden,
            c.heads,
            dim_feedforward=int(c.hidden * c.mlp_ratio),
            dropout=c.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = torch.nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.output_norm = torch.nn.LayerNorm(c.hidden)
        self.output_proj = torch.nn.Linear(c.hidden, c.embed_dim)
        torch.nn.init.zeros_(self.output_proj.weight)  # untrained == linear interpolation
        torch.nn.init.zeros_(self.output_proj.bias)

    @classmethod
    def tiny(cls, embed_dim: int = 64, tokens: int = 5) -> SemanticMotionPredictor:
        return cls(PredictorConfig.tiny(embed_dim, tokens))

    def _frame_positions(self, frames: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The learned frame table sampled at relative time t in [0, 1], so any clip length works."""
        table = self.frame_embedding.to(dtype).T.unsqueeze(0)  # (1, hidden, max_frames)
        return F.interpolate(table, size=frames, mode="linear", align_corners=True)[0].T  # (frames, hidden)

    def forward(self, start: torch.Tensor, end: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, N, D), (B, N, D) -> (B, frames, N, D); frame 0 is ``start`` and frame -1 ``end`` exactly."""
        if start.ndim != 3 or start.shape != end.shape:
            raise ValueError(f"start and end must both be (B, N, D); got {tuple(start.shape)} and {tuple(end.shape)}")
        batch, tokens, dim = start.shape
        if tokens != self.config.tokens or dim != self.config.embed_dim:
            raise ValueError(
                f"predictor expects {self.config.tokens} tokens of width {self.config.embed_dim}, got {tokens} x {dim}"
            )
        base = linear_interpolation(start, end, frames).transpose(0, 1)  # (B, L, N, D)
        if frames == 2:
            return base
        x = self.input_proj(self.input_norm(base))
        x = (
            x
            + self._frame_positions(frames, x.device, x.dtype)[None, :, None]
            + self.token_embedding.to(x.dtype)[None, None]
        )
        x = self.transformer(x.reshape(batch, frames * tokens, -1))
        residual = self.output_proj(self.output_norm(x)).reshape(batch, frames, tokens, dim)
        t = _frame_times(frames, start.device, residual.dtype)[1:-1]
        envelope = (4 * t * (1 - t)).view(1, -1, 1, 1)
        middle = base[:, 1:-1] + (envelope * residual[:, 1:-1]).to(base.dtype)
        return torch.cat([start.unsqueeze(1), middle, end.unsqueeze(1)], dim=1)

    @torch.no_grad()
    def predict(self, start: torch.Tensor, end: torch.Tensor, frames: int) -> torch.Tensor:
        """Inference on (N, D) or (B, N, D) inputs, on the model's device and dtype, in eval mode."""
        was_training = self.training
        self.eval()
        param = self.output_proj.weight
        single = start.ndim == 2
        s, e = (start.unsqueeze(0), end.unsqueeze(0)) if single else (start, end)
        try:
            out = self(s.to(param.device, param.dtype), e.to(param.device, param.dtype), frames)
        finally:
            self.train(was_training)
        out = out.to(device=start.device, dtype=start.dtype)
        out[:, 0], out[:, -1] = s, e  # exact even when the model runs in another dtype
        return out[0] if single else out

    # ----------------------------------------------------------------- persistence
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (no pickles), each atomically."""
        folder = Path(folder)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write_bytes(folder / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
        write_json(folder / CONFIG_NAME, self.config.to_dict())
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> SemanticMotionPredictor:
        """Load a folder written by ``save_pretrained`` or the trainer; only safetensors weights are read."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ModelError(
                f"Motion predictor folder {folder} does not exist; train one with `python -m storydiffusion.motion.train`."
            )
        weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
        if not weights.is_file():
            pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
            hint = (
                (
                    f" It holds {', '.join(pickles)}: pickle checkpoints are never loaded (they can run code); "
                    "convert them to safetensors."
                )
                if pickles
                else ""
            )
            raise ModelError(f"Motion predictor folder {folder} has no {WEIGHTS_NAME}.{hint}")
        if not config_path.is_file():
            raise ModelError(
                f"Motion predictor folder {folder} has no {CONFIG_NAME}; it is written next to the weights by save_pretrained."
            )
        try:
            data = parse_json(read_text(config_path, "predictor config"), CONFIG_NAME)
            if not isinstance(data, dict):
                raise ValueError("it must hold a mapping of settings")
            config = PredictorConfig.from_dict(data)
        except (ValueError, TypeError) as exc:  # InputFileError is a ValueError
            raise ModelError(f"Invalid {config_path}: {exc}") from None
        try:
            model = cls(config)
        except (ValueError, TypeError, RuntimeError) as exc:  # a config its architecture cannot be built from
            raise ModelError(f"Invalid {config_path}: {type(exc).__name__}: {exc}") from None
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises its own error type for a damaged file
            raise ModelError(
                f"{weights} is not a valid safetensors file (damaged or cut short: {type(exc).__name__})"
            ) from None
        try:
            model.load_state_dict(state)
        except (RuntimeError, OSError) as exc:
            raise ModelError(f"{weights} does not match {config_path}: {exc}") from exc
        return model.to(device=device, dtype=dtype).eval()


def interpolate_embeddings(
    start: torch.Tensor, end: torch.Tensor, frames: int, predictor: SemanticMotionPredictor | None = None
) -> tuple[torch.Tensor, str]:
    """(N, D) start/end -> ((frames, N, D), note): the predictor when given, else linear interpolation."""
    if predictor is None:
        return linear_interpolation(start, end, frames), NOTE_LINEAR
    return predictor.predict(start, end, frames), NOTE_PREDICTOR
