"""Prefetch of identity-bank tokens from host memory to the GPU on a side CUDA stream, a step ahead.

A bank kept in (pinned) host memory is read one layer at a time. Here, when a reader starts a step
(its first read of an image at that step), every layer of that image's *next* step is copied on a
stream of its own, so the next step finds its tokens on the device. The copies are exact, so panels
are byte-identical with and without prefetch.

Why a whole step at once and not the next layer: on a GPU a denoising step at batch 2 is bound by the
Python that launches its kernels, so bookkeeping per read (a stream switch, an event) cost more than
the transfer it hid (measured on an H200, ``benchmarks/RESULTS.md``). Per image and step there is one
event, one stream switch and one wait.

Memory safety without ``record_stream``: the copies of a step are forgotten when the image's next step
starts, once every read of them is queued on the compute stream, and the side stream waits for the
compute stream before each new batch of copies; so a block freed here is reused only after its last read.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Key = tuple[int, int, int]  # (source image, step, layer)
Copies = dict[int, torch.Tensor]  # layer -> tokens on the device


class BankPrefetcher:
    """Copies bank tokens to one CUDA device a step ahead of their reads; on any other device it does nothing."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.enabled = self.device.type == "cuda"
        self._stream = torch.cuda.Stream(self.device) if self.enabled else None
        self._copies: dict[tuple[int, int], tuple[torch.cuda.Event, Copies]] = {}  # (image, step) -> copies
        self._waited: set[tuple[int, int]] = set()
        self._layers: dict[tuple[int, int], list[int]] | None = None  # (image, step) -> its layers
        self.hits = self.misses = 0  # how many reads found their tokens prefetched

    def forget_order(self) -> None:
        """The bank's keys changed (a drop): its steps and layers are listed again."""
        self._layers = None

    def note_key(self, key: Key) -> None:
        """The bank has a new key (a write)."""
        if self._layers is not None:
            self._layers.setdefault(key[:2], []).append(key[2])

    def take(self, key: Key) -> torch.Tensor | None:
        """The prefetched tokens of ``key``, usable on the current stream, or None if none were copied."""
        if not self.enabled:
            return None
        source, step, layer = key
        entry = self._copies.get((source, step))
        if entry is None or layer not in entry[1]:
            self.misses += 1
            return None
        if (source, step) not in self._waited:
            torch.cuda.current_stream(self.device).wait_event(entry[0])
            self._waited.add((source, step))
        self.hits += 1
        return entry[1][layer]

    def after_read(self, key: Key, keys: Callable[[], list[Key]], host: Callable[[Key], torch.Tensor]) -> None:
        """On an image's first read of a step, copy all of its next step; ``keys`` lists the bank's keys and
        ``host`` gives the host tokens of one key."""
        source, step, _ = key
        if not self.enabled or (source, step + 1) in self._copies:
            return
        if self._layers is None:
            self._layers = {}
            for item in sorted(keys()):
                self._layers.setdefault(item[:2], []).append(item[2])
        self._forget_before(source, step)
        upcoming = self._layers.get((source, step + 1))
        if upcoming:
            self._copy_step(source, step + 1, {layer: host((source, step + 1, layer)) for layer in upcoming})

    def _copy_step(self, source: int, step: int, tokens: Copies) -> None:
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream(self.device))  # see the module docstring: memory safety
        with torch.cuda.stream(stream):
            copies = {layer: held.to(self.device, non_blocking=held.is_pinned()) for layer, held in tokens.items()}
            ready = torch.cuda.Event()
            ready.record(stream)
        self._copies[(source, step)] = (ready, copies)

    def _forget_before(self, source: int, step: int) -> None:
        """Drop an image's copies of steps before ``step``: every read of them is already queued."""
        for stale in [k for k in self._copies if k[0] == source and k[1] < step]:
            del self._copies[stale]
            self._waited.discard(stale)

    def clear(self) -> None:
        """Forget every copy (end of a run)."""
        self._copies, self._waited = {}, set()
