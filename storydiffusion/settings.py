"""Every generation setting once: its type, default and allowed range.

``SETTING_RANGES`` is the one table of ranges: :meth:`GenerationSettings.validate`, the CLI's help,
the studio's sliders, the animate checks and the project loader all read it, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from .errors import SettingsError, kind_of, shown
from .structured import plain_digits

CONSISTENCY_MODES = ("identity", "window", "off")
# Which tokens an image shares: all of them, sampled uniformly (the paper), or only its characters'
# (``subject_masks``). Uniform stays the default until a run with real weights measures the other.
CONSISTENCY_KINDS = ("uniform", "subject")
REFERENCE_ADAPTERS = ("image", "face")  # IP-Adapter (the whole photo) or IP-Adapter FaceID (its face)
MAX_SEED = 2**63 - 1
# Defaults of a transition clip (animate command and tab); their ranges are SETTING_RANGES' "frames" and "fps".
DEFAULT_FRAMES = 16
DEFAULT_FPS = 8.0
# Longest text a setting or a story's text field may hold; the text encoder reads only the first 77 tokens.
MAX_TEXT_CHARS = 20_000
# Longest file path a story may name (a reference photo, a control image): the longest Linux accepts.
MAX_PATH_CHARS = 4096
# Largest sampling-rate key: a layer's downsampling factor relative to the latent (a UNet has 1 to 8).
MAX_FACTOR = 1024


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

    def describe(self) -> str:
        """``1..1000``, ``a multiple of 8 between 64 and 4096``, ``[0, 1)``: as messages and help show it."""
        low, high = _number(self.low), _number(self.high)
        if self.multiple > 1:
            return f"a multiple of {self.multiple} between {low} and {high}"
        if self.integer:
            return f"{low}..{high}"
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
        """Raise SettingsError naming the setting (or its key path in a file), the allowed range and the value."""
        if not self.contains(value):
            raise SettingsError(f"{name} must be {self.describe()}, got {shown(value)}{self._why_not(value)}")

    def _why_not(self, value: Any) -> str:
        """Why a value of the wrong kind is refused; nothing for a number outside the range, which says it all."""
        if value is None:
            return ""
        if type(value).__module__ == "numpy":  # np.int64(4): a number, but not one a JSON record can hold
            return f" (a numpy {type(value).__name__}: give a Python number, e.g. int(value) or float(value))"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f" ({kind_of(value)} is not a number)"
        if self.integer and isinstance(value, float) and math.isfinite(value):
            return (
                " (not a whole number)"
                if not value.is_integer()
                else f" (write it as {int(value)}, without a decimal point)"
            )
        return ""

    @property
    def step(self) -> float:
        if self.ui_step is not None:
            return self.ui_step
        return self.multiple if self.integer else 0.05


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def consistent_start(first_consistent_step: int, steps: int) -> int:
    """The step consistent attention starts at: warm-up takes at most half of a short run, so that
    consistency never silently vanishes (``first_consistent_step`` as a run resolves and records it)."""
    return min(first_consistent_step, steps // 2)


def check_text(name: str, value: Any) -> None:
    """Text a setting or prompt may hold: a string no longer than MAX_TEXT_CHARS that can be written
    as UTF-8 (a lone surrogate from a mis-decoded command line cannot) and holds no control character,
    named by its flag or key path."""
    if not isinstance(value, str):
        raise SettingsError(f"{name} must be text, not {kind_of(value)} ({shown(value)})")
    if len(value) > MAX_TEXT_CHARS:
        raise SettingsError(f"{name} is {len(value):,} characters long; at most {MAX_TEXT_CHARS:,} are allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SettingsError(f"{name} {shown(value)} holds characters that are not text (lone surrogates)") from None
    if (found := control_character(value)) is not None:
        raise SettingsError(control_character_message(name, found))


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (NUL, ESC, DEL, ...) other than a tab or a line break: it would
    reach prompts, pages, file names and terminals. Typed boxes, files and API clients all let one in. A lone
    surrogate (half of a UTF-16 pair, which an API client can send) counts too: no file can hold it."""
    return next((ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r"), None)


def control_character_message(where: str, found: str) -> str:
    if unicodedata.category(found) == "Cs":
        return (
            f"{where} holds U+{ord(found):04X}, half of a character pair and not text by itself (a lone "
            "surrogate): remove it, or type the character again"
        )
    return f"{where} holds the control character U+{ord(found):04X}: remove it (only tabs and line breaks may appear in text)"


def key_path(where: str | None, *keys: Any) -> str:
    """``settings.sampling_rate.12``: where a value sits in a file. Without ``where`` (settings built in
    code or typed in the studio) only the setting's own name, as it has no file to point into."""
    if where is None:
        return str(keys[0])
    return ".".join(str(part) for part in (where, *keys) if part != "")


SETTING_RANGES: dict[str, SettingRange] = {
    # story generation (GenerationSettings)
    "steps": SettingRange(1, 1000, integer=True),
    "guidance": SettingRange(0.0, 50.0, ui_step=0.5),
    "height": SettingRange(64, 4096, integer=True, multiple=8, ui_step=64),
    "width": SettingRange(64, 4096, integer=True, multiple=8, ui_step=64),
    "seed": SettingRange(0, MAX_SEED, integer=True),
    "sampling_rate": SettingRange(0.0, 1.0),
    "id_images": SettingRange(1, 16, integer=True),
    "window": SettingRange(1, 64, integer=True),
    "first_consistent_step": SettingRange(0, 1000, integer=True),
    "random_skip_early": SettingRange(0.0, 1.0, high_inclusive=False),
    "random_skip_late": SettingRange(0.0, 1.0, high_inclusive=False),
    "max_panels": SettingRange(1, 10_000, integer=True),
    "subject_threshold": SettingRange(0.0, 1.0, low_inclusive=False, high_inclusive=False),
    # a character's reference photo (IP-Adapter) and a panel's control image (ControlNet): how strongly they steer
    "reference_scale": SettingRange(0.0, 2.0),
    "control_scale": SettingRange(0.0, 2.0),
    "lora_scale": SettingRange(-10.0, 10.0),
    # transitions (animate)
    "frames": SettingRange(2, 32, integer=True),
    "fps": SettingRange(1.0, 60.0, ui_step=1),
    "strength": SettingRange(0.0, 1.0, low_inclusive=False),
    "animation_steps": SettingRange(1, 200, integer=True),
    # pages (compose): dots per inch of the page images and the PDF
    "dpi": SettingRange(10, 1200, integer=True),
    # training the motion predictor (motion.train): far beyond the paper's run, short of hanging a machine
    "train_frames": SettingRange(3, 256, integer=True),
    "train_tokens": SettingRange(1, 1024, integer=True),
    "train_layers": SettingRange(1, 64, integer=True),
    "train_hidden": SettingRange(1, 8192, integer=True),
    "train_heads": SettingRange(1, 128, integer=True),
    "train_steps": SettingRange(1, 100_000_000, integer=True),
    "train_batch_size": SettingRange(1, 4096, integer=True),
    "train_lr": SettingRange(0.0, 1.0, low_inclusive=False),
    "train_weight_decay": SettingRange(0.0, 10.0),
    "train_warmup_steps": SettingRange(0, 100_000_000, integer=True),
    "train_save_every": SettingRange(1, 100_000_000, integer=True),
    "train_seed": SettingRange(0, MAX_SEED, integer=True),
    "train_max_video_frames": SettingRange(3, 100_000, integer=True),
    "train_dropout": SettingRange(0.0, 1.0),
    "train_grad_clip": SettingRange(0.0, 1e6, low_inclusive=False),
}


def _factor(key: Any, path: str) -> int:
    """A sampling-rate key: the layer's downsampling factor, written as a whole number (JSON keys are text)."""
    if isinstance(key, int) and not isinstance(key, bool):
        factor = key
    elif isinstance(key, str) and plain_digits(key) and len(key) <= 5:  # '١', ' 1', '1_0': no
        factor = int(key)
    else:
        factor = -1
    if not 0 <= factor <= MAX_FACTOR:
        raise SettingsError(
            f"{path} keys must be whole numbers 0..{MAX_FACTOR} (downsampling factors such as 1, 2, 4; "
            f"0 for the others), got {shown(key)}"
        )
    return factor


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
    # "subject": share only the tokens that show the characters (masks from cross-attention), so
    # backgrounds and outfits of one panel do not bleed into the others; "uniform": every token.
    consistency: str = "uniform"
    # How a character's reference photo conditions its images: "image", IP-Adapter on the whole photo
    # (face, hair, clothes, colours); "face", IP-Adapter FaceID on the identity of its face (InsightFace).
    reference_adapter: str = "image"
    # Where a character's normalised cross-attention map becomes its mask; None: Otsu's threshold per map.
    subject_threshold: float | None = None
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

    def validate(self, where: str | None = None) -> None:
        """Raise SettingsError naming the first setting that is out of range, its value and its valid range.

        ``where`` is the key that holds these settings in a file ("settings", "" for a file of settings
        only): messages then name the setting's key path in that file, e.g. ``settings.sampling_rate.2``.
        """
        for name in ("steps", "guidance", "height", "width"):
            if getattr(self, name) is not None:
                SETTING_RANGES[name].check(key_path(where, name), getattr(self, name))
        if isinstance(self.sampling_rate, dict):
            for factor, rate in self.sampling_rate.items():
                path = key_path(where, "sampling_rate")
                if isinstance(factor, bool) or not isinstance(factor, int):  # "1": the run would look for 1
                    quoted = ", a number written as text: write it without quotes" if isinstance(factor, str) else ""
                    raise SettingsError(
                        f"{path} keys must be whole numbers 0..{MAX_FACTOR} (downsampling factors such as 1, 2, 4; "
                        f"0 for the others), got {shown(factor)}{quoted}"
                    )
                _factor(factor, path)
                SETTING_RANGES["sampling_rate"].check(key_path(where, "sampling_rate", factor), rate)
        elif isinstance(self.sampling_rate, str) and ":" in self.sampling_rate:  # the command line's form
            raise SettingsError(
                f"{key_path(where, 'sampling_rate')} must be a number or a mapping of rates by downsampling factor, "
                f"got {shown(self.sampling_rate)}: write it as a mapping, e.g. sampling_rate: {{1: 0.5, 2: 0.3}} "
                "(1:0.5,2:0.3 is the --sampling-rate flag's form)"
            )
        else:
            SETTING_RANGES["sampling_rate"].check(key_path(where, "sampling_rate"), self.sampling_rate)
        for name in ("seed", "id_images", "window", "first_consistent_step", "random_skip_early", "random_skip_late"):
            SETTING_RANGES[name].check(key_path(where, name), getattr(self, name))
        if not isinstance(self.mode, str) or self.mode not in CONSISTENCY_MODES:
            quote = " (a word, not true or false)"
            raise SettingsError(
                f"{key_path(where, 'mode')} must be one of {', '.join(CONSISTENCY_MODES)}, got {shown(self.mode)}"
                + (quote if isinstance(self.mode, bool) else "")
            )
        if not isinstance(self.consistency, str) or self.consistency not in CONSISTENCY_KINDS:
            raise SettingsError(
                f"{key_path(where, 'consistency')} must be one of {', '.join(CONSISTENCY_KINDS)}, "
                f"got {shown(self.consistency)}"
            )
        if not isinstance(self.reference_adapter, str) or self.reference_adapter not in REFERENCE_ADAPTERS:
            raise SettingsError(
                f"{key_path(where, 'reference_adapter')} must be one of {', '.join(REFERENCE_ADAPTERS)}, "
                f"got {shown(self.reference_adapter)}"
            )
        if self.subject_threshold is not None:
            SETTING_RANGES["subject_threshold"].check(key_path(where, "subject_threshold"), self.subject_threshold)
        SETTING_RANGES["max_panels"].check(key_path(where, "max_panels"), self.max_panels)
        self._validate_texts(where)

    def _validate_texts(self, where: str | None) -> None:
        """The settings that are names or text: a style or scheduler name (or None), a negative prompt."""
        for name in ("style", "scheduler"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SettingsError(
                    f"{key_path(where, name)} must be the name of a {name} or left out, got {shown(value)}"
                )
        for name in ("style", "scheduler", "negative_prompt"):
            if getattr(self, name) is not None or name == "negative_prompt":
                check_text(key_path(where, name), getattr(self, name))

    def validate_names(self, where: str | None = None) -> None:
        """The style and scheduler must exist. Files (``from_dict``) and the CLI check this with the other
        settings, so a typo is refused before a model loads and before the output folder is prepared;
        settings built in code meet the same check when the pipeline draws with them."""
        if self.style is not None:
            from .styles import check_style_name

            check_style_name(self.style, key_path(where, "style"))
        if self.scheduler is not None:
            from .models.schedulers import check_scheduler_name  # imports torch: only when a scheduler is named

            check_scheduler_name(self.scheduler, key_path(where, "scheduler"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None) -> GenerationSettings:
        """Build and validate settings from a mapping (a file's ``settings``), refusing unknown keys with
        the list of known ones; ``where`` is that mapping's key, so every message names its key path."""
        if not isinstance(data, dict):
            raise SettingsError(
                f"{where or 'settings'} must be a mapping of setting names to values, "
                f"not {kind_of(data)} ({shown(data)})"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise SettingsError(
                f"{where + ': ' if where else ''}unknown setting(s) {', '.join(unknown)}; "
                f"known settings: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if values.get("mode") is False:  # consistency turned off, as JSON or an older YAML reader says it
            values["mode"] = "off"
        if isinstance(values.get("sampling_rate"), dict):
            path = key_path(where, "sampling_rate")
            rates = [(_factor(k, path), v) for k, v in values["sampling_rate"].items()]
            values["sampling_rate"] = dict(rates)
            if len(values["sampling_rate"]) < len(rates):  # 1 and "1" (or 01) are one factor, given twice
                twice = next(factor for factor, _ in rates if [f for f, _ in rates].count(factor) > 1)
                raise SettingsError(f"{path} gives the factor {twice} twice: keep one rate per factor")
        settings = cls(**values)
        settings.validate(where)
        settings.validate_names(where)
        return settings

    def merged(self, **overrides: Any) -> GenerationSettings:
        """A copy with the given fields replaced; ``None`` values leave the field as it is."""
        copy = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        if isinstance(copy.sampling_rate, dict):  # a copy of its own: a run's record never changes with the caller's
            copy.sampling_rate = dict(copy.sampling_rate)
        return copy
