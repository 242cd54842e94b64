"""StoryPipeline: a story in, character-consistent panels out.

Read top to bottom: load a diffusers pipeline and install consistent attention once; for each run,
plan the batches (identity sets, then panels reading the banks), and run each batch through a
per-run copy of the diffusers pipeline with the run's ``ConsistencyContext`` in
``cross_attention_kwargs``. The UNet is shared; everything that changes during a run is per run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .attention import ConsistencyContext, ImageSlot, install_consistent_attention
from .bank import IdentityBank
from .errors import GenerationCancelled, ModelError, SettingsError
from .models import ModelSpec, load_diffusers_pipeline, select_device, select_dtype
from .planning import Batch, plan_story
from .settings import GenerationSettings
from .styles import get_style

logger = logging.getLogger(__name__)

SCHEDULERS = MappingProxyType(
    {
        "euler": (EulerDiscreteScheduler, {}),
        "euler-a": (EulerAncestralDiscreteScheduler, {}),
        "ddim": (DDIMScheduler, {}),
        "dpm++": (DPMSolverMultistepScheduler, {}),
        "dpm++-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
        "unipc": (UniPCMultistepScheduler, {}),
    }
)
CLIP_MAX_TOKENS = 77


@dataclass
class Progress:
    """What a progress callback is told after each denoising step."""

    batch: int
    batches: int
    step: int
    steps: int
    panels: list[int]  # 0-based indices of the story panels in this batch
    kind: str
    panels_done: int
    panels_total: int

    @property
    def fraction(self) -> float:
        return ((self.batch + self.step / max(self.steps, 1)) / max(self.batches, 1)) if self.batches else 1.0


@dataclass
class PanelImage:
    index: int  # 0-based
    image: Image.Image
    seed: int
    prompt: str
    negative_prompt: str
    characters: tuple[str, ...]
    identity: bool  # generated in its character's identity set


@dataclass
class StoryResult:
    """Panels of one run plus everything needed to reproduce or continue it."""

    story: Any
    settings: GenerationSettings
    model: ModelSpec
    panels: list[PanelImage]
    bank: IdentityBank | None
    warnings: list[str] = field(default_factory=list)
    cancelled: bool = False
    scheduler: str = ""
    consistent_layers: int = 0
    seconds: float = 0.0

    def panel(self, index: int) -> PanelImage:
        for panel in self.panels:
            if panel.index == index:
                return panel
        raise KeyError(f"panel {index + 1} was not generated in this run")


def _is_cancelled(cancel: threading.Event | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if isinstance(cancel, threading.Event) else bool(cancel())


class StoryPipeline:
    """Loads a model once and generates any number of stories with it, also concurrently."""

    def __init__(self, pipe, spec: ModelSpec, consistent_blocks: str = "up"):
        self.pipe = pipe
        self.spec = spec
        self.consistent_layer_names = install_consistent_attention(pipe.unet, consistent_blocks)
        self.pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        scheduler: str | None = None,
        cpu_offload: bool = False,
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        lora: str | None = None,
        lora_scale: float = 1.0,
        consistent_blocks: str = "up",
        local_files_only: bool = False,
    ) -> StoryPipeline:
        """Load a registry name, hub id, local diffusers folder, single ``.safetensors`` file or tiny model."""
        torch_device = select_device(device)
        torch_dtype = select_dtype(torch_device, dtype)
        pipe, spec = load_diffusers_pipeline(model, torch_dtype=torch_dtype, local_files_only=local_files_only)
        if scheduler:
            pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        if lora:
            try:
                pipe.load_lora_weights(lora, adapter_name="story_lora")
                pipe.set_adapters(["story_lora"], adapter_weights=[lora_scale])
            except Exception as error:  # diffusers raises many types for a bad LoRA
                raise ModelError(
                    f"could not load LoRA {lora!r}: {error}. Check the path or hub id and that it fits {spec.family}"
                ) from None
        if cpu_offload and torch_device.type == "cuda":
            pipe.enable_model_cpu_offload(device=torch_device)
        else:
            pipe.to(torch_device)
        if vae_slicing:
            pipe.vae.enable_slicing()
        if vae_tiling:
            pipe.vae.enable_tiling()
        return cls(pipe, spec, consistent_blocks)

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def resolve_settings(self, story, overrides: GenerationSettings | None = None) -> GenerationSettings:
        """Story settings, then explicit overrides, then the model's defaults for what is still unset."""
        settings = overrides if overrides is not None else story.settings
        settings = settings.merged()
        defaults = {
            "steps": self.spec.steps,
            "guidance": self.spec.guidance,
            "height": self.spec.height,
            "width": self.spec.width,
        }
        for name, value in defaults.items():
            if getattr(settings, name) is None:
                setattr(settings, name, value)
        settings.validate()
        # Warm-up steps never take more than half of a short run, so consistency never silently vanishes.
        settings.first_consistent_step = min(settings.first_consistent_step, settings.steps // 2)
        multiple = self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        for name in ("height", "width"):
            if getattr(settings, name) % multiple:
                raise SettingsError(
                    f"{name} must be a multiple of {multiple} for this model, got {getattr(settings, name)}"
                )
        return settings

    def bank_signature(self, settings: GenerationSettings) -> dict[str, Any]:
        """Every setting that decides the sampled identity tokens."""
        return {
            "model": self.spec.name,
            "scheduler": self._scheduler_name(settings),
            "height": settings.height,
            "width": settings.width,
            "steps": settings.steps,
            "cfg": settings.guidance > 1.0,
            "seed": settings.seed,
            "sampling_rate": settings.sampling_rate
            if not isinstance(settings.sampling_rate, dict)
            else {str(k): v for k, v in sorted(settings.sampling_rate.items())},
            "first_consistent_step": settings.first_consistent_step,
            "skip": [settings.random_skip_early, settings.random_skip_late],
            "layers": len(self.consistent_layer_names),
        }

    def generate(
        self,
        story,
        settings: GenerationSettings | None = None,
        *,
        panels: list[int] | None = None,
        bank: IdentityBank | None = None,
        bank_storage: str = "auto",
        callback: Callable[[Progress], None] | None = None,
        on_panel: Callable[[PanelImage], None] | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> StoryResult:
        """Generate the story's panels (or only ``panels``, 0-based) with consistent characters.

        ``bank`` from an earlier result lets single panels be regenerated without the identity pass.
        ``cancel`` stops cleanly between steps: the result keeps the panels already finished.
        """
        started = time.perf_counter()
        settings = self.resolve_settings(story, settings)
        style = get_style(settings.style)
        warnings: list[str] = []
        signature = self.bank_signature(settings)
        if bank is not None and settings.mode == "identity":
            try:
                bank.check_compatible(signature)
            except Exception as error:
                warnings.append(f"identity bank not reused: {error}")
                bank = None
        storage = self.device if bank_storage == "device" else torch.device("cpu")
        if bank is None:
            bank = IdentityBank(signature, storage)
        elif bank.storage != storage or (self.device.type == "cuda" and storage.type == "cpu"):
            bank.move_to(storage, pin=self.device.type == "cuda")
        banked = {name: sources for name, sources in bank.characters.items() if settings.mode == "identity"}
        plan = plan_story(story, settings, panels, banked)
        wanted = set(range(len(story.panels)) if panels is None else panels)
        result = StoryResult(
            story=story,
            settings=settings,
            model=self.spec,
            panels=[],
            bank=bank if settings.mode == "identity" else None,
            warnings=warnings,
            scheduler=self._scheduler_name(settings),
            consistent_layers=len(self.consistent_layer_names),
        )
        total = sum(1 for batch in plan for image in batch.images if image.panel_index in wanted)
        self._warn_long_prompts(story, style, wanted, warnings)
        for number, batch in enumerate(plan):
            try:
                images = self._run_batch(
                    story, settings, style, batch, bank, number, len(plan), callback, cancel, len(result.panels), total
                )
            except GenerationCancelled:
                result.cancelled = True
                break
            if batch.kind == "identity":
                bank.characters[batch.character] = [image.source_id for image in batch.images]
            if batch.forget_after:
                bank.drop(batch.forget_after)
            for planned, image in zip(batch.images, images):
                if planned.panel_index is None or planned.panel_index not in wanted:
                    continue
                prompt, negative = self._prompts(story, style, settings, planned)
                panel = PanelImage(
                    index=planned.panel_index,
                    image=image,
                    seed=planned.seed,
                    prompt=prompt,
                    negative_prompt=negative,
                    characters=tuple(story.panels[planned.panel_index].characters),
                    identity=batch.kind == "identity",
                )
                result.panels.append(panel)
                if on_panel is not None:
                    on_panel(panel)
        result.panels.sort(key=lambda panel: panel.index)
        result.seconds = time.perf_counter() - started
        for message in warnings:
            logger.warning(message)
        return result

    def _prompts(self, story, style, settings: GenerationSettings, planned) -> tuple[str, str]:
        if planned.panel_index is not None:
            text = story.panel_prompt(planned.panel_index)
        else:
            text = f"portrait of {story.characters[planned.character].description}, facing the viewer"
        return style.apply(text, settings.negative_prompt)

    def _warn_long_prompts(self, story, style, wanted: set[int], warnings: list[str]) -> None:
        """CLIP reads 77 tokens: say which panels lose words instead of cutting them silently."""
        tokenizer = self.pipe.tokenizer
        for index in sorted(wanted):
            prompt, _ = style.apply(story.panel_prompt(index))
            count = len(tokenizer(prompt, truncation=False).input_ids)
            if count > CLIP_MAX_TOKENS:
                warnings.append(
                    f"panel {index + 1}: the prompt is {count - 2} tokens but CLIP reads {CLIP_MAX_TOKENS - 2}; "
                    f"the last {count - CLIP_MAX_TOKENS} tokens are dropped. Shorten the prompt or the character description."
                )

    def _scheduler_name(self, settings: GenerationSettings) -> str:
        return settings.scheduler or type(self.pipe.scheduler).__name__

    def _run_pipe(self, settings: GenerationSettings):
        """A shallow per-run copy: shares the models, owns its scheduler and call state."""
        components = dict(self.pipe.components)
        if settings.scheduler:
            components["scheduler"] = make_scheduler(settings.scheduler, self.pipe.scheduler.config)
        else:
            components["scheduler"] = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
        extra = {}
        if "force_zeros_for_empty_prompt" in self.pipe.config:
            extra["force_zeros_for_empty_prompt"] = self.pipe.config.force_zeros_for_empty_prompt
        run_pipe = type(self.pipe)(**components, **extra)
        run_pipe.set_progress_bar_config(disable=True)
        return run_pipe

    def initial_latents(self, seeds: list[int], settings: GenerationSettings) -> torch.Tensor:
        """One latent per panel from its own CPU generator: a panel's noise never depends on its batch."""
        factor = self.pipe.vae_scale_factor
        shape = (1, self.pipe.unet.config.in_channels, settings.height // factor, settings.width // factor)
        dtype = self.pipe.unet.dtype
        return torch.cat(
            [
                randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(seed), device=self.device, dtype=dtype)
                for seed in seeds
            ]
        )

    def _run_batch(self, story, settings, style, batch: Batch, bank, number, batches, callback, cancel, done, total):
        prompts, negatives = zip(*(self._prompts(story, style, settings, image) for image in batch.images))
        panel_indices = [image.panel_index for image in batch.images if image.panel_index is not None]

        def on_step(step: int) -> None:
            if callback is not None:
                callback(Progress(number, batches, step, settings.steps, panel_indices, batch.kind, done, total))
            if _is_cancelled(cancel):
                raise GenerationCancelled()

        if _is_cancelled(cancel):
            raise GenerationCancelled()
        slots = batch.slots if batch.consistent else None
        return self.denoise(
            list(prompts), list(negatives), [i.seed for i in batch.images], settings, slots, bank, on_step
        )

    def denoise(
        self,
        prompts: list[str],
        negative_prompts: list[str],
        seeds: list[int],
        settings: GenerationSettings,
        slots: list[ImageSlot] | None = None,
        bank: IdentityBank | None = None,
        on_step: Callable[[int], None] | None = None,
        output_type: str = "pil",
    ) -> list:
        """One batch through the diffusers pipeline; ``slots`` say what each image reads and writes.

        ``settings`` must be resolved (see ``resolve_settings``). Without slots it is the plain
        diffusers pipeline with per-image seeds.
        """
        latents = self.initial_latents(seeds, settings)
        context = None
        if slots is not None:
            factor = self.pipe.vae_scale_factor
            context = ConsistencyContext(
                slots,
                seed=settings.seed,
                latent_tokens=(settings.height // factor) * (settings.width // factor),
                total_steps=settings.steps,
                rate_for_factor=settings.rate_for_factor,
                first_consistent_step=settings.first_consistent_step,
                skip_early=settings.random_skip_early,
                skip_late=settings.random_skip_late,
                bank=bank,
            )

        def on_step_end(pipe, step, timestep, tensors):
            if context is not None:
                context.step = step + 1
            if on_step is not None:
                on_step(step + 1)
            return tensors

        output = self._run_pipe(settings)(
            prompt=list(prompts),
            negative_prompt=list(negative_prompts) if any(negative_prompts) else None,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            height=settings.height,
            width=settings.width,
            latents=latents,
            cross_attention_kwargs={"story_context": context} if context is not None else None,
            callback_on_step_end=on_step_end,
            output_type=output_type,
        )
        return list(output.images)


def make_scheduler(name: str, config) -> Any:
    """A scheduler by short name (euler, euler-a, ddim, dpm++, dpm++-karras, unipc) from the model's config."""
    if name not in SCHEDULERS:
        raise SettingsError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}")
    scheduler_class, options = SCHEDULERS[name]
    return scheduler_class.from_config(config, **options)
