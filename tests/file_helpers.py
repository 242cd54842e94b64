"""What the hostile-input tests share: snapshots of a folder, the CLI's one-line error, crafted files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from storydiffusion.atomic import write_json
from storydiffusion.rundir import MANIFEST_FORMAT


def snapshot(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` and its bytes, to prove a failed command left them as they were."""
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def one_line_error(capsys) -> str:
    """The CLI's stderr, which must be one ``error: ...`` line and no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def write_recorded_run(out: Path) -> Path:
    """An earlier run as its records show it (no model needed), beside a file of the user's."""
    (out / "panels").mkdir(parents=True)
    (out / "panels" / "panel_001.png").write_bytes(b"an earlier panel")
    write_json(out / "story.json", {"format": MANIFEST_FORMAT, "panels": [{"file": "panels/panel_001.png"}]})
    (out / "notes.txt").write_text("the user's own notes")
    return out


def png_header_only(width: int, height: int) -> bytes:
    """A few bytes of PNG whose header claims ``width`` x ``height``: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    )
