"""Checks on an uploaded ZIP before any member is read, and reading members with a cap.

A project file may come from a stranger (the web app's upload). Its entry count, declared sizes,
compression ratios, names and file types are checked from the central directory first; members are
then read with a cap and their real size compared with the declared one, so neither a ZIP bomb, a
header that lies, a crafted name nor a link can fill the memory or the disk or reach outside.
"""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from .errors import ProjectError

__all__ = ["CHUNK_BYTES", "RATIO_FREE_BYTES", "check_archive", "copy_member", "read_member"]

CHUNK_BYTES = 2**20
RATIO_FREE_BYTES = 2**20  # a member smaller than this cannot be a bomb, whatever its ratio
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_archive(
    archive: zipfile.ZipFile, label: str, *, max_entries: int, max_total_bytes: int, max_ratio: float
) -> dict[str, zipfile.ZipInfo]:
    """The members by name, once the archive as a whole and every member's header pass the checks.

    ``label`` names the upload in messages (its base name: never a server path).
    """
    infos = archive.infolist()
    if len(infos) > max_entries:
        raise ProjectError(
            f"{label} holds {len(infos):,} entries, more than the {max_entries:,} a project file may have"
        )
    total = sum(info.file_size for info in infos)
    if total > max_total_bytes:
        raise ProjectError(
            f"{label} unpacks to {_size(total)}, more than the {_size(max_total_bytes)} a project file may hold"
        )
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        _check_entry(info, label, max_ratio)
        if info.filename in members:
            raise ProjectError(f"{label}: the entry {info.filename!r} is there twice: the file is not a project file")
        members[info.filename] = info
    return members


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, max_bytes: int) -> bytes:
    """The member's bytes, never more than ``max_bytes`` of them whatever its header says."""
    return b"".join(_chunks(archive, info, label, max_bytes))


def copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: BinaryIO, label: str, max_bytes: int) -> None:
    """Stream the member into ``target`` (it may be GBs), with the same cap as ``read_member``."""
    for chunk in _chunks(archive, info, label, max_bytes):
        target.write(chunk)


def _check_entry(info: zipfile.ZipInfo, label: str, max_ratio: float) -> None:
    name = info.filename
    where = f"{label}: the entry {name!r}"
    if not name or name.startswith("/") or _DRIVE.match(name) or "\\" in name or "\0" in name:
        raise ProjectError(f"{where} has an absolute or malformed name: the file is not a project file")
    if ".." in name.split("/"):
        raise ProjectError(f"{where} points outside the archive ('..'): the file is not a project file")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise ProjectError(f"{where} is a symbolic link: a project file holds plain files only")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ProjectError(f"{where} is not a plain file: a project file holds plain files only")
    if info.flag_bits & 0x1:
        raise ProjectError(f"{where} is encrypted: a project file is never encrypted")
    if info.file_size > RATIO_FREE_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
        raise ProjectError(
            f"{where} would unpack {info.file_size / max(info.compress_size, 1):,.0f} times larger than it is "
            f"stored (at most {max_ratio:g} times): refused as a ZIP bomb"
        )


def _chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, max_bytes: int) -> Iterator[bytes]:
    """The member in chunks; its real size is checked against the cap and the size its header declares."""
    where = f"{label}: the entry {info.filename!r}"
    if info.file_size > max_bytes:
        raise ProjectError(f"{where} unpacks to {_size(info.file_size)}, more than the {_size(max_bytes)} allowed")
    count = 0
    try:
        with archive.open(info) as source:
            while chunk := source.read(CHUNK_BYTES):
                count += len(chunk)
                if count > max_bytes or count > info.file_size:
                    raise ProjectError(f"{where} holds more data than its header declares: the file is damaged")
                yield chunk
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError, OSError) as error:
        raise ProjectError(f"{where} cannot be read: the file is damaged ({' '.join(str(error).split())})") from None
    if count != info.file_size:
        raise ProjectError(
            f"{where} holds {count:,} bytes, not the {info.file_size:,} its header declares: the file is damaged"
        )


def _size(count: int) -> str:
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count:,} bytes"
