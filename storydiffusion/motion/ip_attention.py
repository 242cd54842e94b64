"""IP-Adapter's decoupled cross-attention, with each batch row (one video frame) reading its own image tokens.

``Attn(q, K_text, V_text) + scale * Attn(q, K'_img, V'_img)``. AnimateDiff flattens (batch, frames)
into the batch of the spatial layers, so when every row of ``encoder_hidden_states`` is
``[text tokens | that frame's image tokens]`` each frame is conditioned on its own tokens. diffusers'
``IPAdapterAttnProcessor2_0`` takes the image tokens apart from the text (a tuple, with the
projection inside the UNet), so it cannot be handed per-frame tokens this simply.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .checks import AnimationError


class DecoupledCrossAttnProcessor(torch.nn.Module):
    """Cross-attention over text tokens plus, separately, the last ``num_tokens`` (image) tokens of each row.

    ``ip_scale`` comes through ``cross_attention_kwargs`` so a run never changes the processor.
    The weights ``to_k_ip`` / ``to_v_ip`` carry the public IP-Adapter names.
    """

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_tokens: int, scale: float = 1.0):
        super().__init__()
        self.num_tokens = num_tokens
        self.default_scale = scale
        self.to_k_ip = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)
        self.to_v_ip = torch.nn.Linear(cross_attention_dim, hidden_size, bias=False)

    def split(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[text | image]`` rows -> (text tokens, image tokens)."""
        if encoder_hidden_states.shape[1] <= self.num_tokens:
            raise AnimationError("the decoupled cross-attention needs text tokens followed by image tokens")
        return encoder_hidden_states[:, : -self.num_tokens], encoder_hidden_states[:, -self.num_tokens :]

    def __call__(  # noqa: D401 - diffusers' processor protocol
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        ip_scale: float | None = None,
    ) -> torch.Tensor:
        scale = self.default_scale if ip_scale is None else float(ip_scale)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if encoder_hidden_states is None:
            text, image = hidden_states, None
        else:
            text, image = self.split(encoder_hidden_states)
        out = self._attend(attn, hidden_states, text, image, attention_mask, scale)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _attend(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        text: torch.Tensor,
        image: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        scale: float,
    ) -> torch.Tensor:
        """Text attention plus ``scale`` times image attention, with the same queries: (batch, tokens, width)."""
        batch = text.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, text.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if image is not None and attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        key, value = attn.to_k(text), attn.to_v(text)
        head_dim = key.shape[-1] // attn.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        if image is not None and scale != 0.0:
            ip_key, ip_value = heads(self.to_k_ip(image)), heads(self.to_v_ip(image))
            out = out + scale * F.scaled_dot_product_attention(query, ip_key, ip_value)
        return out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
