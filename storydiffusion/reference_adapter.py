"""A character from a reference photo: diffusers' IP-Adapter, per image of a batch.

``attach_reference_adapter`` loads the IP-Adapter of the model's family (``configs/adapters.yaml``) with
diffusers' ``load_ip_adapter``, then puts the story's processors back: consistent self-attention where
it was, and on each cross-attention layer ``cross_attention.ReferenceAttnProcessor``, which adds the adapter's image
attention only to the images a run conditions (``ConsistencyContext.reference_scales``). Every other
image is computed exactly as without the adapter, so a reference changes its character's identity
images and nothing else; the rest of the story follows them through consistent attention.
"""

from __future__ import annotations

from typing import Any

import torch
import yaml
from diffusers.models.attention_processor import AttnProcessor2_0
from PIL import Image

from .attention import install_consistent_attention
from .errors import ModelError, StoryError
from .images import read_image
from .resources import data_path

MAX_REFERENCE_RATIO = 8.0  # a reference photo's long side at most 8 times its short one


def adapter_sources(kind: str, family: str) -> Any:
    """The entry of ``configs/adapters.yaml`` for ``kind`` ("reference" or "control") and a family."""
    table = yaml.safe_load(data_path("configs", "adapters.yaml").read_text(encoding="utf-8"))
    try:
        return table[kind][family]
    except (KeyError, TypeError):
        raise ModelError(f"no {kind} adapter is configured for {family} models (configs/adapters.yaml)") from None


def has_reference_adapter(pipe: Any) -> bool:
    return getattr(pipe.unet.config, "encoder_hid_dim_type", None) == "ip_image_proj"


def loaded_reference_adapter(pipe: Any) -> str | None:
    """The reference adapter ``pipe`` holds: "image" (IP-Adapter), "face" (IP-Adapter FaceID) or None."""
    if not has_reference_adapter(pipe):
        return None
    from diffusers.models.embeddings import IPAdapterFaceIDImageProjection

    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    return "face" if isinstance(projection, IPAdapterFaceIDImageProjection) else "image"


def attach_reference_adapter(
    pipe: Any,
    family: str,
    consistent_blocks: str,
    tiny: bool = False,
    local_files_only: bool = False,
    kind: str = "image",
    face_width: int | None = None,
    loras: dict[str, float] | None = None,
) -> list[str]:
    """Load the IP-Adapter of ``family`` into ``pipe`` (``kind`` "face": IP-Adapter FaceID; tiny random weights
    for the tiny models, shaped for a face model of ``face_width``), replacing one of the other kind, and put the
    story's processors back; returns the consistent layers' names, as ``install_consistent_attention``.
    ``loras``: the user's LoRA adapters and weights, kept on beside FaceID's own LoRA (the public FaceID
    checkpoints carry one, which diffusers turns on alone) and after it is gone."""
    unet = pipe.unet
    unet.set_attn_processor(AttnProcessor2_0())  # diffusers rebuilds self-attention processors without arguments
    if loaded_reference_adapter(pipe) not in (None, kind):
        pipe.unload_ip_adapter()  # one reference adapter at a time, and FaceID's LoRA goes with it
        if _faceid_loras(pipe):
            pipe.delete_adapters(_faceid_loras(pipe))
        _settle_loras(pipe, loras or {})
    try:
        if tiny:
            from .models.tiny_adapters import tiny_faceid_state, tiny_image_encoder, tiny_ip_adapter_state

            if kind == "face":
                state = tiny_faceid_state(unet, face_width=face_width)
                pipe.load_ip_adapter(state, subfolder="", weight_name="tiny", image_encoder_folder=None)
            else:
                pipe.register_modules(image_encoder=tiny_image_encoder().to(unet.device, unet.dtype))
                pipe.load_ip_adapter(tiny_ip_adapter_state(unet), subfolder="", weight_name="tiny")
        else:
            source = adapter_sources("face_reference" if kind == "face" else "reference", family)
            pipe.load_ip_adapter(
                source["repo"],
                subfolder=source.get("subfolder"),
                weight_name=source["weight"],
                image_encoder_folder=source.get("image_encoder"),
                local_files_only=local_files_only,
            )
    except ModelError:
        raise
    except Exception as error:  # network, cache and format errors come in many types
        install_consistent_attention(unet, consistent_blocks)
        name = "IP-Adapter FaceID" if kind == "face" else "IP-Adapter"
        raise ModelError(
            f"could not load the {name} for reference photos ({_short(error)}): it needs the adapter's "
            "weights from the hub or its cache; leave out the characters' reference photos to draw without"
        ) from None
    _settle_loras(pipe, loras or {})
    return install_consistent_attention(unet, consistent_blocks)  # keeps the adapter's processors


FACEID_LORA = "faceid_"  # the names diffusers gives the LoRA a FaceID checkpoint carries


def _faceid_loras(pipe: Any) -> list[str]:
    """The LoRA adapters a FaceID checkpoint brought into the UNet."""
    return [name for name in getattr(pipe.unet, "peft_config", None) or {} if name.startswith(FACEID_LORA)]


def _settle_loras(pipe: Any, loras: dict[str, float]) -> None:
    """The user's LoRAs on at their weights, and FaceID's own when it is loaded: nothing else."""
    faceid = _faceid_loras(pipe)
    if faceid or loras:
        pipe.set_adapters([*loras, *faceid], adapter_weights=[*loras.values(), *[1.0] * len(faceid)])


def reference_embeddings(pipe: Any, photo: Image.Image, faces: Any = None, name: str = "the photo") -> torch.Tensor:
    """The adapter's embedding of one photo (1, embedding): through the pipeline's own image encoder, or with
    ``faces`` (IP-Adapter FaceID) the identity embedding of its largest face; StoryError when it shows none."""
    if faces is not None:
        embedding = faces.embed_faces([photo])[0]
        if embedding is None:
            raise StoryError(
                f"{name}: no face found in the photo: use a photo where the face is clear and large enough, "
                "or reference_adapter: image (the whole photo)"
            )
        return embedding.reshape(1, -1)
    with torch.no_grad():
        embeddings, _ = pipe.encode_image(photo, pipe._execution_device, 1)
    return embeddings


def batch_image_embeds(pipe: Any, per_image: list[torch.Tensor | None], guided: bool) -> list[torch.Tensor]:
    """``ip_adapter_image_embeds`` for a batch: every image's embedding (zeros where it has none) side by
    side as the "images" of one prompt, the unconditional half zeros (as diffusers encodes it).

    diffusers repeats a prompt's embeddings for each image of the batch, so each batch row receives all
    of them, (halves, images, embedding) -> (rows, images, ...); ``ReferenceAttnProcessor`` picks each
    row's own."""
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    width = next(layer for layer in projection.modules() if isinstance(layer, torch.nn.Linear)).in_features
    device, dtype = pipe._execution_device, pipe.unet.dtype
    rows = [e.reshape(1, -1) if e is not None else torch.zeros(1, width) for e in per_image]
    positive = torch.cat([row.to(device, dtype) for row in rows])[None]
    return [torch.cat([torch.zeros_like(positive), positive]) if guided else positive]


def read_reference(source: Any, name: str) -> Image.Image:
    """A reference photo through the image gate (bytes, pixels and shape checked before decoding)."""
    return read_image(source, name, max_ratio=MAX_REFERENCE_RATIO)


def _short(error: Exception, limit: int = 200) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit] + "..."
