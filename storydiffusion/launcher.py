"""``generate --devices 0,1,2,3`` (or ``cpu:N``): the same command again as one process per device.

The launching process checks the stories and options first (a bad input is one line and exit 2, as
without ``--devices``), then runs ``torch.distributed.run`` with the devices visible, passes Ctrl+C and
SIGTERM on to it, and exits with the first process's own exit code (torchrun's would be 1 for any stop).
GPU numbers are read through an inherited ``CUDA_VISIBLE_DEVICES``, as a scheduler hands them out.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from .errors import SettingsError, shown
from .structured import plain_digits

MAX_PROCESSES = 64
EXIT_FILE_ENV = "STORYDIFFUSION_EXIT_FILE"  # where each process leaves its exit code (``.RANK``) for the launcher


def devices_value(text: str) -> tuple[int, str]:
    """``--devices 0,1,2,3`` (one process per GPU) or ``cpu:N`` (N processes on the CPU): the number of
    processes and the GPU numbers (empty for the CPU). ValueError says what is accepted."""
    text = text.strip()
    if text.startswith("cpu:") and plain_digits(text[4:]) and len(text) <= 8 and 1 <= int(text[4:]) <= MAX_PROCESSES:
        return int(text[4:]), ""
    parts = [part.strip() for part in text.split(",")]
    if (
        parts
        and all(plain_digits(part) and len(part) <= 4 for part in parts)
        and len(set(parts)) == len(parts) <= MAX_PROCESSES
    ):
        return len(parts), ",".join(parts)
    raise ValueError(f"expected GPU numbers such as 0,1,2,3 or cpu:N (N from 1 to {MAX_PROCESSES}), got {shown(text)}")


def visible_devices(numbers: str, inherited: str | None, count: int) -> str:
    """The CUDA_VISIBLE_DEVICES for GPU ``numbers`` (counted among the ``count`` GPUs this process sees,
    which are ``inherited`` when a scheduler set them); SettingsError for a GPU that is not there."""
    seen = [part.strip() for part in inherited.split(",")] if inherited else [str(n) for n in range(count)]
    seen = seen[:count]
    missing = [n for n in numbers.split(",") if int(n) >= len(seen)]
    if missing:
        raise SettingsError(
            f"--devices {numbers}: this machine shows {len(seen)} GPU(s) (numbered from 0), so there is no GPU {missing[0]}"
        )
    return ",".join(seen[int(n)] for n in numbers.split(","))


def launch_processes(argv: list[str], devices: str) -> int:
    """Run this ``generate`` again as one process per device under ``torch.distributed.run``; the first
    process's exit code, or the first other one's that failed (a process drawing stories of its own), 130
    when stopped."""
    count, numbers = devices_value(devices)
    visible = ""
    if numbers:
        import torch

        visible = visible_devices(numbers, os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count())
    rest = [a for i, a in enumerate(argv) if a != "--devices" and (i == 0 or argv[i - 1] != "--devices")]
    rest = [a for a in rest if not a.startswith("--devices=")]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={count}"]
    command += ["-m", "storydiffusion", *rest]
    with tempfile.TemporaryDirectory(prefix="storydiffusion-launch-") as folder:
        exit_file = Path(folder) / "exit-code"
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, EXIT_FILE_ENV: str(exit_file)}
        child = subprocess.Popen(command, env=env)
        code = _wait_passing_signals(child)
        recorded = [_read_code(Path(f"{exit_file}.{rank}")) for rank in range(count)]
    if any(found is None for found in recorded):  # a process that was killed leaves no code: torchrun's says so
        return 130 if code < 0 else code or 1
    return next((found for found in recorded if found != 0), 0)


def _read_code(path: Path) -> int | None:
    text = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    return int(text) if plain_digits(text.lstrip("-")) and len(text) <= 12 else None


def _wait_passing_signals(child: subprocess.Popen) -> int:
    """Wait for ``child``, passing SIGINT and SIGTERM on to it (torchrun stops its workers cleanly)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return child.wait()
    passed = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in passed:
        signal.signal(sig, lambda signum, frame: child.send_signal(signum))
    try:
        return child.wait()
    finally:
        for sig, handler in passed.items():
            signal.signal(sig, handler)


def record_exit(code: int) -> None:
    """In a process of a ``--devices`` launch: leave ``code`` for the launcher to exit with."""
    path = os.environ.get(EXIT_FILE_ENV)
    if path:
        Path(f"{path}.{os.environ.get('RANK', '0')}").write_text(str(code), encoding="utf-8")


def in_process_group() -> bool:
    """Whether this process is one of several launched together that has used torch.distributed."""
    return os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1") and "torch.distributed" in sys.modules


def leave_process_group(code: int) -> NoReturn:
    """End one of several processes with ``code``, its work done and its process group released: the output
    flushed, then ``os._exit``, skipping the interpreter's teardown. There, gloo's threads have aborted a
    finished process (SIGABRT), and torchrun then printed a failure under the run's own one-line message."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code)


def launched_by_us() -> bool:
    """Whether this process is one of those a ``--devices`` launch started."""
    return bool(os.environ.get(EXIT_FILE_ENV)) and "WORLD_SIZE" in os.environ
