"""Generation settings shared by story files, the CLI and the UI, with their documented defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError

CONSISTENCY_MODES = ("identity", "window", "off")


@dataclass
class GenerationSettings:
    """Everything that decides the pixels of a run besides the story text and the model weights.

    ``None`` for steps/guidance/height/width means "the model's default" (``configs/models.yaml``).
    """

    steps: int | None = None
    guidance: float | None = None
    height: int | None = None
    width: int | None = None
    seed: int = 0
    # Share of another image's tokens that each image also attends to. A float applies to every
    # attention resolution; a dict maps the downsampling factor of the layer relative to the latent
    # (1, 2, 4, ...) to a rate, and factors it does not name use ``sampling_rate_default``.
    sampling_rate: float | dict[int, float] = 0.5
    # Panels generated together per character to form its identity bank.
    id_images: int = 3
    # Panels per batch after the identity pass, and the window length in "window" mode.
    window: int = 4
    mode: str = "identity"
    # Plain self-attention for the first k denoising steps (the paper's code uses 2), when the
    # layout of the image is still noise and sharing tokens only blurs it. Capped at half the steps.
    first_consistent_step: int = 2
    # Probability of plain attention for one layer at one step, as the original code does
    # (0.3 in the first 40% of steps, 0.1 after). Off by default: 0.0.
    random_skip_early: float = 0.0
    random_skip_late: float = 0.0
    style: str | None = None
    negative_prompt: str = ""
    scheduler: str | None = None
    max_panels: int = 500

    def rate_for_factor(self, factor: int) -> float:
        """Sampling rate for a layer whose tokens are ``factor`` times coarser than the latent per side."""
        if isinstance(self.sampling_rate, dict):
            return float(self.sampling_rate.get(factor, self.sampling_rate.get(0, 0.5)))
        return float(self.sampling_rate)

    def validate(self) -> None:
        """Raise SettingsError naming the first setting that is out of range and its valid range."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise SettingsError(message)

        if self.steps is not None:
            need(isinstance(self.steps, int) and 1 <= self.steps <= 1000, f"steps must be 1..1000, got {self.steps!r}")
        if self.guidance is not None:
            need(0.0 <= float(self.guidance) <= 50.0, f"guidance must be 0..50, got {self.guidance!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value is not None:
                need(
                    isinstance(value, int) and 64 <= value <= 4096 and value % 8 == 0,
                    f"{name} must be a multiple of 8 between 64 and 4096, got {value!r}",
                )
        need(
            isinstance(self.seed, int) and 0 <= self.seed < 2**63,
            f"seed must be an integer 0..2**63-1, got {self.seed!r}",
        )
        rates = self.sampling_rate.values() if isinstance(self.sampling_rate, dict) else [self.sampling_rate]
        for rate in rates:
            need(0.0 <= float(rate) <= 1.0, f"sampling_rate must be between 0 and 1, got {rate!r}")
        need(
            isinstance(self.id_images, int) and 1 <= self.id_images <= 16,
            f"id_images must be 1..16, got {self.id_images!r}",
        )
        need(isinstance(self.window, int) and 1 <= self.window <= 64, f"window must be 1..64, got {self.window!r}")
        need(self.mode in CONSISTENCY_MODES, f"mode must be one of {', '.join(CONSISTENCY_MODES)}, got {self.mode!r}")
        need(
            isinstance(self.first_consistent_step, int) and self.first_consistent_step >= 0,
            f"first_consistent_step must be 0 or more, got {self.first_consistent_step!r}",
        )
        for name in ("random_skip_early", "random_skip_late"):
            value = getattr(self, name)
            need(0.0 <= float(value) < 1.0, f"{name} must be in [0, 1), got {value!r}")
        need(
            isinstance(self.max_panels, int) and self.max_panels >= 1,
            f"max_panels must be 1 or more, got {self.max_panels!r}",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationSettings:
        """Build from a mapping, refusing unknown keys with the list of known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(unknown)}; known settings: {', '.join(sorted(known))}")
        values = dict(data)
        if isinstance(values.get("sampling_rate"), dict):
            values["sampling_rate"] = {int(k): float(v) for k, v in values["sampling_rate"].items()}
        return cls(**values)

    def merged(self, **overrides: Any) -> GenerationSettings:
        """A copy with the given fields replaced; ``None`` values leave the field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
