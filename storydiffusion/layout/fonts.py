"""Font fallback chains: every character is drawn with the first bundled face that really has it.

One comic face cannot letter a Korean, Spanish or Russian story on its own, and a face that lacks a
glyph draws a box ("tofu").  A :class:`FontChain` asks each face's character map (read from the font
file once, with no dependency beyond Pillow) which characters it covers, splits text into runs of one
face each, measures them with real FreeType metrics and draws them on one shared baseline.

The bundled faces (see ``assets/fonts/README.md``) are all SIL Open Font License 1.1:

* Comic Neue: the comic lettering face for Latin text (Western and Central European accents);
* Noto Sans: Latin Extended, Greek and Cyrillic that Comic Neue lacks;
* NanumSquareRound: Hangul (all 11,172 syllables and the compatibility jamo) and CJK punctuation.
"""

from __future__ import annotations

import io
import math
import re
import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageDraw, ImageFont

from ..resources import data_path

__all__ = [
    "FONT_DIR",
    "FontChain",
    "FontFace",
    "LineMetrics",
    "default_font_chain",
    "read_cmap",
]

#: Where the bundled fonts and their licences live (``assets/fonts`` at the repository root).
FONT_DIR = data_path("assets", "fonts")

#: Bundled faces per weight, in fallback order: comic face, broad Latin/Greek/Cyrillic face, Hangul face.
#: Noto Sans comes before Nanum so Cyrillic and Greek get a Western design, not a CJK font's.
BUNDLED_FACES: dict[str, tuple[str, ...]] = {
    "bold": ("ComicNeue-Bold.otf", "NotoSans-Bold.ttf", "NanumSquareRoundB.ttf"),
    "regular": ("ComicNeue-Regular.otf", "NotoSans-Regular.ttf", "NanumSquareRoundR.ttf"),
}

# Characters used to measure how far real glyphs reach above and below the baseline.
_PROBE = "ÁÉÎÕÜÅÇgjpqy|()[]{}ЙЁщДЦ가힣뷁읗ΏΆ"
# Invisible characters: never need a glyph, never drawn.
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
# Stand-ins when no face has a character (the result is checked against the chain again).
_SUBSTITUTES = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": ",",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u00a0": " ",
    "\u3000": " ",
    "\u2022": "*",
    "\u00b7": "*",
}
# A line may not start with these: they stay with the character before them.
_NO_LINE_START = frozenset(",.;:!?)]}%\u2019\u201d\u00bb\u2026、。，．！？：；）」』】〉》〕｝～ー")
_SPACE = re.compile(r"[ \t\u00a0\u3000]+")


def read_cmap(data: bytes) -> frozenset[int]:
    """Code points that an OpenType/TrueType font maps to a real glyph (glyph id > 0).

    Reads the font's Unicode ``cmap`` subtables (formats 0, 4, 6, 12 and 13) with :mod:`struct`, so no
    font library beyond Pillow is needed at run time.  Raises ``ValueError`` for data that is not an
    sfnt font or has no Unicode character map.
    """
    if data[:4] == b"ttcf":  # a collection: use its first font
        (offset,) = struct.unpack_from(">I", data, 12)
    else:
        offset = 0
    if data[offset : offset + 4] not in (b"\x00\x01\x00\x00", b"OTTO", b"true"):
        raise ValueError("not an OpenType/TrueType font")
    (num_tables,) = struct.unpack_from(">H", data, offset + 4)
    cmap_at = None
    for i in range(num_tables):
        tag, _checksum, table_offset, _length = struct.unpack_from(">4sIII", data, offset + 12 + 16 * i)
        if tag == b"cmap":
            cmap_at = table_offset
    if cmap_at is None:
        raise ValueError("font has no cmap table")
    _version, count = struct.unpack_from(">HH", data, cmap_at)
    covered: set[int] = set()
    found = False
    for i in range(count):
        platform, encoding, sub_offset = struct.unpack_from(">HHI", data, cmap_at + 4 + 8 * i)
        unicode_table = platform == 0 or (platform == 3 and encoding in (1, 10))
        if not unicode_table:
            continue
        if _read_subtable(data, cmap_at + sub_offset, covered):
            found = True
    if not found:
        raise ValueError("font has no Unicode cmap subtable")
    return frozenset(covered)


def _read_subtable(data: bytes, at: int, covered: set[int]) -> bool:
    """Adds the code points of one cmap subtable to ``covered``; False for formats it cannot read."""
    (fmt,) = struct.unpack_from(">H", data, at)
    if fmt == 0:
        glyphs = data[at + 6 : at + 6 + 256]
        covered.update(c for c, g in enumerate(glyphs) if g)
    elif fmt == 4:
        seg_x2 = struct.unpack_from(">H", data, at + 6)[0]
        segs = seg_x2 // 2
        ends = struct.unpack_from(f">{segs}H", data, at + 14)
        starts = struct.unpack_from(f">{segs}H", data, at + 16 + seg_x2)
        deltas = struct.unpack_from(f">{segs}h", data, at + 16 + 2 * seg_x2)
        range_at = at + 16 + 3 * seg_x2
        range_offsets = struct.unpack_from(f">{segs}H", data, range_at)
        for s in range(segs):
            start, end, delta, ro = starts[s], ends[s], deltas[s], range_offsets[s]
            if start == 0xFFFF:
                continue
            for c in range(start, end + 1):
                if ro == 0:
                    glyph = (c + delta) & 0xFFFF
                else:
                    glyph_at = range_at + 2 * s + ro + 2 * (c - start)
                    glyph = struct.unpack_from(">H", data, glyph_at)[0] if glyph_at + 2 <= len(data) else 0
                    glyph = (glyph + delta) & 0xFFFF if glyph else 0
                if glyph:
                    covered.add(c)
    elif fmt == 6:
        first, n = struct.unpack_from(">HH", data, at + 6)
        glyph_ids = struct.unpack_from(f">{n}H", data, at + 10)
        covered.update(first + i for i, g in enumerate(glyph_ids) if g)
    elif fmt in (12, 13):
        (groups,) = struct.unpack_from(">I", data, at + 12)
        for g in range(groups):
            start, end, glyph = struct.unpack_from(">III", data, at + 16 + 12 * g)
            if fmt == 13 and glyph == 0:
                continue
            covered.update(range(start + (1 if fmt == 12 and glyph == 0 else 0), end + 1))
    else:
        return False
    return True


class FontFace:
    """One font file: its character coverage and its FreeType fonts by pixel size.

    The file is read once; fonts per size are kept on the instance (never module-wide), and use
    Pillow's basic layout so measuring and drawing agree on every machine, with or without libraqm.
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self._data = self.path.read_bytes()
        try:
            self._cmap: frozenset[int] | None = read_cmap(self._data)
        except (ValueError, struct.error):
            self._cmap = None  # unreadable map: fall back to comparing with the missing-glyph drawing
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._advances: dict[int, dict[str, float]] = {}
        self._rendered: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"FontFace({self.name!r})"

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        """The face at ``size`` pixels (kept for reuse by this face)."""
        size = max(1, int(size))
        font = self._fonts.get(size)
        if font is None:
            font = ImageFont.truetype(io.BytesIO(self._data), size, layout_engine=ImageFont.Layout.BASIC)
            self._fonts[size] = font
        return font

    def advance(self, text: str, size: int) -> float:
        """Advance width of ``text`` in this face: the sum of its characters' advances, each measured
        once per size.  Basic layout does not kern, so this equals Pillow's own measure (to a
        fraction of a pixel) at a fraction of its cost; wrapping measures text many times."""
        table = self._advances.setdefault(max(1, int(size)), {})
        total = 0.0
        for char in text:
            width = table.get(char)
            if width is None:
                width = table[char] = self.font(size).getlength(char)
            total += width
        return total

    def missing_glyph_mask(self, size: int = 32) -> tuple[tuple[int, int], bytes]:
        """What this face draws for a character it does not have (its ``.notdef`` glyph), as
        (size, mask bytes); the comparison baseline that proves a glyph is real."""
        return _mask(self.font(size), "\uffff")

    def has_glyph(self, char: str) -> bool:
        """Whether the face maps ``char`` to a real glyph (not ``.notdef``)."""
        if self._cmap is not None:
            return ord(char) in self._cmap
        known = self._rendered.get(char)
        if known is None:
            known = char.isspace() or _mask(self.font(32), char) != self.missing_glyph_mask(32)
            self._rendered[char] = known
        return known


def _mask(font: ImageFont.FreeTypeFont, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text, mode="L")
    return mask.size, bytes(mask)


@dataclass(frozen=True)
class LineMetrics:
    """Vertical metrics of one text line at one size, shared by all faces of a chain so runs in
    different faces sit on one baseline: ``ascent`` is the baseline's offset from the line top."""

    ascent: int
    descent: int
    height: int


class FontChain:
    """An ordered fallback list of faces: each character is drawn with the first face that has it.

    Characters no face has are replaced by a close stand-in (compatibility form, base letter without
    its accent, ASCII quote for a curly one) or left out, so no glyph is ever drawn as a box;
    :meth:`prepare` tells which ones were left out.
    """

    def __init__(self, faces: Sequence[FontFace], leading: float = 0.12) -> None:
        if not faces:
            raise ValueError("a FontChain needs at least one face")
        self.faces: tuple[FontFace, ...] = tuple(faces)
        self.leading = leading
        self._face_of: dict[str, FontFace | None] = {}
        self._metrics: dict[int, LineMetrics] = {}

    def __repr__(self) -> str:
        return f"FontChain({[f.name for f in self.faces]!r})"

    # ------------------------------------------------------------------------------ coverage

    def face_for(self, char: str) -> FontFace | None:
        """The first face with a real glyph for ``char``; None when no face has one."""
        if char in self._face_of:
            return self._face_of[char]
        face = next((f for f in self.faces if f.has_glyph(char)), None)
        if face is None and char.isspace():
            face = self.faces[0]  # spaces only need an advance width
        self._face_of[char] = face
        return face

    def covers(self, char: str) -> bool:
        """Whether some face of the chain has ``char``."""
        return char in _INVISIBLE or self.face_for(char) is not None

    def prepare(self, text: str) -> tuple[str, frozenset[str]]:
        """Text ready to letter, and the characters left out because no face has them.

        Unicode is composed (NFC) first so "n + combining tilde" becomes "ñ"; a character no face has
        is replaced by a stand-in the chain does have, else dropped (never drawn as a box).
        """
        out: list[str] = []
        missing: set[str] = set()
        for char in unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")):
            if char == "\n" or char == "\t":
                out.append(char if char == "\n" else " ")
            elif char in _INVISIBLE:
                continue
            elif self.face_for(char) is not None:
                out.append(char)
            else:
                stand_in = self._stand_in(char)
                if stand_in is None:
                    missing.add(char)
                else:
                    out.append(stand_in)
        return "".join(out), frozenset(missing)

    def _stand_in(self, char: str) -> str | None:
        candidates = [
            _SUBSTITUTES.get(char, ""),
            unicodedata.normalize("NFKC", char),
            "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)),
        ]
        for candidate in candidates:
            if candidate and candidate != char and all(self.face_for(c) is not None for c in candidate):
                return candidate
        if unicodedata.category(char).startswith("Z"):
            return " "
        return None

    def runs(self, text: str) -> list[tuple[FontFace, str]]:
        """``text`` split into runs of one face each; characters no face has are skipped."""
        runs: list[tuple[FontFace, str]] = []
        for char in text:
            if char in _INVISIBLE or char == "\n":
                continue
            face = self.face_for(char)
            if face is None:
                continue
            if char == " " and runs:
                face = runs[-1][0]  # a space joins the run before it: fewer, longer runs
            if runs and runs[-1][0] is face:
                runs[-1] = (face, runs[-1][1] + char)
            else:
                runs.append((face, char))
        return runs

    # ------------------------------------------------------------------------------ metrics

    def metrics(self, size: int) -> LineMetrics:
        """Line metrics at ``size``: how far real glyphs of every face reach above and below the
        baseline (measured on accented capitals, descenders, Cyrillic and Hangul), plus leading."""
        size = max(1, int(size))
        found = self._metrics.get(size)
        if found is None:
            up, down = 1, 0
            for face in self.faces:
                font = face.font(size)
                probe = "".join(c for c in _PROBE if face.has_glyph(c))
                if not probe:
                    continue
                left, top, right, bottom = font.getbbox(probe, anchor="ls")
                up, down = max(up, math.ceil(-top)), max(down, math.ceil(bottom))
            leading = max(1, round(size * self.leading))
            found = LineMetrics(ascent=up, descent=down, height=up + down + leading)
            self._metrics[size] = found
        return found

    def line_height(self, size: int) -> int:
        """Distance between the tops of two consecutive lines at ``size`` pixels."""
        return self.metrics(size).height

    def block_height(self, lines: int, size: int) -> int:
        """Height of ``lines`` lines of text: no leading after the last line."""
        if lines <= 0:
            return 0
        m = self.metrics(size)
        return lines * m.height - (m.height - m.ascent - m.descent)

    def text_width(self, text: str, size: int) -> int:
        """Advance width of ``text`` at ``size`` pixels, every character in its own face."""
        return math.ceil(sum(face.advance(run, size) for face, run in self.runs(text)))

    def ink_box(self, xy: tuple[float, float], text: str, size: int) -> tuple[int, int, int, int] | None:
        """Bounding box (left, top, right, bottom) of the pixels :meth:`draw_text` would touch;
        None for blank text."""
        x, baseline = xy[0], xy[1] + self.metrics(size).ascent
        box: list[float] | None = None
        for face, run in self.runs(text):
            font = face.font(size)
            if run.strip():
                left, top, right, bottom = font.getbbox(run, anchor="ls")
                part = [x + left, baseline + top, x + right, baseline + bottom]
                box = (
                    part
                    if box is None
                    else [min(box[0], part[0]), min(box[1], part[1]), max(box[2], part[2]), max(box[3], part[3])]
                )
            x += face.advance(run, size)
        if box is None:
            return None
        return (math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3]))

    # ------------------------------------------------------------------------------ drawing

    def draw_text(
        self,
        draw: ImageDraw.ImageDraw,
        xy: tuple[float, float],
        text: str,
        size: int,
        fill: str | int | tuple[int, ...] = "black",
    ) -> int:
        """Draws one line with its top-left corner at ``xy``; each run in its own face, all on the
        chain's baseline.  Returns the advance width drawn."""
        x, baseline = float(xy[0]), float(xy[1]) + self.metrics(size).ascent
        for face, run in self.runs(text):
            font = face.font(size)
            if run.strip():
                draw.text((x, baseline), run, font=font, fill=fill, anchor="ls")
            x += face.advance(run, size)
        return math.ceil(x - xy[0])

    # ------------------------------------------------------------------------------ wrapping

    def wrap(self, text: str, size: int, max_width: float) -> list[str]:
        """Word-wraps ``text`` into lines no wider than ``max_width`` at ``size`` (real metrics).

        Breaks at spaces; between CJK ideographs and kana, which need none; and inside a word only
        when the word alone is too wide (Hangul between syllables, Latin with a hyphen).  Explicit
        newlines are kept.  A single character wider than ``max_width`` still gets its own line:
        callers compare :meth:`text_width` with their box to know whether the text fits.
        """
        lines: list[str] = []
        for paragraph in text.split("\n"):
            lines.extend(self._wrap_paragraph(paragraph, size, max_width))
        while lines and not lines[-1]:
            lines.pop()
        while lines and not lines[0]:
            lines.pop(0)
        return lines

    def _wrap_paragraph(self, paragraph: str, size: int, max_width: float) -> list[str]:
        lines: list[str] = []
        line = ""
        for token, spaced in _tokens(paragraph):
            candidate = f"{line} {token}" if (line and spaced) else line + token
            if self.text_width(candidate, size) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            if self.text_width(token, size) <= max_width:
                line = token
            else:
                pieces = self._break_word(token, size, max_width)
                lines.extend(pieces[:-1])
                line = pieces[-1]
        if line or not lines:
            lines.append(line)
        return lines

    def _break_word(self, word: str, size: int, max_width: float) -> list[str]:
        """Splits a word too wide for one line; Latin pieces end with a hyphen when one fits."""
        pieces: list[str] = []
        rest = word
        while rest and self.text_width(rest, size) > max_width:
            n = 1
            while n < len(rest) and self.text_width(rest[: n + 1], size) <= max_width:
                n += 1
            # Keep closing punctuation with the character before it.
            while 1 < n < len(rest) and rest[n] in _NO_LINE_START:
                n -= 1
            piece = rest[:n]
            if (
                n < len(rest)
                and piece[-1].isalpha()
                and rest[n].isalpha()
                and not _is_cjk(piece[-1])
                and self.face_for("-") is not None
            ):
                while len(piece) > 1 and self.text_width(piece + "-", size) > max_width:
                    piece = piece[:-1]
                if len(piece) > 1 or self.text_width(piece + "-", size) <= max_width:
                    n = len(piece)
                    piece += "-"
            pieces.append(piece)
            rest = rest[n:]
        pieces.append(rest)
        return pieces


def _is_cjk(char: str) -> bool:
    """Ideographs, kana and Hangul: scripts where a word may break between characters."""
    o = ord(char)
    return (
        0x1100 <= o <= 0x11FF
        or 0x2E80 <= o <= 0x9FFF
        or 0xA960 <= o <= 0xA97F
        or 0xAC00 <= o <= 0xD7FF
        or 0xF900 <= o <= 0xFAFF
        or 0xFF00 <= o <= 0xFFEF
        or 0x20000 <= o <= 0x3FFFF
    )


def _breaks_anywhere(char: str) -> bool:
    """Han and kana break between any two characters (Hangul words use spaces instead)."""
    o = ord(char)
    return 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3FFFF


def _tokens(paragraph: str) -> list[tuple[str, bool]]:
    """Break units of a paragraph as (token, preceded by a space)."""
    tokens: list[tuple[str, bool]] = []
    for w, word in enumerate(t for t in _SPACE.split(paragraph) if t):
        spaced = w > 0
        current = ""
        for char in word:
            if current and (_breaks_anywhere(char) or _breaks_anywhere(current[-1])) and char not in _NO_LINE_START:
                tokens.append((current, spaced))
                spaced = False
                current = char
            else:
                current += char
        if current:
            tokens.append((current, spaced))
    return tokens


def default_font_chain(weight: str = "bold", font_dir: str | Path | None = None) -> FontChain:
    """The bundled chain for ``weight`` ("bold" for speech and titles, "regular" for captions):
    Comic Neue, then Noto Sans (Latin Extended, Greek, Cyrillic), then NanumSquareRound (Hangul)."""
    try:
        names = BUNDLED_FACES[weight]
    except KeyError:
        raise ValueError(f"unknown font weight {weight!r}; use one of {sorted(BUNDLED_FACES)}") from None
    folder = Path(font_dir) if font_dir is not None else FONT_DIR
    return FontChain([FontFace(folder / name) for name in names])
