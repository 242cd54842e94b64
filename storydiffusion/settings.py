"""Every generation setting once: its type, default and allowed range.

``SETTING_RANGES`` is the one table of ranges: :meth:`GenerationSettings.validate`, the CLI's help,
the studio's sliders, the animate checks and the project loader all read it, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError

CONSISTENCY_MODES = ("identity", "window", "off")
MAX_SEED = 2**63 - 1
# Defaults of a transition clip (animate command and tab); their ranges are SETTING_RANGES' "frames" and "fps".
DEFAULT_FRAMES = 16
DEFAULT_FPS = 8.0
# JavaScript numbers hold integers exactly only up to 2**53 - 1: a seed typed into the page stays below.
MAX_BROWSER_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class SettingRange:
    """The allowed values of one numeric setting, and how a slider should step through them."""

    low: float
    high: float
    integer: bool = False
    multiple: int = 1  # integers only: the value must be a multiple of this (image sizes: 8)
    high_inclusive: bool = True
    low_inclusive: bool = True
    ui_step: float | None = None  # the studio slider's step; None: 1 for integers, 0.05 otherwise
    ui_high: float | None = None  # a lower top for the studio's field, where a browser cannot hold ``high``

    def describe(self) -> str:
        """``1..1000``, ``a multiple of 8 between 64 and 4096``, ``[0, 1)``: as messages and help show it."""
        low, high = _number(self.low), _number(self.high)
        if self.multiple > 1:
            return f"a multiple of {self.multiple} between {low} and {high}"
        if self.integer:
            return f"{low}..{high if self.high < MAX_SEED else '2**63-1'}"
        if self.high_inclusive and self.low_inclusive:
            return f"between {low} and {high}"
        return f"{'[' if self.low_inclusive else '('}{low}, {high}{']' if self.high_inclusive else ')'}"

    def contains(self, value: Any) -> bool:
        """True for a value of the right type inside the range (booleans, NaN and infinity never are)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below and (not self.integer or value % self.multiple == 0)

    def check(self, name: str, value: Any) -> None:
        """Raise SettingsError naming the setting, the allowed range and the value given."""
        if not self.contains(value):
            raise SettingsError(f"{name} must be {self.describe()}, got {value!r}")

    @property
    def ui_maximum(self) -> float:
        """The top of the studio's slider or number field."""
        return self.high if self.ui_high is None else self.ui_high

    @property
    def step(self) -> float:
        if self.ui_step is not None:
            return self.ui_step
        return self.multiple if self.integer else 0.05


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


SETTING_RANGES: dict[str, SettingRange] = {
    # story generation (GenerationSettings)
    "steps": SettingRange(1, 1000, integer=True),
    "guidance": SettingRange(0.0, 50.0, ui_step=0.5),
    "height": SettingRange(64, 4096, integer=True, multiple=8, ui_step=64),
    "width": SettingRange(64, 4096, integer=True, multiple=8, ui_step=64),
    "seed": SettingRange(0, MAX_SEED, integer=True, ui_high=MAX_BROWSER_INTEGER),
    "sampling_rate": SettingRange(0.0, 1.0),
    "id_images": SettingRange(1, 16, integer=True),
    "window": SettingRange(1, 64, integer=True),
    "first_consistent_step": SettingRange(0, 1000, integer=True),
    "random_skip_early": SettingRange(0.0, 1.0, high_inclusive=False),
    "random_skip_late": SettingRange(0.0, 1.0, high_inclusive=False),
    "max_panels": SettingRange(1, 10_000, integer=True),
    "lora_scale": SettingRange(-10.0, 10.0),
    # transitions (animate)
    "frames": SettingRange(2, 32, integer=True),
    "fps": SettingRange(1.0, 60.0, ui_step=1),
    "strength": SettingRange(0.0, 1.0, low_inclusive=False),
    "animation_steps": SettingRange(1, 200, integer=True),
}


def _factor(key: Any) -> int:
    """A sampling-rate key: the layer's downsampling factor, written as a whole number (JSON keys are text)."""
    try:
        if isinstance(key, bool):
            raise ValueError
        return int(key)
    except (TypeError, ValueError):
        raise SettingsError(
            f"sampling_rate keys must be whole numbers (downsampling factors such as 1, 2, 4), got {key!r}"
        ) from None


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
    # (1, 2, 4, ...) to a rate; factors it does not name use its key 0, else 0.5.
    sampling_rate: float | dict[int, float] = 0.5
    # Panels generated together per character to form its identity bank.
    id_images: int = 3
    # Panels per batch after the identity pass, and the window length in "window" mode.
    window: int = 4
    mode: str = "identity"
    # Plain self-attention for the first k denoising steps, while the layout of each image is still
    # noise and sharing tokens only blurs it; capped at half the steps. The original code uses 1.
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
        for name in ("steps", "guidance", "height", "width"):
            if getattr(self, name) is not None:
                SETTING_RANGES[name].check(name, getattr(self, name))
        rates = self.sampling_rate.values() if isinstance(self.sampling_rate, dict) else [self.sampling_rate]
        for rate in rates:
            SETTING_RANGES["sampling_rate"].check("sampling_rate", rate)
        for name in ("seed", "id_images", "window", "first_consistent_step", "random_skip_early", "random_skip_late"):
            SETTING_RANGES[name].check(name, getattr(self, name))
        if self.mode not in CONSISTENCY_MODES:
            raise SettingsError(f"mode must be one of {', '.join(CONSISTENCY_MODES)}, got {self.mode!r}")
        SETTING_RANGES["max_panels"].check("max_panels", self.max_panels)

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
            values["sampling_rate"] = {_factor(k): v for k, v in values["sampling_rate"].items()}
        return cls(**values)

    def merged(self, **overrides: Any) -> GenerationSettings:
        """A copy with the given fields replaced; ``None`` values leave the field as it is."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
