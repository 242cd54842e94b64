"""Identity bank: the sampled self-attention tokens of identity images that later panels read.

Only what a reader needs is kept: for each identity image, each consistent step and each consistent
layer, the pre-projection hidden states of its *sampled* tokens (both CFG halves), in the compute
dtype. Readers project them with the layer's own ``to_k``/``to_v``, so the bank is exact: a panel
that reads it sees the very tokens it would have sampled with the identity images in its batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import atomic_path
from .errors import BankError

BANK_FORMAT = "storydiffusion-identity-bank/1"


class IdentityBank:
    """Sampled identity tokens keyed by (source image, step, layer), on the GPU or on the CPU.

    ``signature`` records every setting that decides the sampled tokens; a reader whose run differs
    gets a BankError instead of silently inconsistent characters.
    """

    def __init__(self, signature: dict[str, Any] | None = None, storage: str | torch.device = "cpu"):
        self.signature = dict(signature or {})
        self.storage = torch.device(storage)
        self.characters: dict[str, list[int]] = {}
        self._tokens: dict[tuple[int, int, int], torch.Tensor] = {}

    def put(self, source_id: int, step: int, layer: int, tokens: torch.Tensor) -> None:
        """Keep ``tokens`` (halves, sampled, channels) of one source image at one step and layer."""
        pinned = self.storage.type == "cpu" and tokens.device.type == "cuda"
        stored = torch.empty(tokens.shape, dtype=tokens.dtype, device=self.storage, pin_memory=pinned)
        stored.copy_(tokens.detach())
        self._tokens[(source_id, step, layer)] = stored

    def get(self, source_id: int, step: int, layer: int, device: torch.device) -> torch.Tensor:
        """The tokens of one source at one step and layer, moved to ``device`` (one layer at a time)."""
        try:
            tokens = self._tokens[(source_id, step, layer)]
        except KeyError:
            raise BankError(
                f"the identity bank has no tokens for image {source_id} at step {step}, layer {layer}: "
                "it was made with other settings; regenerate the identity images"
            ) from None
        return tokens.to(device, non_blocking=tokens.is_pinned())

    def move_to(self, storage: str | torch.device, pin: bool = False) -> IdentityBank:
        """Keep the tokens on ``storage`` from now on; ``pin`` pins CPU tokens for fast GPU reads."""
        self.storage = torch.device(storage)
        for key, tokens in self._tokens.items():
            moved = tokens.to(self.storage)
            if pin and self.storage.type == "cpu" and not moved.is_pinned():
                moved = moved.pin_memory()
            self._tokens[key] = moved
        return self

    def sources(self) -> set[int]:
        return {key[0] for key in self._tokens}

    def drop(self, source_ids: set[int] | list[int]) -> None:
        """Forget some sources, e.g. the previous window in sliding-window mode."""
        doomed = set(source_ids)
        self._tokens = {key: value for key, value in self._tokens.items() if key[0] not in doomed}
        for name in list(self.characters):
            self.characters[name] = [s for s in self.characters[name] if s not in doomed]
            if not self.characters[name]:
                del self.characters[name]

    def nbytes(self, source_id: int | None = None) -> int:
        """Bytes held, for one source or in all."""
        return sum(
            t.numel() * t.element_size()
            for (sid, _, _), t in self._tokens.items()
            if source_id is None or sid == source_id
        )

    def __len__(self) -> int:
        return len(self._tokens)

    def check_compatible(self, signature: dict[str, Any]) -> None:
        """Raise BankError naming each setting that differs between the bank and a reader."""
        differences = [
            f"{key}: bank {self.signature.get(key)!r}, now {signature.get(key)!r}"
            for key in sorted(set(self.signature) | set(signature))
            if self.signature.get(key) != signature.get(key)
        ]
        if differences:
            raise BankError(
                "the identity bank was made with other settings (" + "; ".join(differences) + "); "
                "use the same settings or regenerate the identity images"
            )

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file atomically (temporary name, then rename)."""
        path = Path(path)
        tensors = {
            f"{sid}.{step}.{layer}": tensor.contiguous().cpu() for (sid, step, layer), tensor in self._tokens.items()
        }
        metadata = {
            "format": BANK_FORMAT,
            "signature": json.dumps(self.signature, sort_keys=True),
            "characters": json.dumps(self.characters),
        }
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, storage: str | torch.device = "cpu") -> IdentityBank:
        """Read a bank written by ``save``; anything else is refused with a BankError."""
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != BANK_FORMAT:
                    raise BankError(f"{path} is not a StoryDiffusion identity bank (format {metadata.get('format')!r})")
                bank = cls(json.loads(metadata["signature"]), storage)
                bank.characters = {k: list(v) for k, v in json.loads(metadata.get("characters", "{}")).items()}
                for key in handle.keys():
                    sid, step, layer = (int(part) for part in key.split("."))
                    bank._tokens[(sid, step, layer)] = handle.get_tensor(key).to(bank.storage)
        except BankError:
            raise
        except Exception as error:  # safetensors raises several types for a bad file
            raise BankError(f"could not read identity bank {path}: {error}") from None
        return bank
