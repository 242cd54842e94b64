"""Photos and poses that steer a story: the IP-Adapter (the whole photo, or FaceID with its face model) and
the ControlNets a :class:`~storydiffusion.pipeline.StoryPipeline` loads when a story first needs them.

A mixin, as diffusers' ``IPAdapterMixin`` is: it uses the pipeline's own ``pipe``, ``spec``, ``gate``,
``face_model``, ``loras`` and ``controlnets``, and loads into them only under ``gate.change`` (runs under
way finish first) or the ControlNets' lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image

from .controlnets import UNION, load_controlnet, story_control_maps
from .faces import face_embedder
from .reference_adapter import attach_reference_adapter, loaded_reference_adapter, reference_embeddings
from .settings import GenerationSettings
from .story import Story


class SteeringMixin:
    """Reference photos and control images for :class:`StoryPipeline`."""

    pipe: Any
    spec: Any
    device: torch.device
    gate: Any
    _faces: Any  # the loaded face model, once FaceID needs one
    _controlnet_lock: Any
    face_model: str | None
    loras: dict[str, float]
    controlnets: dict[str, Any]
    control_union: bool
    local_files_only: bool

    def attach_references(self, kind: str = "image") -> None:
        """Load the IP-Adapter reference photos need (``kind`` "face": FaceID and its face model), once
        (waiting for runs under way to finish); ModelError when its weights cannot be had."""
        if loaded_reference_adapter(self.pipe) == kind and (kind == "image" or self._faces is not None):
            return
        tiny = self.spec.source == "tiny"
        with self.gate.change():
            if kind == "face":
                self._load_face_model()
            if loaded_reference_adapter(self.pipe) != kind:
                width = self._faces.width if kind == "face" else None
                attach_reference_adapter(
                    self.pipe,
                    self.spec.family,
                    self.consistent_blocks,
                    tiny,
                    self.local_files_only,
                    kind,
                    width,
                    self.loras,
                )

    @contextmanager
    def _running(self, photos: dict, kind: str) -> Iterator[None]:
        """Inside the run gate with the reference adapter this run needs: another run may swap it between
        its loading and this run's entering, and then it is loaded again."""
        while True:
            if photos:
                self.attach_references(kind)
            with self.gate.run():
                if not photos or loaded_reference_adapter(self.pipe) == kind:
                    yield
                    return

    def reference_embeddings(
        self, story: Story, photos: dict[str, Image.Image], settings: GenerationSettings
    ) -> dict[str, torch.Tensor]:
        """Each photo's embedding for its adapter (``attach_references`` first); StoryError for a photo in which
        FaceID finds no face, which the command line asks before the output folder changes."""
        faces = self._faces if settings.reference_adapter == "face" else None
        return {
            name: reference_embeddings(self.pipe, photo, faces, f"characters.{name}.reference")
            for name, photo in photos.items()
            if name in story.characters
        }

    def face_model_name(self, settings: GenerationSettings, has_photos: bool) -> str | None:
        """The face model's name for the bank signature and the run's record: loaded on first need, as
        ``generate`` would; None unless photos steer by their face."""
        if settings.reference_adapter != "face" or not has_photos:
            return None
        if self._faces is None:
            with self.gate.change():
                self._load_face_model()
        return self._faces.name

    def can_steer_by_face(self) -> bool:
        """Whether photos can steer by their face here: a face model was given, or the tiny one stands in."""
        return self.face_model is not None or self._faces is not None or self.spec.source == "tiny"

    def _load_face_model(self) -> None:
        """The face model FaceID is steered with, loaded once; only under ``gate.change``."""
        if self._faces is None:
            self._faces = face_embedder(self.face_model, self.spec.source == "tiny")

    def load_controlnets(self, kinds: set[str]) -> None:
        """Load the ControlNets of ``kinds`` not loaded yet, or the union one when ``control_union`` (ModelError
        when their weights cannot be had)."""
        if self.control_union and kinds:
            kinds = {UNION}
        with self._controlnet_lock:
            for kind in sorted(set(kinds) - set(self.controlnets)):
                tiny = self.spec.source == "tiny"
                dtype, device = self.pipe.unet.dtype, self.device
                self.controlnets[kind] = load_controlnet(
                    kind, self.spec.family, tiny, dtype, device, self.local_files_only
                )

    def control_maps(
        self,
        story: Story,
        settings: GenerationSettings,
        panels: list[int] | None = None,
        given: dict[int, Image.Image] | None = None,
        read_files: bool = True,
    ) -> dict:
        """The control maps of ``panels`` (default: every panel) at the run's size (``given`` ones by index),
        ControlNets loaded for them."""
        indices = range(len(story.panels)) if panels is None else panels
        maps = story_control_maps(story, list(indices), (settings.width, settings.height), given, read_files)
        self.load_controlnets({story.panels[index].control.kind for index in maps})
        return maps
