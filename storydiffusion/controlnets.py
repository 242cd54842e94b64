"""A panel's pose or composition through diffusers' ControlNet pipelines, per image of a batch.

A batch may mix panels with and without a control image, and of different kinds. Each kind present
gets its ControlNet inside diffusers' ``MultiControlNetModel``; each one's conditioning scale is a
tensor with one value per image (0 where an image has no map of that kind), so a panel without control
gets residuals of exactly zero and is drawn as by the plain pipeline. Consistent attention runs as
always: the ControlNet adds to the UNet's features, the UNet's processors are untouched.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ModelError, StoryError, shown
from .images import given_image, pixel_fingerprint, read_image
from .planning import Batch
from .reference_adapter import adapter_sources
from .story import Story

MAX_CONTROL_RATIO = 8.0
UNION = "union"  # the SDXL union ControlNet: one model for every kind of map
CANNY_THRESHOLDS = (100, 200)  # OpenCV's hysteresis thresholds, as diffusers' ControlNet examples use


def canny_map(picture: Image.Image, thresholds: tuple[int, int] = CANNY_THRESHOLDS) -> Image.Image:
    """White edges on black, found by OpenCV's Canny detector in any picture."""
    import cv2

    grey = np.asarray(picture.convert("L"))
    edges = cv2.Canny(grey, *thresholds)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def control_map(
    story: Story, index: int, size: tuple[int, int], given: Image.Image | None = None, read_files: bool = True
) -> Image.Image:
    """Panel ``index``'s control map at ``size`` (width, height): ``given`` (an upload) or its file read
    through the image gate, edges found for ``canny``, pose and depth maps as given. Without
    ``read_files`` (a shared server) a map that is not given is refused: a story may not name files there."""
    picture = control_picture(story, index, size, given, read_files)
    return canny_map(picture) if story.panels[index].control.kind == "canny" else picture


def control_picture(
    story: Story, index: int, size: tuple[int, int], given: Image.Image | None = None, read_files: bool = True
) -> Image.Image:
    """Panel ``index``'s control image at ``size``, before any edges are found: what ``control_map`` starts
    from, and what a caller that reads the files once hands back as ``given`` (resizing it again is a copy)."""
    control = story.panels[index].control
    if given is not None:
        picture = given_image(given, f"control_images[{index}]")  # as a file's: alpha over white, 16-bit scaled
    elif not read_files:
        raise StoryError(
            f"panel {index + 1}: control.image names a file ({shown(control.image)}); here a control image "
            "comes as an upload: add it under Control images"
        )
    else:
        label = f"panel {index + 1}: control.image ({control.image})"
        picture = read_image(control.image, label, max_ratio=MAX_CONTROL_RATIO)
    return picture.resize(size, Image.Resampling.BICUBIC)


def picture_tensor(picture: Image.Image) -> torch.Tensor:
    """(3, height, width) in 0..1, the form diffusers' control image processor takes a batch in."""
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def story_control_maps(
    story: Story,
    panels: list[int],
    size: tuple[int, int],
    given: Mapping[int, Image.Image] | None = None,
    read_files: bool = True,
) -> dict[int, Image.Image]:
    """The control maps of ``panels`` that have one, by panel index (``given`` ones by index, e.g. uploads)."""
    given = given_controls(story, given)
    return {
        index: control_map(story, index, size, given.get(index), read_files)
        for index in panels
        if story.panels[index].control is not None
    }


def given_controls(story: Story, given: Mapping[int, Image.Image] | None) -> Mapping[int, Image.Image]:
    """Control images passed in memory, by 0-based panel index: each one for a panel whose ``control`` it
    replaces (an index of another panel would be dropped in silence)."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise StoryError(f"control_images must map 0-based panel indexes to PIL images, not {type(given).__name__}")
    for index in given:
        valid = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(story.panels)
        if not valid or story.panels[index].control is None:
            with_control = [n for n, panel in enumerate(story.panels) if panel.control is not None]
            raise StoryError(
                f"control_images: {shown(index)} is not the 0-based index of a panel with a control "
                f"(those of this story: {', '.join(map(str, with_control)) or 'none'})"
            )
    return given


def story_control_pictures(story: Story, size: tuple[int, int]) -> dict[int, Image.Image]:
    """Every panel's control image read once, at ``size`` (``control_picture``), by panel index: the command
    line reads each file once and hands these to the bank check and the run."""
    return {
        index: control_picture(story, index, size)
        for index, panel in enumerate(story.panels)
        if panel.control is not None
    }


def control_signature(story: Story, settings: Any, maps: Mapping[int, Image.Image]) -> dict[str, Any]:
    """The bank signature's entry for control maps of identity panels (kind, map, scale): the bank holds
    what those panels were drawn with; empty when none has one."""
    if settings.mode != "identity":
        return {}
    from .planning import identity_sets

    members = {index for indices in identity_sets(story, settings).values() for index in indices}
    signed = {
        str(index + 1): [
            story.panels[index].control.kind,
            pixel_fingerprint(maps[index]),
            story.panels[index].control.scale,
        ]
        for index in sorted(members)
        if index in maps
    }
    return {"controls": signed} if signed else {}


def union_modes() -> dict[str, int]:
    """The union ControlNet's control mode of each kind of map (``configs/adapters.yaml``)."""
    return dict(adapter_sources("control", "union_modes"))


def load_controlnet(
    kind: str, family: str, tiny: bool, dtype: torch.dtype, device: torch.device, local_files_only: bool
) -> Any:
    """The ControlNet for ``kind`` maps, or the union one for ``kind == "union"`` (``configs/adapters.yaml``),
    or a tiny random one for tiny models."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    if kind == UNION and family != "sdxl":
        raise ModelError("the union ControlNet is for SDXL models: leave out --control-union with SD 1.5")
    if tiny:
        from .models.tiny_adapters import tiny_controlnet

        return tiny_controlnet(family, kind).to(device, dtype)
    source = adapter_sources("control", family).get(kind)
    if source is None:
        raise ModelError(f"no ControlNet for {kind} maps is configured for {family} models (configs/adapters.yaml)")
    model_class = ControlNetUnionModel if kind == UNION else ControlNetModel
    try:
        model = model_class.from_pretrained(source, torch_dtype=dtype, local_files_only=local_files_only)
    except Exception as error:  # network, cache and format errors come in many types
        raise ModelError(
            f"could not load the ControlNet for {kind} maps ({source}): {' '.join(str(error).split())[:200]}; "
            "it needs its weights from the hub or its cache, or leave out the panels' control"
        ) from None
    return model.to(device).eval().requires_grad_(False)


@dataclass
class BatchControl:
    """What a batch's ControlNet call needs: per kind present, its model, each image's map (black where
    the image has none) and each image's scale (0 there). With the SDXL union ControlNet every kind uses
    the one model, told the kind by its ``modes`` entry."""

    kinds: list[str]
    nets: list[Any]
    maps: list[list[Image.Image]]
    scales: list[list[float]]
    modes: list[int] | None = None  # union ControlNet: the control mode of each kind

    def call_arguments(self, guided: bool, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """``image`` and ``controlnet_conditioning_scale`` for diffusers' ControlNet pipelines: one scale
        tensor per kind, a value per batch row (both guidance halves), broadcast over the residuals."""
        scales = []
        for per_image in self.scales:
            values = torch.tensor(per_image * (2 if guided else 1), device=device, dtype=dtype)
            scales.append(values[:, None, None, None])
        images = [torch.stack([picture_tensor(picture) for picture in maps]) for maps in self.maps]
        if self.modes is not None:
            # One net per kind (the same union model), each told its kind; diffusers nests them per net.
            return {"control_image": images, "control_mode": list(self.modes), "controlnet_conditioning_scale": scales}
        return {"image": images, "controlnet_conditioning_scale": scales}


def batch_control(
    story: Story, batch: Batch, maps: Mapping[int, Image.Image], nets: Mapping[str, Any], size: tuple[int, int]
) -> BatchControl | None:
    """The batch's ControlNet inputs, or None when none of its images has a control map."""
    indices = [planned.panel_index for planned in batch.images]
    kinds = sorted({story.panels[i].control.kind for i in indices if i is not None and i in maps})
    if not kinds:
        return None
    black = Image.new("RGB", size)
    all_maps, all_scales = [], []
    for kind in kinds:
        mine = [i is not None and i in maps and story.panels[i].control.kind == kind for i in indices]
        all_maps.append([maps[i] if own else black for i, own in zip(indices, mine)])
        all_scales.append([story.panels[i].control.scale if own else 0.0 for i, own in zip(indices, mine)])
    if UNION in nets:
        modes = union_modes()
        return BatchControl(kinds, [nets[UNION]] * len(kinds), all_maps, all_scales, [modes[k] for k in kinds])
    return BatchControl(kinds, [nets[kind] for kind in kinds], all_maps, all_scales)


class _SharedConditioningNote(logging.Filter):
    """diffusers warns that a batch's prompts share its ControlNets' conditioning; here each image has its
    own map and scale (``BatchControl``), so the warning would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "The conditionings will be fixed across the prompts" not in record.getMessage()


def _quiet_shared_conditioning_note(cls: type) -> None:
    source_logger = logging.getLogger(cls.__module__)
    if not any(isinstance(f, _SharedConditioningNote) for f in source_logger.filters):
        source_logger.addFilter(_SharedConditioningNote())


def control_pipeline(pipe: Any, components: dict[str, Any], control: BatchControl, extra: dict[str, Any]) -> Any:
    """diffusers' ControlNet pipeline of ``pipe``'s family on the same components, with the batch's nets."""
    from diffusers import (
        StableDiffusionControlNetPipeline,
        StableDiffusionXLControlNetPipeline,
        StableDiffusionXLControlNetUnionPipeline,
    )
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    sdxl = hasattr(pipe, "text_encoder_2")
    union = control.modes is not None
    cls = StableDiffusionXLControlNetPipeline if sdxl else StableDiffusionControlNetPipeline
    if union:
        cls = StableDiffusionXLControlNetUnionPipeline
    _quiet_shared_conditioning_note(cls)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {name: value for name, value in {**components, **extra}.items() if name in accepted}
    nets = per_image_union(control.nets) if union else MultiControlNetModel(control.nets)
    copy = cls(**kwargs, controlnet=nets)
    copy.set_progress_bar_config(disable=True)
    return copy


def per_image_union(nets: list[Any]) -> Any:
    """diffusers' ``MultiControlNetUnionModel`` of ``nets`` whose scales may hold a value per batch row:
    diffusers' own skips a net whose scale equals 0.0, which a tensor of several values cannot answer."""
    from diffusers.models.controlnets.multicontrolnet_union import MultiControlNetUnionModel

    class PerImageControlNetUnion(MultiControlNetUnionModel):
        def forward(
            self,
            sample,
            timestep,
            encoder_hidden_states,
            controlnet_cond,
            control_type,
            control_type_idx,
            conditioning_scale,
            **kwargs,
        ):  # noqa: E501
            down, mid = None, None
            for image, kind, kind_index, scale, net in zip(
                controlnet_cond, control_type, control_type_idx, conditioning_scale, self.nets
            ):
                down_part, mid_part = net(
                    sample=sample,
                    timestep=timestep,
                    encoder_hidden_states=encoder_hidden_states,
                    controlnet_cond=image,
                    control_type=kind,
                    control_type_idx=kind_index,
                    conditioning_scale=[scale],  # read as conditioning_scale[0]: the whole per-row tensor
                    from_multi=True,
                    **kwargs,
                )
                down = down_part if down is None else [a + b for a, b in zip(down, down_part)]
                mid = mid_part if mid is None else mid + mid_part
            return down, mid

    return PerImageControlNetUnion(nets)
