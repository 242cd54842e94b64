"""How much memory a story will take, asked before a model loads: per phase, and the settings that fit.

A run has three phases: the identity pass (each character's identity images drawn together, writing
the bank), the read batches (``window`` panels at a time reading the bank) and the VAE decode of a
batch. Each is predicted on the device and the host from the model's configs (``memory_model``), the
story's own batch plan (``planning.plan_story``) and the exact bank layout (``bank_layout``), so the
plan counts what the run will do, not a copy of its rules. The formulas are in ``docs/memory.md``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import torch

from .bank_layout import expected_bank_layout, guides
from .errors import SettingsError
from .memory_adapters import (
    batch_is_controlled,
    control_residual_elements,
    controlnet_skeletons,
    has_references,
    reference_skeletons,
    story_control_kinds,
)
from .memory_model import (
    build_skeleton,
    model_configs,
    module_bytes,
    tiled_decode_elements,
    unet_activation_elements,
    vae_decode_elements,
)
from .models import select_dtype
from .planning import Batch, plan_story
from .settings import GenerationSettings
from .story import Story

VAE_MODES = ("plain", "slicing", "tiling")  # tiling: slicing and tiling together
BANK_TIERS = ("host", "device", "disk")  # in the order the fit prefers them
CUDA_CONTEXT_BYTES = 512 * 2**20  # the CUDA context and allocator slack: an estimate, not measured
# A read run's projection cache holds a key and a value per bank token, each as wide as the token in
# SD 1.5 and SDXL self-attention (inner dim = channels): twice the bank, at most (it stops at a budget).
PROJECTED_PER_BANK_BYTE = 2
# On an H200, whole SDXL runs (random weights, 768 and 1024) peaked at 1.26x and 1.35x the device
# prediction (benchmarks/RESULTS.md): fits for --vram keep that margin until the missing part is modelled.
CUDA_MEASURED_MARGIN = 1.35
SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*")


def parse_size(text: str) -> int:
    """``12GB``, ``12 GiB``, ``512MB``, ``1.5TB``: bytes. ValueError says what is accepted."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in SIZE_UNITS:
        raise ValueError(f"expected a size such as 12GB, 12GiB or 512MB, got {text!r}")
    size = int(float(match.group(1)) * SIZE_UNITS[unit])
    if size < 1:  # 0GB, or 0.1B: no budget at all, not "no limit"
        raise ValueError(f"a size must be at least 1 byte, got {text!r}: give one such as 12GB or 512MB")
    return size


def format_size(size: int) -> str:
    """Bytes as a person reads them: GiB above one, else MiB, KiB under one MiB and bytes under one KiB."""
    if size >= 2**30:
        return f"{size / 2**30:.2f} GiB"
    if size >= 2**20:
        return f"{size / 2**20:.1f} MiB" if size >= 10 * 2**20 else f"{size / 2**20:.2f} MiB"
    return f"{size / 2**10:.1f} KiB" if size >= 2**10 else f"{size} B"


@dataclass(frozen=True)
class PlanOptions:
    """The memory settings of a run: what ``generate`` takes as --window, --cpu-offload, --vae-*, --bank-on-device."""

    window: int
    cpu_offload: bool = False
    vae: str = "plain"
    bank_tier: str = "host"

    def flags(self) -> str:
        """The ``generate`` flags that give these options."""
        flags = [f"--window {self.window}"]
        flags += ["--cpu-offload"] if self.cpu_offload else []
        flags += {"plain": [], "slicing": ["--vae-slicing"], "tiling": ["--vae-slicing", "--vae-tiling"]}[self.vae]
        flags += {"host": [], "device": ["--bank-on-device"], "disk": ["--bank-memory 1MB"]}[self.bank_tier]
        return " ".join(flags)


@dataclass
class Phase:
    """Predicted peak bytes of one phase on the device and on the host."""

    name: str
    images: int
    device: int
    host: int


@dataclass
class MemoryPlan:
    """The predictions for one story, model and set of options."""

    options: PlanOptions
    phases: list[Phase]
    weights: dict[str, int]
    bank_per_image: int
    bank_images: int

    @property
    def device_peak(self) -> int:
        return max(phase.device for phase in self.phases)

    @property
    def host_peak(self) -> int:
        return max(phase.host for phase in self.phases)


@dataclass
class BudgetFit:
    """The first options that fit a budget, or (``fits`` False) the options that need the least memory."""

    plan: MemoryPlan
    fits: bool


class MemoryPlanner:
    """One story on one model, on the meta device: predictions for any options, fast enough to search."""

    def __init__(
        self,
        story: Story,
        settings: GenerationSettings | None = None,
        model: str | None = None,
        *,
        device: str = "cuda",
        dtype: str = "auto",
        control_union: bool = False,
    ):
        from .pipeline import StoryPipeline

        configs, spec = model_configs(model)
        if control_union and configs.family != "sdxl":
            raise SettingsError("the union ControlNet is for SDXL models: leave out --control-union with SD 1.5")
        self.skeleton = build_skeleton(configs)
        pipeline = StoryPipeline(self.skeleton, spec)
        self.story = story
        self.model = spec.name
        self.source = configs.source
        self.settings = pipeline.resolve_settings(story, settings)
        self.device = torch.device(device)
        self.dtype = select_dtype(self.device, dtype)
        self.halves = 2 if guides(self.skeleton, self.settings) else 1
        self.bank_per_image = self._bank_per_image(pipeline.consistent_layer_names)
        self.control_kinds = story_control_kinds(story, control_union)
        tiny = spec.source == "tiny"
        self.adapters = controlnet_skeletons(self.skeleton.unet, configs.family, self.control_kinds, tiny)
        if has_references(story):
            face = self.settings.reference_adapter == "face"
            self.adapters.update(reference_skeletons(self.skeleton.unet, configs.family, tiny, face))
        self.component_bytes = self._weights()

    @property
    def dtype_size(self) -> int:
        return torch.empty((), dtype=self.dtype, device="meta").element_size()

    def _bank_per_image(self, layer_names: list[str]) -> int:
        """Exactly what ``IdentityBank`` holds per identity image: the run's own (step, layer) layout."""
        if self.settings.mode == "off":
            return 0
        layout = expected_bank_layout(self.skeleton, layer_names, self.settings)
        return sum(math.prod(shape) for shape in layout.values()) * self.dtype_size

    def _weights(self) -> dict[str, int]:
        """Bytes of each component's weights in the run's dtype."""
        parts = {"unet": self.skeleton.unet, "vae": self.skeleton.vae}
        parts.update({f"text encoder {i + 1}": module for i, module in enumerate(self.skeleton.text_encoders)})
        parts.update(self.adapters)
        return {name: module_bytes(module, self.dtype) for name, module in parts.items()}

    def requested(self, *, cpu_offload: bool = False, vae: str = "plain", bank_tier: str = "host") -> PlanOptions:
        return PlanOptions(self.settings.window, cpu_offload, vae, bank_tier)

    @property
    def latent_size(self) -> tuple[int, int]:
        factor = self.skeleton.vae_scale_factor
        return self.settings.height // factor, self.settings.width // factor

    def unet_bytes(self, images: int) -> int:
        """Activations of one UNet forward over ``images`` images (both CFG halves)."""
        elements = unet_activation_elements(self.skeleton.unet.config, *self.latent_size)
        return self.halves * images * elements * self.dtype_size

    def control_bytes(self, images: int) -> int:
        """What ControlNets add to a controlled UNet forward: the residuals it holds (a second set while
        several nets' are summed) and a control image per kind of map, per image and CFG half."""
        if not self.control_kinds:
            return 0
        kinds = len(story_control_kinds(self.story, union=False))
        residuals = control_residual_elements(self.skeleton.unet.config, *self.latent_size) * min(kinds, 2)
        pictures = 3 * self.settings.height * self.settings.width * kinds
        return self.halves * images * (residuals + pictures) * self.dtype_size

    def denoise_component(self, weights: dict[str, int]) -> int:
        """Weights on the device while the UNet runs under offload: the UNet with its adapter layers and nets."""
        return weights["unet"] + sum(size for name, size in weights.items() if name.startswith(("ControlNet", "IP-")))

    def decode_bytes(self, images: int, vae: str) -> int:
        """Activations of decoding a batch: all its images at once, one at a time (slicing), or in tiles."""
        config, size = self.skeleton.vae.config, (self.settings.height, self.settings.width)
        per_image = tiled_decode_elements(config, *size) if vae == "tiling" else vae_decode_elements(config, *size)
        return (1 if vae != "plain" else images) * per_image * self._decode_dtype_size()

    def _upcasts_vae(self) -> bool:
        """SDXL pipelines decode in float32 when the VAE is float16 and its config asks for it."""
        return self.skeleton.family == "sdxl" and self.dtype == torch.float16 and self.skeleton.vae.config.force_upcast

    def _decode_dtype_size(self) -> int:
        return 4 if self._upcasts_vae() else self.dtype_size

    def predict(self, options: PlanOptions) -> MemoryPlan:
        """Peak device and host bytes of each phase of the story's plan with ``options``."""
        plan = plan_story(self.story, dataclasses.replace(self.settings, window=options.window))
        weights = self.component_bytes
        bank_images = _bank_images(plan)
        identity = [(b, held) for b, held in zip(plan, bank_images) if b.kind == "identity"]
        reads = [(b, held) for b, held in zip(plan, bank_images) if b.kind != "identity"]
        phases = [
            self._denoise_phase(name, batches, options, weights)
            for name, batches in (("identity pass", identity), ("read batches", reads))
            if batches
        ]
        phases.append(self._decode_phase(list(zip((len(b.images) for b in plan), bank_images)), options, weights))
        return MemoryPlan(options, phases, weights, self.bank_per_image, max(bank_images, default=0))

    def _place(self, name: str, images: int, work: int, component: int, bank: int, options: PlanOptions, weights):
        """Weights, bank and working memory of one phase on the device or the host."""
        total = sum(weights.values())
        on_device = component if options.cpu_offload else total
        device_bank = bank if options.bank_tier == "device" else 0
        host_bank = bank if options.bank_tier == "host" else 0
        if self.device.type == "cpu":
            return Phase(name, images, 0, total + work + bank * (options.bank_tier != "disk"))
        host = (total if options.cpu_offload else 0) + host_bank
        return Phase(name, images, CUDA_CONTEXT_BYTES + on_device + work + device_bank, host)

    def _denoise_phase(self, name: str, batches: list[tuple[Batch, int]], options: PlanOptions, weights) -> Phase:
        images = max(len(batch.images) for batch, _ in batches)
        bank = max(held for _, held in batches) * self.bank_per_image
        if name == "read batches" and self._caches_projections(options):
            bank *= 1 + PROJECTED_PER_BANK_BYTE  # the run's cache of projected keys and values, beside the bank
        work = max(
            self.unet_bytes(len(batch.images))
            + (self.control_bytes(len(batch.images)) if batch_is_controlled(self.story, batch) else 0)
            for batch, _ in batches
        )
        return self._place(name, images, work, self.denoise_component(weights), bank, options, weights)

    def _caches_projections(self, options: PlanOptions) -> bool:
        """Reads keep projected keys and values where the bank lives when that is where they are computed
        (``bank_projections``): on the CPU, or with the bank on the device; never under --bank-memory."""
        return options.bank_tier != "disk" and (self.device.type == "cpu" or options.bank_tier == "device")

    def _decode_phase(self, batches: list[tuple[int, int]], options: PlanOptions, weights) -> Phase:
        images = max(count for count, _ in batches)
        bank = max(held for _, held in batches) * self.bank_per_image
        upcast = weights["vae"] if self._upcasts_vae() else 0  # float32 weights while it decodes
        work = self.decode_bytes(images, options.vae) + upcast
        return self._place("VAE decode", images, work, weights["vae"], bank, options, weights)


def _bank_images(plan: list[Batch]) -> list[int]:
    """Identity images in the bank while each batch runs: those kept so far and those it writes."""
    held: set[int] = set()
    counts = []
    for batch in plan:
        held |= {slot.source_id for slot in batch.slots if slot.writes}
        counts.append(len(held))
        held -= set(batch.forget_after)
    return counts


def candidate_options(planner: MemoryPlanner) -> list[PlanOptions]:
    """Every option set, fastest first: no offload, the largest window, the fewest VAE savings, the bank in RAM."""
    offloads = (False, True) if planner.device.type == "cuda" else (False,)
    tiers = BANK_TIERS if planner.device.type == "cuda" else ("host", "disk")
    return [
        PlanOptions(window, offload, vae, tier)
        for offload in offloads
        for window in range(planner.settings.window, 0, -1)
        for vae in VAE_MODES
        for tier in tiers
    ]


def fit_budget(planner: MemoryPlanner, vram: int | None = None, ram: int | None = None) -> BudgetFit:
    """The fastest options whose every phase fits ``vram`` (device) and ``ram`` (host) bytes."""
    plans = [planner.predict(options) for options in candidate_options(planner)]
    margin = CUDA_MEASURED_MARGIN if planner.device.type == "cuda" else 1.0
    for plan in plans:
        if (vram is None or plan.device_peak * margin <= vram) and (ram is None or plan.host_peak <= ram):
            return BudgetFit(plan, True)
    smallest = min(plans, key=lambda plan: (plan.device_peak, plan.host_peak))
    return BudgetFit(smallest, False)


def nothing_fits(fit: BudgetFit, vram: int | None, ram: int | None) -> SettingsError:
    """The error a caller raises when no options fit: what the least hungry options still need."""
    sizes = (("--vram", vram), ("--ram", ram))
    budget = " and ".join(f"{flag} {format_size(size)}" for flag, size in sizes if size is not None)
    return SettingsError(
        f"nothing fits in {budget}: the least memory ({fit.plan.options.flags()}) still needs "
        f"{format_size(fit.plan.device_peak)} of device and {format_size(fit.plan.host_peak)} of host memory; "
        "lower --height/--width or --id-images, or plan for a larger budget"
    )


def format_plan(planner: MemoryPlanner, plan: MemoryPlan) -> str:
    """The plan as the CLI prints it: one line per phase, then the weights and the bank."""
    settings = planner.settings
    dtype = str(planner.dtype).removeprefix("torch.")
    lines = [
        f"{planner.model} ({planner.source}) at {settings.width}x{settings.height}, {dtype} on {planner.device.type}, "
        f"{settings.steps} steps, mode {settings.mode}: {plan.options.flags()}",
        f"{'phase':<15}{'images':>7}{'device':>14}{'host':>14}",
    ]
    for phase in plan.phases:
        lines.append(f"{phase.name:<15}{phase.images:>7}{format_size(phase.device):>14}{format_size(phase.host):>14}")
    weights = ", ".join(f"{name} {format_size(size)}" for name, size in plan.weights.items())
    lines.append(f"weights: {weights}")
    lines.append(
        f"identity bank: {format_size(plan.bank_per_image * plan.bank_images)} at most "
        f"({plan.bank_images} image{'s' if plan.bank_images != 1 else ''} x {format_size(plan.bank_per_image)}), on the {plan.options.bank_tier}"
    )
    if planner.device.type == "cuda":
        lines.append(
            f"on a GPU, measured peaks were up to {CUDA_MEASURED_MARGIN}x these device numbers "
            "(docs/memory.md): --vram fits keep that margin"
        )
    return "\n".join(lines)


def format_fit(fit: BudgetFit) -> str:
    """The settings that fit, as a short table and the flags to type."""
    options = fit.plan.options
    rows = [
        ("window", str(options.window)),
        ("cpu offload", "yes" if options.cpu_offload else "no"),
        ("vae", {"plain": "plain", "slicing": "slicing", "tiling": "slicing + tiling"}[options.vae]),
        ("bank tier", options.bank_tier),
        ("device peak", format_size(fit.plan.device_peak)),
        ("host peak", format_size(fit.plan.host_peak)),
    ]
    title = "settings that fit:" if fit.fits else "closest settings (they do not fit):"
    return "\n".join([title] + [f"  {name:<12} {value}" for name, value in rows] + [f"  generate {options.flags()}"])
