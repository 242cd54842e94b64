"""The identity bank's disk tier: tokens spilled to safetensors files and read back memory-mapped.

A bank over its host-memory budget hands the tokens it holds to this tier, which writes them to one new
safetensors file (safetensors files are written whole, so each spill is a file of its own) and keeps
only their names, shapes and dtypes. A read opens the file with ``safe_open``, which memory-maps it:
the tensor is read from the page cache, which the system can reclaim, not held in the process's memory.

The files live in a private temporary folder (``TMPDIR`` decides where; point it at a disk, not a RAM
disk). A file is deleted once every tensor in it has been dropped, and the folder when the tier is
closed, garbage-collected or the interpreter exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

Key = tuple[int, int, int]  # (source image, step, layer)
OPEN_FILES = 16  # memory-mapped files kept open between reads; older ones are reopened when read


class DiskTier:
    """Bank tokens in safetensors files of a temporary folder, read one tensor at a time."""

    def __init__(self, parent: str | os.PathLike | None = None):
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="storydiffusion-bank-", dir=parent))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        self._file_of: dict[Key, Path] = {}
        self._keys_in: dict[Path, set[Key]] = {}
        self._layout: dict[Key, tuple[torch.Size, torch.dtype]] = {}
        self._handles: dict[Path, Any] = {}
        self._written = 0
        self.read_dtype: torch.dtype | None = None  # set by IdentityBank.cast: tokens are cast as they are read

    def write(self, tokens: dict[Key, torch.Tensor]) -> None:
        """Write ``tokens`` to a new file; the caller then forgets its own copies."""
        if not tokens:
            return
        self._written += 1
        path = self.folder / f"spill_{self._written:06d}.safetensors"
        save_file({_name(key): tensor.contiguous() for key, tensor in tokens.items()}, str(path))
        self.drop(tokens)  # a key written again replaces its older copy
        self._keys_in[path] = set(tokens)
        for key, tensor in tokens.items():
            self._file_of[key] = path
            self._layout[key] = (tensor.shape, tensor.dtype)

    def read(self, key: Key) -> torch.Tensor:
        """The tensor of ``key``, memory-mapped from its file (KeyError if the tier does not hold it)."""
        path = self._file_of[key]
        tokens = self._handle(path).get_tensor(_name(key))
        return tokens.to(self.read_dtype) if self.read_dtype is not None else tokens

    def _handle(self, path: Path) -> Any:
        handle = self._handles.pop(path, None)
        if handle is None:
            if len(self._handles) >= OPEN_FILES:
                self._handles.pop(next(iter(self._handles)))
            handle = safe_open(str(path), framework="pt", device="cpu")
        self._handles[path] = handle  # most recently read last
        return handle

    def drop(self, keys: Iterable[Key]) -> None:
        """Forget ``keys``; a file none of whose tensors is still wanted is deleted."""
        for key in list(keys):
            path = self._file_of.pop(key, None)
            if path is None:
                continue
            del self._layout[key]
            self._keys_in[path].discard(key)
            if not self._keys_in[path]:
                del self._keys_in[path]
                self._handles.pop(path, None)
                path.unlink(missing_ok=True)

    def keys(self) -> Iterator[Key]:
        return iter(self._file_of)

    def shape(self, key: Key) -> torch.Size:
        return self._layout[key][0]

    def nbytes(self, key: Key) -> int:
        shape, dtype = self._layout[key]
        return shape.numel() * torch.empty((), dtype=dtype, device="meta").element_size()

    def __contains__(self, key: object) -> bool:
        return key in self._file_of

    def __len__(self) -> int:
        return len(self._file_of)

    def close(self) -> None:
        """Delete every file and the folder now, rather than when the tier is garbage-collected."""
        self._handles.clear()
        self._file_of.clear()
        self._keys_in.clear()
        self._layout.clear()
        self._cleanup()


def _name(key: Key) -> str:
    source, step, layer = key
    return f"{source}.{step}.{layer}"
