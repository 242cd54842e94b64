"""Identity bank: the sampled self-attention tokens of identity images that later panels read.

Only what a reader needs is kept: for each identity image, each consistent step and each consistent
layer, the pre-projection hidden states of its *sampled* tokens (both CFG halves), in the compute
dtype. Readers project them with the layer's own ``to_k``/``to_v``, so the bank is exact: a panel
that reads it sees the very tokens it would have sampled with the identity images in its batch.

The tokens live on the device, in host memory, or (past a host-memory budget, ``limit_host_memory``)
in safetensors files of a temporary folder read back memory-mapped (``bank_disk.DiskTier``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .atomic import atomic_path
from .bank_disk import DiskTier, Key
from .bank_file import (
    BANK_FORMAT,
    characters_field,
    check_layout,
    checked_tokens,
    descriptions_field,
    metadata_field,
    token_key,
)
from .bank_prefetch import BankPrefetcher
from .bank_projections import KeysValues, ProjectionCache, default_projection_budget
from .errors import BankError, shown
from .structured import InputFileError, check_regular_file


class IdentityBank:
    """Sampled identity tokens keyed by (source image, step, layer), on the GPU, on the CPU or on disk.

    ``signature`` records every setting that decides the sampled tokens; a reader whose run differs
    gets a BankError instead of silently inconsistent characters.
    """

    def __init__(self, signature: dict[str, Any] | None = None, storage: str | torch.device = "cpu"):
        self.signature = dict(signature or {})
        self.storage = torch.device(storage)
        self.characters: dict[str, list[int]] = {}
        self.descriptions: dict[str, str] = {}  # the description each character's identity images were drawn from
        self._tokens: dict[Key, torch.Tensor] = {}  # held in memory (host or device)
        self._disk: DiskTier | None = None  # spilled past host_memory
        self.host_memory: int | None = None
        self._spill_folder: Path | None = None
        self.path: Path | None = None  # the file it was loaded from, for messages
        self.prefetcher: BankPrefetcher | None = None  # during a run: copies host tokens to the GPU ahead of reads
        self.projections: ProjectionCache | None = None  # during a run: keys and values already projected

    def limit_host_memory(self, budget: int | None, folder: str | os.PathLike | None = None) -> IdentityBank:
        """Keep at most ``budget`` bytes of CPU tokens in memory; the rest go to the disk tier.

        Whenever a ``put`` takes the CPU tokens held past ``budget``, all of them are written to one
        new safetensors file (in a temporary folder under ``folder``, by default the system's) and
        dropped from memory. So the host memory the bank holds is at most ``budget`` between calls, and
        ``budget`` plus one chunk (one layer of one image at one step) during a ``put``. Reads of
        spilled tokens are memory-mapped and give the very same bytes. ``None``: no limit.
        """
        self.host_memory = budget
        self._spill_folder = Path(folder) if folder is not None else None
        self._spill_if_over_budget()
        return self

    def _spill_if_over_budget(self) -> None:
        if self.host_memory is None or self.storage.type != "cpu" or self.host_nbytes() <= self.host_memory:
            return
        if self._disk is None:
            self._disk = DiskTier(self._spill_folder)
        self._disk.write(self._tokens)
        self._tokens = {}

    def close(self) -> None:
        """Delete the disk tier's files now (they also go when the bank is garbage-collected); the
        spilled tokens are gone with them."""
        if self._disk is not None:
            self._disk.close()
            self._disk = None

    def start_reads(
        self, device: str | torch.device, projection_budget: int | None = None, prefetch: bool = False
    ) -> IdentityBank:
        """Set up one run's reads on ``device``: a cache of projected keys and values within
        ``projection_budget`` bytes (``bank_projections``; by default what memory allows, none under
        ``limit_host_memory``) and, with ``prefetch``, from host memory to a GPU, copies a step ahead on a
        side stream (``bank_prefetch``)."""
        device = torch.device(device)
        cuda_from_host = device.type == "cuda" and self.storage.type == "cpu"
        self.prefetcher = BankPrefetcher(device) if prefetch and cuda_from_host else None
        if projection_budget is None:
            projection_budget = 0 if self.host_memory is not None else default_projection_budget(device, self.storage)
        self.projections = ProjectionCache(projection_budget)
        return self

    def end_reads(self) -> None:
        """Forget the run's prefetched copies and cached projections."""
        self.prefetcher = self.projections = None

    def keys_values(
        self, source_id: int, step: int, layer: int, device: torch.device, project: Callable[[torch.Tensor], KeysValues]
    ) -> KeysValues:
        """``project`` of the tokens of one source at one step and layer, from the run's cache when it has them."""
        cache = self.projections  # read once: another run on this bank may end its reads meanwhile
        if cache is None:
            return project(self.get(source_id, step, layer, device))
        fetch = lambda: self.get(source_id, step, layer, device)  # noqa: E731 - read only on a cache miss
        return cache.keys_values((source_id, step, layer), fetch, project)

    def put(self, source_id: int, step: int, layer: int, tokens: torch.Tensor) -> None:
        """Keep ``tokens`` (halves, sampled, channels) of one source image at one step and layer."""
        pinned = self.storage.type == "cpu" and tokens.device.type == "cuda"
        stored = torch.empty(tokens.shape, dtype=tokens.dtype, device=self.storage, pin_memory=pinned)
        stored.copy_(tokens.detach())
        if self._disk is not None:
            self._disk.drop([(source_id, step, layer)])
        self._tokens[(source_id, step, layer)] = stored
        if self.prefetcher is not None:
            self.prefetcher.note_key((source_id, step, layer))
        if self.projections is not None:
            self.projections.forget([(source_id, step, layer)])
        self._spill_if_over_budget()

    def get(self, source_id: int, step: int, layer: int, device: torch.device) -> torch.Tensor:
        """The tokens of one source at one step and layer, moved to ``device`` (one layer at a time)."""
        key = (source_id, step, layer)
        prefetcher = self.prefetcher
        tokens = prefetcher.take(key) if prefetcher is not None else None
        if tokens is None:
            held = self._held(key)
            tokens = held.to(device, non_blocking=held.is_pinned())
        if prefetcher is not None:
            prefetcher.after_read(key, self._keys, self._held)
        return tokens

    def _held(self, key: Key) -> torch.Tensor:
        """The stored tokens of ``key`` (in memory or memory-mapped from disk), where they live."""
        tokens = self._tokens.get(key)
        if tokens is None and self._disk is not None and key in self._disk:
            tokens = self._disk.read(key)
        if tokens is None:
            source_id, step, layer = key
            raise BankError(
                f"the identity bank has no tokens for image {source_id} at step {step}, layer {layer}: "
                "it was made with other settings; regenerate the identity images"
            )
        return tokens

    def move_to(self, storage: str | torch.device, pin: bool = False) -> IdentityBank:
        """Keep the tokens on ``storage`` from now on; ``pin`` pins CPU tokens for fast GPU reads.
        Spilled tokens stay on disk for CPU storage and come back for device storage."""
        self.storage = torch.device(storage)
        if self._disk is not None and self.storage.type != "cpu":
            self._tokens = {key: tokens.to(self.storage) for key, tokens in self._items()}
            self.close()
        for key, tokens in self._tokens.items():
            moved = tokens.to(self.storage)
            if pin and self.storage.type == "cpu" and not moved.is_pinned():
                moved = moved.pin_memory()
            self._tokens[key] = moved
        return self

    def sources(self) -> set[int]:
        return {key[0] for key in self._keys()}

    def _keys(self) -> list[Key]:
        return [*self._tokens, *(self._disk.keys() if self._disk is not None else ())]

    def _items(self) -> Iterator[tuple[Key, torch.Tensor]]:
        """Every key and its tokens, the spilled ones memory-mapped one at a time."""
        yield from list(self._tokens.items())
        if self._disk is not None:
            for key in list(self._disk.keys()):
                yield key, self._disk.read(key)

    def _shapes(self) -> dict[Key, tuple[int, ...]]:
        shapes = {key: tuple(tokens.shape) for key, tokens in self._tokens.items()}
        if self._disk is not None:
            shapes.update((key, tuple(self._disk.shape(key))) for key in self._disk.keys())
        return shapes

    def drop(self, source_ids: set[int] | list[int]) -> None:
        """Forget some sources, e.g. the previous window in sliding-window mode."""
        doomed = set(source_ids)
        if self.prefetcher is not None:
            self.prefetcher.forget_order()
        if self.projections is not None:
            self.projections.forget([key for key in self._keys() if key[0] in doomed])
        self._tokens = {key: value for key, value in self._tokens.items() if key[0] not in doomed}
        if self._disk is not None:
            self._disk.drop([key for key in self._disk.keys() if key[0] in doomed])
        for name in list(self.characters):
            self.characters[name] = [s for s in self.characters[name] if s not in doomed]
            if not self.characters[name]:
                del self.characters[name]
                self.descriptions.pop(name, None)

    def nbytes(self, source_id: int | None = None) -> int:
        """Bytes held in memory and on disk, for one source or in all."""
        spilled = self._disk.keys() if self._disk is not None else ()
        on_disk = sum(self._disk.nbytes(key) for key in spilled if source_id is None or key[0] == source_id)
        return on_disk + sum(
            t.numel() * t.element_size()
            for (sid, _, _), t in self._tokens.items()
            if source_id is None or sid == source_id
        )

    def host_nbytes(self) -> int:
        """Bytes of CPU tokens held in memory: what ``limit_host_memory`` bounds."""
        return sum(t.numel() * t.element_size() for t in self._tokens.values() if t.device.type == "cpu")

    def __len__(self) -> int:
        return len(self._tokens) + (len(self._disk) if self._disk is not None else 0)

    def check_compatible(self, signature: dict[str, Any]) -> None:
        """Raise BankError naming each setting that differs between the bank and a reader."""
        differences = [
            f"{key}: bank {_signed(self.signature, key)}, now {_signed(signature, key)}"
            for key in sorted(set(self.signature) | set(signature))
            if self.signature.get(key) != signature.get(key)
        ]
        if differences:
            raise BankError(
                "the identity bank was made with other settings (" + "; ".join(differences) + "); "
                "use the same settings or regenerate the identity images"
            )

    def check_mode(self, mode: str) -> None:
        """Only identity mode reads a bank as it is: window mode fills its own and drops each window as
        it goes (it would empty a bank it was given), and plain mode reads none."""
        if len(self) and mode != "identity":
            effect = "would empty it" if mode == "window" else "does not read it"
            raise BankError(
                f"an identity bank (--bank) is read only in --mode identity; --mode {mode} {effect}: "
                "leave out --bank or use --mode identity"
            )

    def check_characters(self, story_characters: Iterable[str], needed: Iterable[str] = ()) -> None:
        """Refuse a bank holding characters the story does not have, or lacking one the panels to draw show."""
        unknown = sorted(set(self.characters) - set(story_characters))
        if unknown:
            raise BankError(
                f"the identity bank holds {', '.join(unknown)}, not a character of this story: "
                "use the bank of a run of this story"
            )
        missing = sorted(set(needed) - set(self.characters))
        if missing:
            raise BankError(
                f"the identity bank has no identity images of {', '.join(missing)}, shown in the panels to draw: "
                "use the bank of a run that drew them, or leave out the bank"
            )

    def check_descriptions(self, descriptions: Mapping[str, str]) -> None:
        """Refuse a bank whose character was drawn from another description than the story's: its identity
        tokens would give the panel the look of the other one (a bank saved before banks kept descriptions
        is not checked)."""
        for name, drawn in sorted(self.descriptions.items()):
            if name in descriptions and descriptions[name] != drawn:
                raise BankError(
                    f"the identity bank drew {name} as {shown(drawn)}, but this story describes {name} as "
                    f"{shown(descriptions[name])}: use the bank of a run of this story, or leave out the bank "
                    "to draw the identity images anew"
                )

    def check_shapes(self, expected: dict[tuple[int, int], tuple[int, ...]]) -> None:
        """Refuse tokens a run cannot read as it is: every image must hold exactly the (step, layer)
        tensors of ``expected`` (what the run's model and settings write), each of exactly its shape.
        A misfit would otherwise fail half-way through the run, or be read as if it fitted."""
        name = f"identity bank {self.path}" if self.path is not None else "the identity bank"
        advice = "it was made with another model or other settings; regenerate it with --save-bank"
        shapes = self._shapes()
        for (source, step, layer), shape in sorted(shapes.items()):
            wanted = expected.get((step, layer))
            if wanted is None:
                raise BankError(
                    f"{name} holds tokens of image {source} at step {step}, layer {layer}, "
                    f"where this model and these settings sample none: {advice}"
                )
            if not self._fits(shape, tuple(wanted)):
                raise BankError(
                    f"{name} holds tokens of image {source} at step {step}, layer {layer} of shape "
                    f"{shape}; this model and these settings give {tuple(wanted)}: {advice}"
                )
        for source in sorted(self.sources()):
            held = {(step, layer) for (held_source, step, layer) in shapes if held_source == source}
            missing = sorted(set(expected) - held)
            if missing:
                step, layer = missing[0]
                raise BankError(f"{name} has no tokens of image {source} at step {step}, layer {layer}: {advice}")

    @property
    def subject_samples(self) -> bool:
        """Whether the bank's samples are its images' subject tokens only (``consistency: subject``): then
        an image holds at most as many tokens per layer as the uniform sample, as many as its subject has."""
        return self.signature.get("consistency") == "subject"

    def _fits(self, shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
        if not self.subject_samples:
            return shape == wanted
        return len(shape) == 3 and (shape[0], shape[2]) == (wanted[0], wanted[2]) and 1 <= shape[1] <= wanted[1]

    def cast(self, dtype: torch.dtype) -> IdentityBank:
        """Tokens in ``dtype``: a bank saved by a run of another compute dtype reads like its own."""
        for key, tokens in self._tokens.items():
            if tokens.dtype != dtype:
                self._tokens[key] = tokens.to(dtype)
        if self._disk is not None:
            self._disk.read_dtype = dtype
        return self

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file atomically (temporary name, then rename); the same file whichever
        tier the tokens are on (spilled ones are read memory-mapped, not copied into memory)."""
        path = Path(path)
        tensors = {f"{sid}.{step}.{layer}": tensor.contiguous().cpu() for (sid, step, layer), tensor in self._items()}
        metadata = {
            "format": BANK_FORMAT,
            "signature": json.dumps(self.signature, sort_keys=True),
            "characters": json.dumps(self.characters),
            "descriptions": json.dumps(self.descriptions),
        }
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)

    @classmethod
    def load(
        cls, path: str | os.PathLike, storage: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> IdentityBank:
        """Read a bank written by ``save``; anything else is refused with a BankError naming the file.

        Float tokens of any width are accepted and cast to ``dtype`` when given (a bank saved by a
        float16 GPU run read by a float32 CPU run); the pipeline also casts to its compute dtype on use.
        """
        try:
            check_regular_file(path, "the file")  # a named pipe would block safe_open forever
        except InputFileError as error:
            raise BankError(f"could not read identity bank: {error}") from None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != BANK_FORMAT:
                    raise BankError(f"{path} is not a StoryDiffusion identity bank (format {metadata.get('format')!r})")
                bank = cls(metadata_field(metadata, "signature"), storage)
                bank.characters = characters_field(metadata_field(metadata, "characters", "{}"))
                bank.descriptions = descriptions_field(metadata_field(metadata, "descriptions", "{}"))
                for key in handle.keys():
                    bank._tokens[token_key(key)] = checked_tokens(handle.get_tensor(key), key).to(bank.storage)
            check_layout(bank._tokens, bank.signature, bank.characters, bank.subject_samples)
            bank.path = Path(path)
        except BankError:
            raise
        except ValueError as error:
            raise BankError(f"{path} is not a usable identity bank: {error}; regenerate it with --save-bank") from None
        except Exception as error:  # safetensors raises several types for a bad file; its own words mean little
            raise BankError(
                f"could not read identity bank {path}: not a safetensors file, or a damaged one ({type(error).__name__})"
            ) from None
        return bank.cast(dtype) if dtype is not None else bank


# Settings a signature leaves out at their default, so that banks saved before they existed still fit.
SIGNATURE_DEFAULTS = {"consistency": "uniform"}


def _signed(signature: dict[str, Any], key: str) -> str:
    """A signature's value as a message shows it: one left out is its default, or not used by that run."""
    if key in signature:
        return repr(signature[key])
    return repr(SIGNATURE_DEFAULTS[key]) if key in SIGNATURE_DEFAULTS else "not used"
