"""StoryPipeline: a story in, character-consistent panels out.

Read top to bottom: load a diffusers pipeline and install consistent attention once; for each run,
resolve the settings, plan the batches (identity sets, then panels reading the banks), and draw each
batch through a per-run copy of the diffusers pipeline (``denoising.py``) with the run's
``ConsistencyContext``. The UNet is shared; everything that changes during a run is per run.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from . import denoising
from .attention import ImageSlot, check_block_sets, install_consistent_attention, sampling_rate_warnings
from .bank import IdentityBank
from .bank_layout import expected_bank_layout
from .batch_places import batch_places, subject_maps
from .call_checks import check_generate_call
from .controlnets import batch_control, control_signature, story_control_maps
from .distributed import ProcessShare, draw_shared
from .errors import GenerationCancelled, ModelError, SettingsError
from .models import (
    ModelSpec,
    load_diffusers_pipeline,
    load_lora,
    make_scheduler,
    place_pipeline,
    select_device,
    select_dtype,
)
from .models.loading import LORA_ADAPTER
from .models.schedulers import check_scheduler_name
from .pipeline_steering import SteeringMixin
from .planning import Batch, drawn_panels, plan_story
from .prompts import long_prompt_warnings
from .results import PanelImage, Progress, StoryResult
from .run_gate import RunGate
from .settings import GenerationSettings, consistent_start
from .story import Story, validate_story
from .story_references import batch_references, photo_warnings, reference_signature, story_photos, unnamed_pictures
from .story_run import Cancel, StoryRun
from .styles import get_style
from .subject_masks import SubjectMaps, subject_signature


class StoryPipeline(SteeringMixin):
    """Loads a model once and generates any number of stories with it, also concurrently."""

    def __init__(self, pipe, spec: ModelSpec, consistent_blocks: str = "up"):
        self.pipe = pipe
        self.spec = spec
        self.consistent_blocks = consistent_blocks
        self.gate = RunGate()  # runs share the pipeline; loading an adapter into it waits for them
        self.controlnets: dict[str, Any] = {}  # by kind of map, loaded when a story first needs one
        self.control_union = False  # SDXL: one union ControlNet for every kind of map
        self._controlnet_lock = threading.Lock()
        self.local_files_only = False
        self.face_model: str | None = None  # InsightFace's pack, for reference_adapter: face
        self.loras: dict[str, float] = {}  # the user's LoRA adapters and weights (--lora)
        self._faces = None  # its loaded face model
        self.consistent_layer_names = install_consistent_attention(pipe.unet, consistent_blocks)
        self.pipe.set_progress_bar_config(disable=True)
        denoising.serialize_tokenizers(self.pipe)

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
        low_vram: bool = False,
        control_union: bool = False,
        face_model: str | None = None,
    ) -> StoryPipeline:
        """Load a registry name, hub id, local diffusers folder, single ``.safetensors`` file or tiny model.

        ``low_vram`` turns on the low-memory preset (``models.low_vram.LOW_VRAM``) on top of the other options.
        ``control_union`` draws panels' control maps with the SDXL union ControlNet instead of one model per kind.
        ``face_model``: the folder of an InsightFace pack, for stories with ``reference_adapter: face``.
        """
        check_block_sets(consistent_blocks)
        if scheduler:  # a typo is refused before minutes of loading
            check_scheduler_name(scheduler)
        torch_device = select_device(device)
        torch_dtype = select_dtype(torch_device, dtype)
        pipe, spec = load_diffusers_pipeline(model, torch_dtype=torch_dtype, local_files_only=local_files_only)
        if scheduler:
            pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        if lora:
            load_lora(pipe, lora, lora_scale, spec.family)
        placement = {"cpu_offload": cpu_offload, "vae_slicing": vae_slicing, "vae_tiling": vae_tiling}
        if low_vram:
            from .models import LOW_VRAM, prepare_low_vram_vae

            prepare_low_vram_vae(pipe, spec, torch_dtype, local_files_only=local_files_only)
            placement = LOW_VRAM.placement(**placement)
        place_pipeline(pipe, torch_device, **placement)
        pipeline = cls(pipe, spec, consistent_blocks)
        pipeline.local_files_only, pipeline.face_model = local_files_only, face_model
        pipeline.loras = {LORA_ADAPTER: lora_scale} if lora else {}
        if control_union and spec.family != "sdxl":
            raise ModelError(
                "the union ControlNet is for SDXL models: leave out control_union (--control-union) with SD 1.5"
            )
        pipeline.control_union = control_union
        return pipeline

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    def resolve_settings(self, story: Story, overrides: GenerationSettings | None = None) -> GenerationSettings:
        """Story settings, then explicit overrides, then the model's defaults for what is still unset."""
        settings = (overrides if overrides is not None else story.settings).merged()
        defaults = {"steps": self.spec.steps, "guidance": self.spec.guidance}
        defaults.update(height=self.spec.height, width=self.spec.width)
        for name, value in defaults.items():
            if getattr(settings, name) is None:
                setattr(settings, name, value)
        settings.validate()
        settings.first_consistent_step = consistent_start(settings.first_consistent_step, settings.steps)
        self._check_size(settings)
        return settings

    def _check_size(self, settings: GenerationSettings) -> None:
        """Height and width must survive the VAE and every UNet downsampling without rounding."""
        multiple = self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)
        for name in ("height", "width"):
            value = getattr(settings, name)
            if value % multiple:
                below, above = value - value % multiple, value - value % multiple + multiple
                nearest = f"{below} or {above}" if below >= multiple else str(above)
                raise SettingsError(
                    f"{name} must be a multiple of {multiple} for this model, got {value}: use {nearest}"
                )

    def bank_signature(self, settings: GenerationSettings, references: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every setting that decides the sampled identity tokens; ``references``: ``reference_signature``."""
        rate = settings.sampling_rate
        return {
            "model": self.spec.name,
            "scheduler": self._scheduler_name(settings),
            "height": settings.height,
            "width": settings.width,
            "steps": settings.steps,
            "cfg": settings.guidance > 1.0,
            "seed": settings.seed,
            "sampling_rate": {str(k): v for k, v in sorted(rate.items())} if isinstance(rate, dict) else rate,
            "first_consistent_step": settings.first_consistent_step,
            "skip": [settings.random_skip_early, settings.random_skip_late],
            "layers": len(self.consistent_layer_names),
            **subject_signature(settings),
            **(references or {}),
        }

    def generate(
        self,
        story: Story,
        settings: GenerationSettings | None = None,
        *,
        panels: list[int] | None = None,
        bank: IdentityBank | None = None,
        bank_storage: str = "auto",
        bank_memory: int | None = None,
        bank_prefetch: bool = False,
        keep_masks: bool = False,
        references: dict[str, Image.Image] | None = None,
        control_images: dict[int, Image.Image] | None = None,
        read_files: bool = True,
        callback: Callable[[Progress], None] | None = None,
        on_panel: Callable[[PanelImage], None] | None = None,
        on_start: Callable[[StoryResult], None] | None = None,
        cancel: Cancel = None,
        share: ProcessShare | None = None,
    ) -> StoryResult:
        """Generate the story's panels (or only ``panels``, 0-based) with consistent characters.

        ``bank`` from an earlier result lets single panels be regenerated without the identity pass.
        ``bank_memory`` bounds the host memory of a CPU bank in bytes; past it, tokens spill to disk.
        ``bank_prefetch`` copies a host bank to the GPU a step ahead, on a side stream (``bank_prefetch``).
        ``keep_masks`` gives each panel its characters' subject masks (``PanelImage.masks``).
        ``references`` are reference photos by character name (uploads); characters not named there use the
        file of their ``reference``. The IP-Adapter loads on the first run that has one. ``control_images``
        are panels' control images by 0-based index (uploads), else the panel's ``control.image`` file is
        read. ``read_files=False`` (a shared server) refuses a story that names files instead.
        ``cancel`` stops cleanly between steps: the result keeps the panels already finished.
        ``on_start`` receives the result before the first batch; it fills as panels finish (``on_panel``).
        ``share`` (``distributed.process_share()``) draws the story over the processes launched together:
        the same panels, all of them in the first process's result (``distributed.py``).
        """
        started = time.perf_counter()
        callbacks = {"callback": callback, "on_panel": on_panel, "on_start": on_start}
        panels = check_generate_call(story, settings, panels, bank, bank_storage, bank_memory, callbacks)
        validate_story(story)  # one built in code is held to the parsers' rules: a [Bob] tag needs Bob listed
        story = copy.deepcopy(story)  # the run's own: the caller may edit theirs for the next run (result.story)
        settings = self.resolve_settings(story, settings)
        style = get_style(settings.style)
        photos = story_photos(story, references, read_files)
        warnings = photo_warnings(settings, photos)
        levels = len(self.pipe.unet.config.block_out_channels)
        warnings += sampling_rate_warnings(settings.sampling_rate, self.consistent_layer_names, levels)
        drawn = sorted(drawn_panels(story, settings, panels))
        maps = self.control_maps(story, settings, drawn, control_images, read_files)
        with self._running(photos, settings.reference_adapter):
            embeddings = self.reference_embeddings(story, photos, settings)
            signed = {
                **reference_signature(story, photos, settings, self.face_model_name(settings, bool(photos))),
                **control_signature(story, settings, maps),
            }
            bank = self._bank_for_run(bank, story, settings, bank_storage, bank_memory, signed)
            banked = dict(bank.characters) if settings.mode == "identity" else {}
            plan = plan_story(story, settings, panels, banked)
            wanted = set(range(len(story.panels)) if panels is None else panels)
            result = self._start_result(story, settings, bank, warnings)
            result.pictures = unnamed_pictures(story, photos, control_images, read_files)  # saved into inputs/
            warnings.extend(long_prompt_warnings(self.pipe.tokenizer, story, style, wanted))
            if on_start is not None:
                on_start(result)
            bank.start_reads(self.device, prefetch=bank_prefetch)
            try:
                run = StoryRun(story, settings, style, bank, plan, wanted, callback, on_panel, cancel, keep_masks)
                run.embeddings, run.control_maps = embeddings, maps
                if share is None:
                    self._draw_plan(run, result)
                else:
                    draw_shared(
                        lambda number, batch, done: self._draw_batch(run, number, batch, done), run, result, share
                    )
            finally:
                bank.end_reads()
        result.panels.sort(key=lambda panel: panel.index)
        result.seconds = time.perf_counter() - started
        return result  # its warnings are in result.warnings, which the command line and the page show

    def check_bank(
        self,
        bank: IdentityBank,
        story: Story,
        settings: GenerationSettings | None = None,
        panels: list[int] | None = None,
        references: dict[str, Image.Image] | None = None,
        control_images: dict[int, Image.Image] | None = None,
    ) -> None:
        """Refuse, before any step runs or any file changes, a bank this run cannot read as it is: made
        for another mode, model or settings, holding other characters or tensors of other shapes than
        this model and these settings write, or lacking a character ``panels`` show. ``references`` and
        ``control_images`` are as ``generate`` takes them (else the story's files are read).

        ``generate`` makes the same checks except the last: there a missing character's identity set is
        drawn into the bank, as when a session's own bank meets a panel of a character not yet drawn.
        """
        settings = self.resolve_settings(story, settings)
        size, identity_panels = (settings.width, settings.height), sorted(drawn_panels(story, settings, []))
        maps = story_control_maps(story, identity_panels, size, control_images)  # as generate signs them
        photos = story_photos(story, references)
        signed = {
            **reference_signature(story, photos, settings, self.face_model_name(settings, bool(photos))),
            **control_signature(story, settings, maps),
        }
        self._check_bank_fits(bank, story, settings, signed)
        wanted = range(len(story.panels)) if panels is None else panels
        needed = {name for index in wanted if 0 <= index < len(story.panels) for name in story.panels[index].characters}
        if len(bank):
            bank.check_characters(story.characters, needed)

    def _check_bank_fits(
        self, bank: IdentityBank, story: Story, settings: GenerationSettings, references: dict[str, Any]
    ) -> None:
        """An empty bank is a container this run fills; a filled one must be this run's own kind, down
        to the shape of every tensor (a file's signature says nothing of what its tensors hold)."""
        if not len(bank):
            return
        bank.check_mode(settings.mode)
        # Another story's bank first, by its cast: its settings differ too, but they are not what to fix.
        bank.check_characters(story.characters)
        bank.check_descriptions({name: c.description for name, c in story.characters.items()})
        bank.check_compatible(self.bank_signature(settings, references))
        bank.check_shapes(expected_bank_layout(self.pipe, self.consistent_layer_names, settings))

    def _bank_for_run(
        self,
        bank: IdentityBank | None,
        story: Story,
        settings: GenerationSettings,
        bank_storage: str,
        bank_memory: int | None = None,
        references: dict[str, Any] | None = None,
    ) -> IdentityBank:
        """The caller's bank, checked (BankError if it does not fit) and cast to the compute dtype, on the
        chosen storage, within ``bank_memory`` of host memory; an empty or missing one gets this run's signature."""
        signature = self.bank_signature(settings, references)
        storage = self.device if bank_storage == "device" else torch.device("cpu")
        if bank is None:
            return IdentityBank(signature, storage).limit_host_memory(bank_memory)
        self._check_bank_fits(bank, story, settings, references or {})
        if not len(bank):
            bank.signature = signature
        bank.cast(self.pipe.unet.dtype)
        if bank.storage != storage or (self.device.type == "cuda" and storage.type == "cpu"):
            bank.move_to(storage, pin=self.device.type == "cuda")
        return bank.limit_host_memory(bank_memory) if bank_memory is not None else bank

    def _start_result(
        self, story: Story, settings: GenerationSettings, bank: IdentityBank, warnings: list[str]
    ) -> StoryResult:
        return StoryResult(
            story=story,
            settings=settings,
            model=self.spec,
            panels=[],
            bank=bank if settings.mode == "identity" else None,
            warnings=warnings,
            scheduler=self._scheduler_name(settings),
            consistent_layers=len(self.consistent_layer_names),
        )

    def _draw_plan(self, run: StoryRun, result: StoryResult) -> None:
        """Draw the batches in order, adding the wanted panels to ``result``; a cancel keeps those finished."""
        for number, batch in enumerate(run.plan):
            try:
                images, subject = self._draw_batch(run, number, batch, done=len(result.panels))
            except GenerationCancelled:
                result.cancelled = True
                return
            run.remember(batch)
            for panel in run.finished_panels(batch, images, subject):
                result.panels.append(panel)
                if run.on_panel is not None:
                    run.on_panel(panel)

    def _draw_batch(
        self, run: StoryRun, number: int, batch: Batch, done: int
    ) -> tuple[list[Image.Image], SubjectMaps | None]:
        """One batch's images, and its subject masks when the run measures them."""
        prompts, negatives = zip(*(run.prompts(image) for image in batch.images))
        on_step = run.step_callback(number, batch, done)
        run.raise_if_cancelled()
        slots = batch.slots if batch.consistent else None
        seeds = [image.seed for image in batch.images]
        latent_size = denoising.latent_size(self.pipe, run.settings)
        subject = subject_maps(run, batch, list(prompts), self.pipe.tokenizer, latent_size)
        encode = lambda texts: denoising.encode_texts(self.pipe, texts)  # noqa: E731 - only for regions' own texts
        places = batch_places(run, batch, subject, latent_size, encode)
        references = batch_references(run.story, batch, run.settings.mode, run.embeddings)
        size = (run.settings.width, run.settings.height)
        control = batch_control(run.story, batch, run.control_maps, self.controlnets, size)
        images = denoising.denoise(
            self.pipe,
            list(prompts),
            list(negatives),
            seeds,
            run.settings,
            slots,
            run.bank,
            on_step,
            subject,
            places,
            references,
            control,
        )
        return images, subject

    def _scheduler_name(self, settings: GenerationSettings) -> str:
        return settings.scheduler or type(self.pipe.scheduler).__name__

    def initial_latents(self, seeds: list[int], settings: GenerationSettings) -> torch.Tensor:
        """One latent per panel from its own CPU generator: a panel's noise never depends on its batch."""
        return denoising.initial_latents(self.pipe, seeds, settings)

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
        return denoising.denoise(
            self.pipe, prompts, negative_prompts, seeds, settings, slots, bank, on_step, output_type=output_type
        )
