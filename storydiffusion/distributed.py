"""One story over several processes (``torchrun``, ``accelerate launch``): the same panels, one manifest writer.

Every process makes the single-process plan, batch for batch, so each panel comes out of exactly the
batch, seeds and bank it would come out of in one process. The first process draws the identity pass
and sends the bank to the others (each tensor's bytes over torch.distributed: no pickles). The read
batches are dealt round-robin, in rounds of one batch per process. Each process writes the panels it
drew into the run folder itself, atomically, when every process sees that folder (one disk, or a shared
one: checked by reading the manifest back); the first process then records them in the manifest, which
it alone writes, and which lists the panels being drawn before any is written, so an interrupted run
never leaves a panel file this tool has no record of. When the folder is not shared (processes on other
machines, each with its own disk), the finished panels travel to the first process, which writes them.
The processes come from Accelerate's ``PartialState`` (NCCL between GPUs, gloo between CPUs). Window mode
chains each window to the last: the first process draws it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .errors import GenerationCancelled, ModelOutOfMemory, StoryDiffusionError
from .panel_transport import pack_panels, read_back_panel, unpack_panels
from .results import PanelImage
from .rundir import MANIFEST_NAME, save_panel
from .story_run import is_cancelled

COLLECTIVE_TIMEOUT = timedelta(hours=6)
WINDOW_ALONE = "window mode chains each window to the last: the first process drew them all, the others waited"
NOT_SHARED = (
    "the other processes do not see the run folder (another machine's disk): "
    "they sent their panels to the first process, which wrote them"
)


class ProcessesStopped(StoryDiffusionError):
    """Another process of the run stopped or did not answer in time: this one stops too."""


class FailedTogether(StoryDiffusionError):
    """A failure every process raises at once, with the same message: the first process reports it, so the
    command line prints nothing more for it on the others (``reported_elsewhere``)."""

    def __init__(self, message: str, reported_elsewhere: bool):
        super().__init__(message)
        self.reported_elsewhere = reported_elsewhere


class OutOfMemoryTogether(FailedTogether, ModelOutOfMemory):
    """A process ran out of memory: reported as out of memory (with its advice) by the first process."""


def _collective(method: Callable) -> Callable:
    """torch.distributed's errors (a peer gone, a timeout) as one message saying what is left."""

    @functools.wraps(method)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except RuntimeError as error:
            raise ProcessesStopped(
                f"another process of this run stopped ({type(error).__name__}: {' '.join(str(error).split())[:160]}); "
                "the folder holds the panels finished so far: run the command again to draw the rest"
            ) from None

    return wrapped


@dataclass
class ProcessShare:
    """This process's place among the processes drawing one story."""

    rank: int
    world: int
    device: torch.device  # where its collective tensors live: its GPU under NCCL, else the CPU
    folder: Path | None = None  # the run folder, where each process writes its own panels if all see it
    record: Callable[[PanelImage], None] | None = None  # the first process's: a panel another one wrote, recorded

    def writing_into(self, folder: str | os.PathLike, record: Callable[[PanelImage], None] | None) -> ProcessShare:
        """This share, with each process writing the panels it draws into ``folder`` (the first process's
        ``record`` then lists them in the manifest)."""
        return dataclasses.replace(self, folder=Path(folder), record=record)

    @property
    def writes(self) -> bool:
        """Whether this process writes the output folder and reports (the first one)."""
        return self.rank == 0

    def draws(self, read_number: int) -> bool:
        """Whether this process draws the ``read_number``-th read batch of the plan."""
        return read_number % self.world == self.rank

    # ---------------------------------------------------------------- moving bytes
    @_collective
    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """The first process's ``data``, on every process."""
        import torch.distributed as dist

        size = torch.tensor([len(data or b"")], dtype=torch.int64, device=self.device)
        dist.broadcast(size, src=0)
        buffer = (
            _as_tensor(data or b"", self.device)
            if self.rank == 0
            else torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        )
        if buffer.numel():
            dist.broadcast(buffer, src=0)
        return buffer.cpu().numpy().tobytes()

    @_collective
    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every process's ``data``, in rank order, on every process."""
        import torch.distributed as dist

        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = max(int(s.item()) for s in sizes)
        buffer = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        buffer[: len(data)] = _as_tensor(data, self.device)
        gathered = [torch.zeros_like(buffer) for _ in range(self.world)]
        if longest:
            dist.all_gather(gathered, buffer)
        return [g[: int(s.item())].cpu().numpy().tobytes() for g, s in zip(gathered, sizes)]

    def agree(self, error: StoryDiffusionError | None) -> None:
        """Every process's outcome of a step that may fail on one alone (checks, the folder): all raise the
        first error together, so none waits at the next collective for one that stopped."""
        sent = f"{'memory' if isinstance(error, ModelOutOfMemory) else 'input'}:{error}" if error else ""
        messages = [part.decode() for part in self.gather_bytes(sent.encode())]
        if error is not None and self.rank == 0:
            raise error
        failed = next((message for message in messages if message), None)
        if failed is not None:
            kind, message = failed.split(":", 1)
            together = OutOfMemoryTogether if kind == "memory" else FailedTogether
            raise together(message, reported_elsewhere=self.rank != 0)

    def broadcast_json(self, value: Any) -> Any:
        """The first process's JSON-able ``value``, on every process."""
        data = json.dumps(value).encode() if self.rank == 0 else None
        return json.loads(self.broadcast_bytes(data).decode())

    # ---------------------------------------------------------------- what a run shares
    def share_bank(self, bank: Any) -> None:
        """The first process's identity bank, copied into every other process's ``bank``: a JSON list of the
        tensors (key, dtype, shape), then each tensor's bytes, one at a time, so no process ever holds the
        bank twice over (no pickles)."""
        entries = (
            [[s, t, layer, str(v.dtype).removeprefix("torch."), list(v.shape)] for (s, t, layer), v in bank._items()]
            if self.rank == 0
            else None
        )
        shared = {"characters": bank.characters, "descriptions": bank.descriptions, "tensors": entries}
        header = self.broadcast_json(shared if self.rank == 0 else None)
        if self.rank != 0:
            bank.characters = {name: list(ids) for name, ids in header["characters"].items()}
            bank.descriptions = dict(header["descriptions"])
        for source, step, layer, dtype, shape in header["tensors"]:
            sent = bank._held((source, step, layer)) if self.rank == 0 else None  # no read-side effects
            tokens = self.broadcast_tensor(sent, getattr(torch, dtype), tuple(shape))
            if self.rank != 0:
                bank.put(source, step, layer, tokens)

    @_collective
    def broadcast_tensor(self, tensor: torch.Tensor | None, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        """The first process's ``tensor`` (of ``dtype`` and ``shape``), on every process, on this one's device."""
        import torch.distributed as dist

        if self.rank == 0:
            buffer = tensor.to(self.device).contiguous().view(torch.uint8).flatten()
        else:
            size = torch.empty(shape, dtype=dtype, device="meta").view(torch.uint8).numel()
            buffer = torch.empty(size, dtype=torch.uint8, device=self.device)
        if buffer.numel():
            dist.broadcast(buffer, src=0)
        return buffer.view(dtype).reshape(shape)

    def gather_panels(
        self, panels: list[PanelImage], written: bool = False, stopped: bool = False
    ) -> tuple[list[PanelImage], bool]:
        """Every process's finished panels of a round, on the first process (empty elsewhere), and whether any
        process was cancelled (``stopped``): then they all stop. ``written``: each process writes its own into
        ``folder``, so only their records travel and the pictures are read back from there. A process that
        failed to write sends its error instead: then every process raises it."""
        error = None
        if written:
            try:
                for panel in panels:
                    save_panel(panel, self.folder)
            except (OSError, StoryDiffusionError) as failure:
                error = (
                    f"process {self.rank} could not write its panels in {self.folder}: {failure}; free some space "
                    "or fix the folder's permissions, then run the same command again to draw the rest"
                )
        sent = pack_panels(panels, pictures=not written, error=error, stopped=stopped)
        parts = [unpack_panels(part) for part in self.gather_bytes(sent)]
        failed = next((message for message, _, _ in parts if message), None)
        if failed is not None:
            raise FailedTogether(failed, reported_elsewhere=self.rank != 0)
        stopped = any(part_stopped for _, part_stopped, _ in parts)
        if self.rank != 0:
            return [], stopped
        drawn = {panel.index: panel for panel in panels}  # this process's own, in hand
        received = []
        for _, _, sent in parts:
            for panel in sent:
                mine = drawn.get(panel.index)
                received.append(mine or (read_back_panel(panel, self.folder) if written else panel))
        return sorted(received, key=lambda p: p.index), stopped

    def any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any process."""
        return any(vote == b"1" for vote in self.gather_bytes(b"1" if flag else b"0"))

    def sees_folder(self) -> bool:
        """Whether every process sees the first one's run folder (one disk, or a shared one): each reads the
        manifest the first process has just written there, and compares it with the first one's."""
        theirs = self.broadcast_json(_fingerprint(self.folder) if self.rank == 0 else None)
        mine = self.folder is not None and theirs is not None and _fingerprint(self.folder) == theirs
        return not self.any_process(not mine)


def _as_tensor(data: bytes, device: torch.device) -> torch.Tensor:
    if not data:
        return torch.empty(0, dtype=torch.uint8, device=device)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)


def _fingerprint(folder: Path | None) -> str | None:
    """The run folder's manifest, as this process reads it: None when it cannot."""
    try:
        return hashlib.sha256((folder / MANIFEST_NAME).read_bytes()).hexdigest() if folder is not None else None
    except OSError:
        return None


def process_share(cpu: bool = False) -> ProcessShare | None:
    """This process's place when several were launched together (``WORLD_SIZE`` > 1), else None.

    Accelerate starts the process group: NCCL when this machine has GPUs and ``cpu`` is off, else gloo
    (``PartialState(cpu=True)``, without which it would count one process). A collective waits up to
    ``COLLECTIVE_TIMEOUT`` for the others: the identity pass on the first process can be long."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    gpus = torch.cuda.is_available() and not cpu
    state = PartialState(cpu=not gpus, timeout=COLLECTIVE_TIMEOUT)
    device = torch.device(state.device) if gpus else torch.device("cpu")
    return ProcessShare(state.process_index, state.num_processes, device)


def release_processes(share: ProcessShare | None) -> None:
    """At the end of a command, the process group torn down here rather than by the interpreter's exit,
    where gloo or NCCL may abort when another process has already gone (PyTorch asks for this on exit)."""
    import torch.distributed as dist

    if share is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def draw_shared(
    draw_batch: Callable[[int, Any, int], tuple[list[Image.Image], Any]], run: Any, result: Any, share: ProcessShare
) -> None:
    """Draw ``run``'s plan over the processes: the identity pass on the first, the bank to all, the read
    batches round-robin in rounds, each round's panels to the first process (``result``, and ``on_panel``,
    or when each process writes its own into ``share.folder``, ``share.record``).
    A cancel on any process stops them all after the round, keeping the panels finished (``result.cancelled``)."""
    if run.settings.mode == "window":  # each window reads the last: the first process draws them all, in order
        if share.writes:
            result.warnings.append(WINDOW_ALONE)
            for number, batch in enumerate(run.plan):
                panels = _drawn(draw_batch, run, number, batch, len(result.panels))
                if panels is None:
                    result.cancelled = True
                    return
                _keep(run, result, panels)
        return
    own_writes = share.folder is not None and share.sees_folder()
    if share.writes and share.folder is not None and not own_writes:
        result.warnings.append(NOT_SHARED)
    identity = [(number, batch) for number, batch in enumerate(run.plan) if batch.kind == "identity"]
    reads = [(number, batch) for number, batch in enumerate(run.plan) if batch.kind != "identity"]
    stopped = False
    for number, batch in identity:
        if not share.writes:
            run.remember(batch)
        elif not stopped:
            panels = _drawn(draw_batch, run, number, batch, len(result.panels))
            stopped = panels is None
            _keep(run, result, panels or [])
    if share.any_process(stopped or is_cancelled(run.cancel)):
        result.cancelled = True
        return
    share.share_bank(run.bank)
    for start in range(0, len(reads), share.world):
        mine = [
            (n, b)
            for position, (n, b) in enumerate(reads[start : start + share.world])
            if share.draws(start + position)
        ]
        panels: list[PanelImage] = []
        for number, batch in mine:
            drawn = None if stopped else _drawn(draw_batch, run, number, batch, len(result.panels))
            stopped = drawn is None
            panels += drawn or []
        kept, stopped = share.gather_panels(panels, written=own_writes, stopped=stopped)
        _keep(run, result, kept, share.record if own_writes else None)
        if stopped:
            result.cancelled = True
            return


def _drawn(draw_batch: Callable, run: Any, number: int, batch: Any, done: int) -> list[PanelImage] | None:
    """A batch's finished panels (its bank entries remembered), or None when the run was cancelled during it."""
    try:
        images, subject = draw_batch(number, batch, done)
    except GenerationCancelled:
        return None
    run.remember(batch)
    return run.finished_panels(batch, images, subject)


def _keep(run: Any, result: Any, panels: list[PanelImage], record: Callable | None = None) -> None:
    """Panels into the result, and to ``on_panel`` (which writes them), or to ``record`` when they are written."""
    for panel in panels:
        result.panels.append(panel)
        if record is not None:
            record(panel)
        elif run.on_panel is not None:
            run.on_panel(panel)


class NoWriter:
    """What the processes but the first write: nothing (the first one writes the folder)."""

    def start(self, result: Any) -> None:
        """Nothing to write."""

    def panel(self, panel: PanelImage) -> None:
        """Nothing to write."""


def command_line_share(args: Any) -> ProcessShare | None:
    """``generate`` launched as several processes: the others stay quiet and each uses its own GPU
    (any CUDA device named is this process's own; ``--device cpu`` keeps them all on gloo)."""
    share = process_share(cpu=str(args.device).startswith("cpu"))
    if share is None:
        return None
    if not share.writes:
        args.quiet = True
    if share.device.type == "cuda" and (args.device == "auto" or str(args.device).startswith("cuda")):
        args.device = str(share.device)
    return share
