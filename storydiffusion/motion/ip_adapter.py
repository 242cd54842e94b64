"""IP-Adapter Plus for the video pipeline: image projection, decoupled attention weights, and the public checkpoint.

The projection is diffusers' ``IPAdapterPlusImageProjection`` (the Plus resampler: it takes a token
sequence of ViT-H width 1280, which is what the motion predictor outputs; the base IP-Adapter takes
one pooled embedding and could not carry per-token motion). The public checkpoint
(``h94/IP-Adapter`` ``models/ip-adapter-plus_sd15.safetensors``) names the resampler's weights as the
original code did (``image_proj.layers.N.0.to_kv``, ...); :func:`public_to_diffusers` renames them as
diffusers' own loader does, and :func:`diffusers_to_public` back, so that file loads with strict key
checking. Only ``.safetensors`` files are read: pickles can run code.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers.models.embeddings import IPAdapterPlusImageProjection

from ..errors import ModelError
from .ip_attention import DecoupledCrossAttnProcessor

OFFLINE_HINT = "Use `--model tiny` for an offline run on tiny random-weight models."
# Inside ``image_proj.layers.N.``: (public name, diffusers name). ``0.to_kv`` is split into ``attn.to_k``/``to_v``.
_LAYER_NAMES = (
    ("0.norm1.", "ln0."),
    ("0.norm2.", "ln1."),
    ("0.to_q.", "attn.to_q."),
    ("0.to_out.", "attn.to_out.0."),
    ("1.0.", "ff.0."),
    ("1.1.", "ff.1.net.0.proj."),
    ("1.3.", "ff.1.net.2."),
)
_LAYER_KEY = re.compile(r"^(image_proj\.layers\.\d+\.)(.*)$")


def plus_sd15_image_projection() -> IPAdapterPlusImageProjection:
    """Shaped like ``ip-adapter-plus_sd15``: 257 ViT-H tokens (1280 wide) -> 16 tokens of SD 1.5's width 768."""
    return IPAdapterPlusImageProjection(
        embed_dims=1280, output_dims=768, hidden_dims=768, depth=4, dim_head=64, heads=12, num_queries=16, ffn_ratio=4
    )


def _rename(rest: str, direction: int) -> str:
    for names in _LAYER_NAMES:
        if rest.startswith(names[direction]):
            return names[1 - direction] + rest[len(names[direction]) :]
    return rest


def public_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Public IP-Adapter Plus keys -> this module's keys; unknown keys pass unchanged, so strict loading names them."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            converted[key] = value
        elif match[2] == "0.to_kv.weight":
            key_weight, value_weight = value.chunk(2, dim=0)
            converted[match[1] + "attn.to_k.weight"] = key_weight
            converted[match[1] + "attn.to_v.weight"] = value_weight
        else:
            converted[match[1] + _rename(match[2], 0)] = value
    return converted


def diffusers_to_public(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This module's keys -> the public IP-Adapter Plus keys (the inverse of :func:`public_to_diffusers`)."""
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            converted[key] = value
        elif match[2] == "attn.to_k.weight":
            converted[match[1] + "0.to_kv.weight"] = torch.cat([value, state[match[1] + "attn.to_v.weight"]])
        elif match[2] != "attn.to_v.weight":
            converted[match[1] + _rename(match[2], 1)] = value
    return converted


def cross_attention_ids(unet2d: torch.nn.Module) -> dict[str, int]:
    """Processor name -> IP-Adapter key id for each spatial cross-attention layer.

    The public checkpoints number ``ip_adapter.N`` by the position of the layer in the SD 1.5
    ``UNet2DConditionModel.attn_processors`` order (attn1 and attn2 together: 1, 3, ..., 31).
    """
    return {name: position for position, name in enumerate(unet2d.attn_processors) if name.endswith("attn2.processor")}


def _layer_widths(unet2d: torch.nn.Module) -> dict[str, int]:
    widths: dict[str, int] = {}
    for name, module in unet2d.named_modules():
        if name.endswith("attn2") and hasattr(module, "to_q"):
            widths[f"{name}.processor"] = int(module.to_q.in_features)
    return widths


class IPAdapter(torch.nn.Module):
    """``image_proj`` (the Plus resampler) + ``ip_adapter.N`` (decoupled attention weights), as in the public file."""

    def __init__(
        self,
        image_proj: IPAdapterPlusImageProjection,
        processors: dict[str, DecoupledCrossAttnProcessor],
        ids: dict[str, int],
    ):
        super().__init__()
        self.image_proj = image_proj
        self.ip_adapter = torch.nn.ModuleDict({str(ids[name]): processors[name] for name in processors})
        self.layer_ids = dict(ids)

    @classmethod
    def build(cls, unet2d: torch.nn.Module, image_proj: IPAdapterPlusImageProjection, scale: float = 1.0) -> IPAdapter:
        """Empty weights shaped for ``unet2d`` (SD 1.5 layout); fill them with :meth:`load_public_state_dict`."""
        ids = cross_attention_ids(unet2d)
        widths = _layer_widths(unet2d)
        cross_dim = int(unet2d.config.cross_attention_dim)
        tokens = int(image_proj.latents.shape[1])
        processors = {name: DecoupledCrossAttnProcessor(widths[name], cross_dim, tokens, scale) for name in ids}
        return cls(image_proj, processors, ids)

    @property
    def embedding_dim(self) -> int:
        """Width of the image tokens the projection takes (1280 for OpenCLIP ViT-H-14)."""
        return int(self.image_proj.proj_in.in_features)

    def processor(self, name: str) -> DecoupledCrossAttnProcessor:
        return self.ip_adapter[str(self.layer_ids[name])]  # type: ignore[return-value]

    def install(self, unet: torch.nn.Module) -> None:
        """Put the decoupled processors on the spatial cross-attention layers; temporal layers keep theirs."""
        processors = dict(unet.attn_processors)
        missing = [name for name in self.layer_ids if name not in processors]
        if missing:
            raise ModelError(f"the UNet has no cross-attention layer {missing[0]}; the IP-Adapter does not fit it")
        for name in self.layer_ids:
            processors[name] = self.processor(name)
        unet.set_attn_processor(processors)

    def load_public_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict in the public layout, strictly: every key must be there and none may be left over."""
        self.load_state_dict(public_to_diffusers(state), strict=True)

    def public_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under the public IP-Adapter Plus key names (what :meth:`load_public_state_dict` reads)."""
        return diffusers_to_public(self.state_dict())


def image_projection_from_state_dict(state: dict[str, torch.Tensor]) -> IPAdapterPlusImageProjection:
    """A projection shaped like the ``image_proj.*`` tensors of a public IP-Adapter Plus checkpoint.

    The head count is not stored; like diffusers' loader, heads are taken to be 64 wide.
    """
    if "image_proj.latents" not in state:
        if "image_proj.proj.weight" in state:
            raise ModelError(
                "This is a base IP-Adapter (one pooled image embedding -> 4 tokens); the motion pipeline "
                "conditions on per-frame token sequences and needs an IP-Adapter Plus checkpoint such as "
                "h94/IP-Adapter models/ip-adapter-plus_sd15.safetensors."
            )
        raise ModelError("Not an IP-Adapter checkpoint: no image_proj.* tensors.")
    latents = state["image_proj.latents"]
    hidden = int(latents.shape[2])
    inner = int(state["image_proj.layers.0.0.to_q.weight"].shape[0])
    dim_head = 64 if inner % 64 == 0 else inner
    return IPAdapterPlusImageProjection(
        embed_dims=int(state["image_proj.proj_in.weight"].shape[1]),
        output_dims=int(state["image_proj.proj_out.weight"].shape[0]),
        hidden_dims=hidden,
        depth=len({key.split(".")[2] for key in state if key.startswith("image_proj.layers.")}),
        dim_head=dim_head,
        heads=inner // dim_head,
        num_queries=int(latents.shape[1]),
        ffn_ratio=max(1, int(state["image_proj.layers.0.1.1.weight"].shape[0]) // hidden),
    )


def _refuse_pickle(filename: str) -> None:
    if not filename.endswith(".safetensors"):
        raise ModelError(f"{filename}: only .safetensors IP-Adapter files are loaded (pickles can run code).")


def ip_adapter_file(source: str | Path | tuple[str, str, str], local_files_only: bool = False) -> str:
    """The local path of a ``.safetensors`` file, downloading ``(repo, subfolder, file)`` from the hub."""
    if not isinstance(source, tuple):
        _refuse_pickle(str(source))
        return str(source)
    repo, subfolder, filename = source
    _refuse_pickle(filename)
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, filename, subfolder=subfolder or None, local_files_only=local_files_only)
    except Exception as exc:
        raise ModelError(
            f"Could not download {repo}/{subfolder}/{filename}: {type(exc).__name__}: {' '.join(str(exc).split())} {OFFLINE_HINT}"
        ) from exc


def load_ip_adapter(
    unet2d: torch.nn.Module,
    source: str | Path | tuple[str, str, str],
    scale: float = 1.0,
    local_files_only: bool = False,
) -> IPAdapter:
    """An IP-Adapter Plus from a local ``.safetensors`` file or ``(repo, subfolder, file)`` on the hub; pickles are refused."""
    from safetensors.torch import load_file

    path = ip_adapter_file(source, local_files_only)
    try:
        state = load_file(path)
    except Exception as exc:
        raise ModelError(f"Cannot read the IP-Adapter {path}: {exc}") from exc
    adapter = IPAdapter.build(unet2d, image_projection_from_state_dict(state), scale)
    try:
        adapter.load_public_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(
            f"The IP-Adapter {path} does not fit this SD 1.5 UNet: {' '.join(str(exc).split())[:400]}"
        ) from exc
    return adapter
