"""Hostile project uploads: bombs, crowds of entries, lying headers, escaping names and links.

Each is refused with a ProjectError that names the upload by its base name and the entry, before
any member is unpacked: the temporary folder stays empty and the upload itself is left as it was.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import tempfile
import zipfile

import pytest
from file_helpers import png_header_only
from PIL import Image

from storydiffusion.errors import ProjectError
from storydiffusion.project import (
    MAX_PROJECT_PANELS,
    MAX_PROJECT_PHOTOS,
    Project,
    ProjectLimits,
    load_project,
    save_project,
)
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text

UPLOAD = "holiday.storydiffusion.zip"


def project_members(tmp_path) -> dict[str, bytes]:
    """The members of a real two-panel project file, to tamper with."""
    story = story_from_text("[Bob] a man", "[Bob] walks\n[Bob] waves", settings=GenerationSettings(steps=3))
    panels = {i: Image.new("RGB", (32, 32), (90 * i, 60, 30)) for i in range(2)}
    path = save_project(Project(story, story.settings, "tiny-sdxl", panels, {0: 1, 1: 2}), tmp_path / "good.zip")
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zipped(members: dict[str, bytes | zipfile.ZipInfo], extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for info, data in extra:
            archive.writestr(info, data)
    return buffer.getvalue()


def declare_size(data: bytes, name: str, size: int) -> bytes:
    """The archive with the uncompressed size its central directory declares for ``name`` replaced."""
    start = data.find(b"PK\x01\x02")
    while start >= 0:
        length = struct.unpack_from("<H", data, start + 28)[0]
        if data[start + 46 : start + 46 + length] == name.encode():
            return data[: start + 24] + struct.pack("<I", size) + data[start + 28 :]
        start = data.find(b"PK\x01\x02", start + 4)
    raise AssertionError(f"{name} is not in the archive")


def symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.fixture
def upload(tmp_path, monkeypatch):
    """Write an upload under a server-like folder; loading it must unpack nothing anywhere."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    folder = tmp_path / "gradio" / "0123abcd"
    folder.mkdir(parents=True)

    def refuse(data: bytes, *words: str, limits: ProjectLimits | None = None) -> str:
        path = folder / UPLOAD
        path.write_bytes(data)
        with pytest.raises(ProjectError) as caught:
            load_project(path, limits)
        message = str(caught.value)
        assert message.startswith(UPLOAD) and str(folder) not in message and "\n" not in message, message
        for word in words:
            assert word in message, message
        assert path.read_bytes() == data and list(scratch.iterdir()) == []
        return message

    return refuse


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path, upload):
    members = project_members(tmp_path)
    upload(zipped({**members, "panels/panel_001.png": b"\0" * 8 * 2**20}), "'panels/panel_001.png'", "ZIP bomb")
    upload(zipped({**members, "padding.bin": b"\0" * 8 * 2**20}), "'padding.bin'", "ZIP bomb")


def test_too_many_entries_are_refused_before_any_is_read(tmp_path, upload):
    members = project_members(tmp_path)
    allowed = ProjectLimits().max_entries  # a panel and a control image per panel, the photos, json, bank, folders
    assert allowed == 2 * MAX_PROJECT_PANELS + MAX_PROJECT_PHOTOS + 5
    crowd = {f"panels/x{i}.png": b"" for i in range(allowed - len(members) + 1)}
    upload(zipped({**members, **crowd}), f"{allowed + 1:,} entries", f"more than the {allowed:,}")
    small = ProjectLimits(max_panels=1).max_entries
    extra = {f"{k}.txt": b"" for k in range(small - len(members) + 1)}
    upload(
        zipped({**members, **extra}),
        f"{small + 1} entries",
        f"more than the {small}",
        limits=ProjectLimits(max_panels=1),
    )
    upload(zipped(members), "project.json", "2 panels", "more than the 1", limits=ProjectLimits(max_panels=1))


def test_a_total_size_over_the_limit_is_refused(tmp_path, upload):
    members = project_members(tmp_path)
    data = zipped({**members, "notes.bin": bytes(range(256)) * 4096})
    upload(data, "unpacks to", "more than the 524,288 bytes", limits=ProjectLimits(max_total_bytes=2**19))
    upload(
        declare_size(data, "notes.bin", 2**32 - 1), "unpacks to 4.0 GiB", limits=ProjectLimits(max_total_bytes=2**30)
    )


@pytest.mark.parametrize(
    "name", ["../evil.png", "panels/../../evil.png", "/etc/cron.d/evil", "C:/evil.png", "panels\\..\\evil.png"]
)
def test_names_that_escape_the_archive_are_refused(name, tmp_path, upload):
    upload(zipped({**project_members(tmp_path), name: b"x"}), repr(name))


def test_a_symbolic_link_is_refused_even_under_a_panel_name(tmp_path, upload):
    members = project_members(tmp_path)
    del members["panels/panel_002.png"]
    upload(zipped(members, [(symlink("panels/panel_002.png"), b"/etc/passwd")]), "'panels/panel_002.png'", "link")


def test_a_duplicate_entry_is_refused(tmp_path, upload):
    members = project_members(tmp_path)
    with pytest.warns(UserWarning, match="Duplicate name"):
        data = zipped(members, [("panels/panel_001.png", members["panels/panel_002.png"])])
    upload(data, "'panels/panel_001.png'", "twice")


def test_a_panel_over_the_pixel_limit_is_refused_before_decoding(tmp_path, upload):
    members = project_members(tmp_path)
    upload(
        zipped({**members, "panels/panel_002.png": png_header_only(100_000, 100_000)}),
        "panels/panel_002.png",
        "refused before decoding",
    )
    upload(zipped(members), "panels/panel_001.png", "32 x 32", limits=ProjectLimits(max_image_pixels=1000))


def test_a_project_json_whose_header_lies_about_its_size_is_refused(tmp_path, upload):
    members = project_members(tmp_path)
    data = zipped(members)
    real = len(members["project.json"])
    upload(declare_size(data, "project.json", 40), "'project.json'", "damaged")
    upload(declare_size(data, "project.json", real + 1000), "'project.json'", f"not the {real + 1000:,}", "damaged")


def test_a_project_json_over_its_cap_is_refused_before_it_is_read(tmp_path, upload):
    members = project_members(tmp_path)
    document = json.loads(members["project.json"])
    padded = json.dumps({**document, "padding": "x" * 4096})
    upload(
        zipped({**members, "project.json": padded}),
        "'project.json'",
        "more than the 1,024 bytes",
        limits=ProjectLimits(max_json_bytes=1024),
    )


def test_the_same_upload_loads_with_the_default_limits(tmp_path):
    """The cases above are refused for what they are, not because every upload is."""
    path = tmp_path / UPLOAD
    path.write_bytes(zipped(project_members(tmp_path)))
    assert sorted(load_project(path).panels) == [0, 1]
