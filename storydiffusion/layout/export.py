"""Pages out in the formats comic readers use: PNG files, one PDF, a CBZ with ComicInfo.xml, a ZIP of panels.

Every file is built in memory and written with ``atomic_write_bytes`` (temporary name, then
rename), so a reader or an interrupted run never sees half a comic. Archives are reproducible:
fixed entry dates, pages in order.
"""

from __future__ import annotations

import io
import os
import unicodedata
import warnings
import zipfile
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from xml.etree import ElementTree

from PIL import Image

from ..atomic import atomic_write_bytes, temporary_name
from ..invisible import TEXT_REORDERING
from . import LayoutError

__all__ = [
    "EXPORTS",
    "comic_info_xml",
    "metadata_text",
    "encode_png",
    "page_filename",
    "page_filenames",
    "write_cbz",
    "write_panels_zip",
    "write_pages_png",
    "write_pdf",
]

EXPORTS = ("png", "pdf", "cbz", "zip")
PageData = Image.Image | bytes
PDF_JPEG_QUALITY = 92  # Pillow stores RGB pages in a PDF as JPEG; 92 keeps lettering edges clean
# zlib level 3 encodes comic pages about 40 % faster than Pillow's default 6 for a few % more bytes:
# PNG encoding is the slowest step of composing (benchmarks/RESULTS.md).
PNG_COMPRESS_LEVEL = 3
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def metadata_text(text: str) -> str:
    """Text that every metadata format holds: control characters and what XML 1.0 cannot carry
    (NUL, lone surrogates, U+FFFE/U+FFFF) become spaces, runs of spaces one. ElementTree escapes
    ``<`` and ``&`` itself; the characters removed here it would write as they are, breaking the file."""
    cleaned = "".join(" " if _unprintable(ch) else ch for ch in str(text))
    return " ".join(cleaned.split())


def _unprintable(ch: str) -> bool:
    """Control characters, lone surrogates, non-characters, and the invisible controls that reorder text (a title
    "Safe \u202eexe.fdp" would show in a reader's list as another name)."""
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in ("\ufffe", "\uffff") or ch in TEXT_REORDERING


def encode_png(page: PageData) -> bytes:
    """PNG bytes of a page (pages given as bytes are taken as already encoded)."""
    if isinstance(page, (bytes, bytearray)):
        return bytes(page)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _size(page: PageData) -> tuple[int, int]:
    if isinstance(page, (bytes, bytearray)):
        with _open_own(page) as image:
            return image.size
    return page.size


def _image(page: PageData) -> Image.Image:
    if isinstance(page, (bytes, bytearray)):
        with _open_own(page) as image:
            image.load()
            return image.convert("RGB") if image.mode != "RGB" else image.copy()
    return page


def _open_own(page: bytes) -> Image.Image:
    """A page this tool just drew, opened again: within MAX_PAGE_PIXELS, which is past the pixel count where
    Pillow warns of a decompression bomb (a page at 1200 dpi is), so the warning would only be noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(page))


def page_filename(index: int, total: int) -> str:
    """``page_01.png`` for the first page; more digits when there are over 99 pages, so names sort."""
    return f"page_{index + 1:0{max(2, len(str(total)))}d}.png"


def page_filenames(total: int) -> list[str]:
    return [page_filename(i, total) for i in range(total)]


def write_pages_png(
    pages: Sequence[PageData], directory: str | os.PathLike, earlier: Collection[str] = ()
) -> list[Path]:
    """``page_01.png`` … in ``directory``. Of the files there, only pages an earlier composition wrote
    (``earlier``, as its ``pages.json`` records them) and not written again go, and the temporaries of those
    pages and of these (an interrupted write's): a user's own ``page_99.png`` or ``.page_07.tmp.png`` stays."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    names = page_filenames(len(pages))
    paths = []
    for name, page in zip(names, pages):
        atomic_write_bytes(folder / name, encode_png(page))
        paths.append(folder / name)
    keep = set(names)
    temporaries = {temporary_name(Path(name)).name for name in [*earlier, *names]}
    for old in folder.iterdir():
        ours = old.name in earlier or old.name in temporaries
        if old.name not in keep and ours and old.is_file() and not old.is_symlink():
            old.unlink()
    return paths


def write_pdf(pages: Sequence[PageData], path: str | os.PathLike, dpi: int, *, title: str | None = None) -> Path:
    """One PDF, one page per image; each page's size in points is pixels / dpi * 72, as printed."""
    if not pages:
        raise ValueError("a PDF needs at least one page")
    images = [_image(p) for p in pages]
    buffer = io.BytesIO()
    extra = {"title": metadata_text(title)} if title and metadata_text(title) else {}
    try:
        images[0].save(
            buffer,
            format="PDF",
            save_all=True,
            append_images=images[1:],
            resolution=float(dpi),
            quality=PDF_JPEG_QUALITY,
            creator="StoryDiffusion studio",
            **extra,
        )
    except OSError as error:  # written to memory: the encoder's failure, never the path's
        largest = max(images, key=lambda image: image.width * image.height)
        raise LayoutError(
            f"the PDF could not be encoded ({error}; its largest page is {largest.width:,} x {largest.height:,} "
            "pixels): use smaller pages, or export the PNG pages or the CBZ instead"
        ) from None
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def comic_info_xml(
    title: str,
    page_sizes: Sequence[tuple[int, int]],
    manga: bool,
    *,
    page_bytes: Sequence[int] | None = None,
    characters: Iterable[str] = (),
    summary: str | None = None,
) -> bytes:
    """ComicInfo.xml (ComicRack schema, v2.0 element order): what comic readers show and use.

    ``Manga`` is ``YesAndRightToLeft`` for right-to-left pages, which makes readers turn pages
    that way; ``Pages`` lists each image with its size.
    """
    root = ElementTree.Element(
        "ComicInfo",
        {"xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance", "xmlns:xsd": "http://www.w3.org/2001/XMLSchema"},
    )

    def add(tag: str, text: str) -> None:
        ElementTree.SubElement(root, tag).text = metadata_text(text)

    add("Title", title)
    if summary:
        add("Summary", summary)
    add("Notes", "Composed with StoryDiffusion studio")
    add("PageCount", str(len(page_sizes)))
    add("Manga", "YesAndRightToLeft" if manga else "No")
    names = [n for n in characters if n]
    if names:
        add("Characters", ", ".join(names))
    pages = ElementTree.SubElement(root, "Pages")
    for i, (w, h) in enumerate(page_sizes):
        attributes = {"Image": str(i), "ImageWidth": str(w), "ImageHeight": str(h)}
        if i == 0:
            attributes["Type"] = "FrontCover"
        if page_bytes is not None:
            attributes["ImageSize"] = str(page_bytes[i])
        ElementTree.SubElement(pages, "Page", attributes)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _zip_entry(archive: zipfile.ZipFile, name: str, data: bytes, compress: bool) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


def write_cbz(
    pages: Sequence[PageData],
    path: str | os.PathLike,
    title: str,
    manga: bool,
    *,
    characters: Iterable[str] = (),
) -> Path:
    """A comic book archive: ``ComicInfo.xml`` then ``page_01.png`` … (stored: PNG is compressed already)."""
    if not pages:
        raise ValueError("a CBZ needs at least one page")
    encoded = [encode_png(p) for p in pages]
    sizes = [_size(p) for p in encoded]
    info = comic_info_xml(title, sizes, manga, page_bytes=[len(b) for b in encoded], characters=characters)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _zip_entry(archive, "ComicInfo.xml", info, compress=True)
        for name, data in zip(page_filenames(len(encoded)), encoded):
            _zip_entry(archive, name, data, compress=False)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def write_panels_zip(panel_paths: Sequence[str | os.PathLike], path: str | os.PathLike) -> Path:
    """The panel images as generated, by their file names, for sharing or editing elsewhere."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for panel in panel_paths:
            panel = Path(panel)
            _zip_entry(
                archive,
                f"panels/{panel.name}",
                panel.read_bytes(),
                compress=panel.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"),
            )
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
