"""The one way this tool writes a file: to a temporary name beside it, then renamed into place.

Readers (and a run that is interrupted half-way) never see half a file: the target is either its
old complete self or the new complete file. Every writer in the package goes through here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "interrupts_deferred", "temporary_name", "write_json", "write_png"]

TEMPORARY_MARK = ".tmp"


def temporary_name(path: Path) -> Path:
    """``.page_01.tmp.png`` for ``page_01.png``: hidden, recognisable, and with the same suffix,
    so writers that choose a format by suffix (ffmpeg, Pillow) still choose the right one."""
    return path.with_name(f".{path.stem}{TEMPORARY_MARK}{path.suffix}")


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl+C and SIGTERM wait until the block is done, so a file and the record naming it are written
    together: a run stopped there stops just after, never between the two.

    The handlers are swapped for ones that only note the signal (a signal mask would not do: the
    kernel hands a process signal to any thread that does not block it, and torch starts many).
    Python runs handlers only in the main thread, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    deferred = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda number, _frame: caught.append(number)) for number in deferred}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write (a file or a whole folder); rename it over ``path`` on success.

    On an exception the temporary is removed and ``path`` is left exactly as it was. A folder
    replaces an existing folder of the same name only once it is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    _remove(temporary)
    try:
        yield temporary
        if temporary.is_dir() and path.is_dir():
            retired = path.with_name(f".{path.name}.old")
            _remove(retired)
            os.replace(path, retired)
            os.replace(temporary, path)
            _remove(retired)
        else:
            os.replace(temporary, path)
    finally:
        _remove(temporary)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Indented UTF-8 JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_png(image: Any, path: str | os.PathLike[str], compress_level: int = 6) -> None:
    """A Pillow image as PNG, atomically."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    atomic_write_bytes(path, buffer.getvalue())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
