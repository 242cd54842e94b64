"""Font fallback chains: every character is drawn with the first bundled face that really has it.

One comic face cannot letter a Korean, Spanish or Russian story on its own, and a face that lacks a
glyph draws a box ("tofu"). A :class:`FontChain` asks each face's character map (read once with
fontTools) which characters it covers, splits text into runs of one face each, measures them with
real FreeType metrics and draws them on one shared baseline.

The bundled faces (see ``assets/fonts/README.md``), under the SIL Open Font License 1.1 but the last:

* Comic Neue: the comic lettering face for Latin text (Western and Central European accents);
* Noto Sans: Latin Extended, Greek and Cyrillic that Comic Neue lacks;
* Noto Sans Hebrew and Noto Sans Arabic: Hebrew, and Arabic (with Persian and Urdu letters);
* Noto Sans Devanagari, Bengali and Tamil: Hindi, Marathi, Nepali, Bengali, Assamese and Tamil;
* NanumSquareRound: Hangul (all 11,172 syllables and the compatibility jamo), kana and CJK punctuation;
* Droid Sans Fallback (Apache License 2.0): Chinese characters, the 20,902 unified ideographs.

A line holding Hebrew or Arabic is drawn in the order ``bidi`` resolves; its right-to-left runs, and the runs of
faces for scripts whose letters change with their neighbours (``COMPLEX_SCRIPTS``), are laid out by libraqm
(bundled with Pillow's wheels): Arabic letters join, Indic consonants form conjuncts and vowel signs find
their place. Other runs use Pillow's basic layout, measured a character at a time (much faster).
"""

from __future__ import annotations

import copy
import functools
import io
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import ImageDraw, ImageFont, features

from ...invisible import is_invisible
from ...resources import data_path
from .bidi import RIGHT_TO_LEFT_MARK, drawing_order, paragraph_direction
from .coverage import COMPLEX_SCRIPTS, STAND_INS, read_cmap
from .linebreak import wrap_text

__all__ = [
    "BUNDLED_FACES",
    "FONT_DIR",
    "FontChain",
    "FontFace",
    "LineMetrics",
    "default_font_chain",
    "read_cmap",
]

#: Where the bundled fonts and their licences live (``assets/fonts`` at the repository root).
FONT_DIR = data_path("assets", "fonts")

#: Bundled faces per weight, in fallback order: comic face, broad Latin/Greek/Cyrillic face, Hebrew, Arabic and Indic
#: faces, Hangul face, Chinese characters face. Noto Sans comes before the CJK faces so Cyrillic and Greek get a
#: Western design; Nanum before Droid Sans Fallback (one weight, a few Hangul syllables of its own) so all Hangul
#: is Nanum's.
BUNDLED_FACES: dict[str, tuple[str, ...]] = {
    weight: (
        f"ComicNeue-{weight.title()}.otf",
        f"NotoSans-{weight.title()}.ttf",
        f"NotoSansHebrew-{weight.title()}.ttf",
        f"NotoSansArabic-{weight.title()}.ttf",
        f"NotoSansDevanagari-{weight.title()}.ttf",
        f"NotoSansBengali-{weight.title()}.ttf",
        f"NotoSansTamil-{weight.title()}.ttf",
        f"NanumSquareRound{weight[0].upper()}.ttf",
        "DroidSansFallbackFull.ttf",
    )
    for weight in ("bold", "regular")
}
#: Whether Pillow has libraqm, which shapes right-to-left runs (joined Arabic letters, mirrored brackets) and
#: the runs of faces for scripts that need it. Without it a right-to-left run is drawn as its characters
#: reversed (Hebrew reads right; Arabic letters stay unjoined, Indic vowel signs unplaced).
SHAPING = features.check_feature("raqm")

# Characters used to measure how far real glyphs reach above and below the baseline.
_PROBE = "ÁÉÎÕÜÅÇgjpqy|()[]{}ЙЁщДЦ가힣뷁읗ΏΆלךףשׁإأكجيـकिंॉुৃீ"


class FontFace:
    """One font file: its character coverage and its FreeType fonts by pixel size.

    The file is read once; fonts per size are kept on the instance (never module-wide), and use
    Pillow's basic layout so measuring and drawing agree on every machine, with or without libraqm.
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self._fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._shaped_fonts: dict[int, ImageFont.FreeTypeFont] = {}
        self._advances: dict[int, dict[str, float]] = {}
        self._rendered: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"FontFace({self.name!r})"

    # The file is read at first use: a fallback face that a story's text never reaches (4 MB of Chinese
    # characters for an English story) costs nothing.
    @functools.cached_property
    def _data(self) -> bytes:
        return self.path.read_bytes()

    @functools.cached_property
    def _cmap(self) -> frozenset[int] | None:
        """The code points with a real glyph; None for an unreadable map (then glyphs are compared with the
        missing-glyph drawing)."""
        try:
            return read_cmap(self._data)
        except ValueError:
            return None

    def font(self, size: int) -> ImageFont.FreeTypeFont:
        """The face at ``size`` pixels (kept for reuse by this face)."""
        size = max(1, int(size))
        font = self._fonts.get(size)
        if font is None:
            font = ImageFont.truetype(io.BytesIO(self._data), size, layout_engine=ImageFont.Layout.BASIC)
            self._fonts[size] = font
        return font

    def shaped_font(self, size: int) -> ImageFont.FreeTypeFont:
        """The face at ``size`` pixels with libraqm's layout, for right-to-left runs (basic layout without it)."""
        size = max(1, int(size))
        font = self._shaped_fonts.get(size)
        if font is None:
            engine = ImageFont.Layout.RAQM if SHAPING else ImageFont.Layout.BASIC
            font = self._shaped_fonts[size] = ImageFont.truetype(io.BytesIO(self._data), size, layout_engine=engine)
        return font

    @functools.cached_property
    def complex(self) -> bool:
        """Whether the face's OpenType substitutions are for a script of COMPLEX_SCRIPTS (read from its file)."""
        try:
            with TTFont(io.BytesIO(self._data), lazy=True, fontNumber=0) as tt:
                records = tt["GSUB"].table.ScriptList.ScriptRecord if "GSUB" in tt else []
                return any(record.ScriptTag in COMPLEX_SCRIPTS for record in records)
        except Exception:  # fontTools raises many kinds of error for damaged tables: then laid out as it is
            return False

    def shaped(self, rtl: bool) -> bool:
        """Whether a run of this face is laid out by libraqm: a right-to-left one, or one of a complex script."""
        return SHAPING and (rtl or self.complex)

    def run_width(self, run: str, size: int, rtl: bool) -> float:
        """Advance width of a run; a shaped one as laid out (joined or conjunct letters change widths)."""
        if self.shaped(rtl):
            return self.shaped_font(size).getlength(run, direction="rtl" if rtl else "ltr")
        return self.advance(run, size)

    def advance(self, text: str, size: int) -> float:
        """Advance width of ``text`` in this face: the sum of its characters' advances, each measured
        once per size. Basic layout does not kern, so this equals Pillow's own measure (to a
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
        self._measured: tuple[FontFace, ...] | None = None  # faces line metrics reach (None: the simple ones)
        self._views: dict[frozenset[FontFace], FontChain] = {}

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
        return is_invisible(char) or self.face_for(char) is not None

    def prepare(self, text: str) -> tuple[str, frozenset[str]]:
        """Text ready to letter, and the characters left out because no face has them.

        Unicode is composed (NFC) first so "n + combining tilde" becomes "ñ"; a character no face has
        is replaced by a stand-in the chain does have, else dropped (never drawn as a box) with the
        spaces before it ("books 📚." becomes "books."). Text left with no letter or digit ("，" of
        "你好，世界") is left out whole: a bubble of stray punctuation says nothing.
        """
        out: list[str] = []
        missing: set[str] = set()
        for char in unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")):
            if char in ("\n", "\t"):
                out.append(char if char == "\n" else " ")
            elif is_invisible(char):
                continue
            elif self.face_for(char) is not None:
                out.append(char)
            else:
                stand_in = self._stand_in(char)
                if stand_in is None:
                    missing.add(char)
                    while out and out[-1] == " ":
                        out.pop()
                else:
                    out.append(stand_in)
        prepared = "".join(out)
        if missing and not any(char.isalnum() for char in prepared):
            prepared = ""
        return prepared, frozenset(missing)

    def _stand_in(self, char: str) -> str | None:
        candidates = [
            STAND_INS.get(char, ""),
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
        runs: list[tuple[FontFace, list[str]]] = []  # characters gathered in lists: joined once, at the end
        for char in text:
            if char == "\n" or is_invisible(char):
                continue
            face = self.face_for(char)
            if face is None:
                continue
            if char == " " and runs:
                face = runs[-1][0]  # a space joins the run before it: fewer, longer runs
            if runs and runs[-1][0] is face:
                runs[-1][1].append(char)
            else:
                runs.append((face, [char]))
        return [(face, "".join(chars)) for face, chars in runs]

    def placed_runs(self, line: str) -> list[tuple[FontFace, str, bool]]:
        """(face, text, right-to-left) runs of one line in drawing order, left to right: each directional run
        (see ``bidi``) split by face, the face runs of a right-to-left one drawn from its end."""
        placed = []
        for directional in drawing_order(line):
            runs = self.runs(directional.text)
            placed += [(face, run, directional.rtl) for face, run in (runs[::-1] if directional.rtl else runs)]
        return placed

    # ------------------------------------------------------------------------------ metrics

    def for_text(self, text: str) -> FontChain:
        """The chain for lettering ``text``: itself, or a view of it whose line metrics also reach as far as
        the complex-script faces ``text`` uses (an Arabic or Devanagari letter reaches far below a Latin one:
        a Latin caption keeps its tight lines, an Arabic one gets the room its letters need)."""
        used = frozenset(face for char in set(text) if (face := self.face_for(char)) is not None and face.complex)
        if not used:
            return self
        view = self._views.get(used)
        if view is None:
            view = self._views[used] = copy.copy(self)
            view._metrics, view._views = {}, {}
            view._measured = tuple(face for face in self.faces if not face.complex or face in used)
        return view

    def metrics(self, size: int) -> LineMetrics:
        """Line metrics at ``size``: how far real glyphs of the faces reach above and below the baseline
        (measured on accented capitals, descenders, Cyrillic and Hangul, and the letters of the complex-script
        faces a ``for_text`` view holds), plus leading."""
        size = max(1, int(size))
        found = self._metrics.get(size)
        if found is None:
            up, down = 1, 0
            measured = self._measured if self._measured is not None else [f for f in self.faces if not f.complex]
            for face in measured:
                probe = "".join(c for c in _PROBE if face.has_glyph(c))
                if probe:
                    _, top, _, bottom = face.font(size).getbbox(probe, anchor="ls")
                    up, down = max(up, math.ceil(-top)), max(down, math.ceil(bottom))
            leading = max(1, round(size * self.leading))
            found = self._metrics[size] = LineMetrics(ascent=up, descent=down, height=up + down + leading)
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
        return math.ceil(sum(face.run_width(run, size, rtl) for face, run, rtl in self.placed_runs(text)))

    def ink_box(self, xy: tuple[float, float], text: str, size: int) -> tuple[int, int, int, int] | None:
        """Bounding box (left, top, right, bottom) of the pixels :meth:`draw_text` would touch;
        None for blank text."""
        x, baseline = xy[0], xy[1] + self.metrics(size).ascent
        left = top = math.inf
        right = bottom = -math.inf
        for face, run, rtl in self.placed_runs(text):
            if run.strip():
                x0, y0, x1, y1 = _font_for(face, size, rtl).getbbox(_laid_out(run, rtl), anchor="ls", **_way(face, rtl))
                left, top = min(left, x + x0), min(top, baseline + y0)
                right, bottom = max(right, x + x1), max(bottom, baseline + y1)
            x += face.run_width(run, size, rtl)
        if left == math.inf:
            return None
        return (math.floor(left), math.floor(top), math.ceil(right), math.ceil(bottom))

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
        chain's baseline. Returns the advance width drawn."""
        x, baseline = float(xy[0]), float(xy[1]) + self.metrics(size).ascent
        for face, run, rtl in self.placed_runs(text):
            if run.strip():
                font = _font_for(face, size, rtl)
                draw.text((x, baseline), _laid_out(run, rtl), font=font, fill=fill, anchor="ls", **_way(face, rtl))
            x += face.run_width(run, size, rtl)
        return math.ceil(x - xy[0])

    def wrap(self, text: str, size: int, max_width: float, max_lines: int | None = None) -> list[str]:
        """``text`` word-wrapped into lines no wider than ``max_width`` at ``size``, measured with
        real metrics (see :func:`~storydiffusion.layout.lettering.linebreak.wrap_text`), at most ``max_lines``."""
        hyphen = self.face_for("-") is not None
        lines = wrap_text(text, max_width, lambda s: self.text_width(s, size), hyphen=hyphen, max_lines=max_lines)
        if paragraph_direction(text) == "ltr":
            return lines
        # A line of a Hebrew or Arabic paragraph that starts with a Latin word still reads right to left: an
        # invisible right-to-left mark before it says so to drawing_order (and to the caption's alignment).
        return [RIGHT_TO_LEFT_MARK + line if paragraph_direction(line) == "ltr" else line for line in lines]


def _font_for(face: FontFace, size: int, rtl: bool) -> ImageFont.FreeTypeFont:
    return face.shaped_font(size) if face.shaped(rtl) else face.font(size)


def _laid_out(run: str, rtl: bool) -> str:
    """A run as handed to Pillow: a right-to-left one in reading order for libraqm, reversed without it."""
    return run[::-1] if rtl and not SHAPING else run


def _way(face: FontFace, rtl: bool) -> dict[str, str]:
    return {"direction": "rtl" if rtl else "ltr"} if face.shaped(rtl) else {}


def default_font_chain(weight: str = "bold", font_dir: str | Path | None = None) -> FontChain:
    """The bundled chain for ``weight`` ("bold" for speech and titles, "regular" for captions):
    Comic Neue, then Noto Sans (Latin Extended, Greek, Cyrillic), NanumSquareRound (Hangul, kana), then Droid
    Sans Fallback (Chinese characters, also in Japanese)."""
    try:
        names = BUNDLED_FACES[weight]
    except KeyError:
        raise ValueError(f"unknown font weight {weight!r}; use one of {sorted(BUNDLED_FACES)}") from None
    folder = Path(font_dir) if font_dir is not None else FONT_DIR
    return FontChain([FontFace(folder / name) for name in names])
