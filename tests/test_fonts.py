"""Fonts: the bundled faces, their character maps (read with fontTools) and the per-glyph fallback chain.

Everything draws with the bundled fonts or with tiny fonts built here in memory, so the tests are
fast and need no model.
"""

from __future__ import annotations

import io

import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont
from fontTools.ttLib.tables._c_m_a_p import cmap_format_0

from storydiffusion.layout.lettering.fonts import (
    BUNDLED_FACES,
    FONT_DIR,
    FontChain,
    FontFace,
    default_font_chain,
    read_cmap,
)

HANGUL = "안녕하세요, 세상!"
SPANISH = "¡Qué sorpresa, señor Muñoz!"
RUSSIAN = "Привет, мир"


@pytest.fixture(scope="module")
def chain() -> FontChain:
    return default_font_chain("bold")


def _mask(face: FontFace, text: str, size: int = 32) -> tuple[tuple[int, int], bytes]:
    mask = face.font(size).getmask(text, mode="L")
    return mask.size, bytes(mask)


def _tiny_font(cmap: dict[int, str]) -> bytes:
    """A TrueType font with one square glyph "A" and the given character map."""
    builder = FontBuilder(1000, isTTF=True)
    names = [".notdef", "A"]
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap(cmap)
    pen = TTGlyphPen(None)
    pen.moveTo((0, 0))
    pen.lineTo((0, 500))
    pen.lineTo((500, 500))
    pen.closePath()
    builder.setupGlyf({name: pen.glyph() for name in names})
    builder.setupHorizontalMetrics({name: (600, 0) for name in names})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Tiny", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    buffer = io.BytesIO()
    builder.save(buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------- bundle


def test_bundled_fonts_and_licences_are_present() -> None:
    readme = (FONT_DIR / "README.md").read_text(encoding="utf-8")
    for names in BUNDLED_FACES.values():
        for name in names:
            assert (FONT_DIR / name).is_file(), name
            assert name in readme
    for licence in ("OFL-ComicNeue.txt", "OFL-NotoSans.txt", "OFL-Nanum.txt"):
        text = (FONT_DIR / licence).read_text(encoding="utf-8")
        assert "SIL OPEN FONT LICENSE" in text.upper() and "Version 1.1" in text
        assert licence in readme
    apache = (FONT_DIR / "Apache-DroidSansFallback.txt").read_text(encoding="utf-8")
    assert "Apache License" in apache and "Version 2.0" in apache and "Google" in apache
    assert "Apache-DroidSansFallback.txt" in readme
    total = sum(p.stat().st_size for p in FONT_DIR.iterdir())
    assert total < 9_500_000, "keep the font bundle small"  # 4.7 MB, and 4 MB of Chinese characters


def test_bundled_coverage_matches_the_fonts_readme() -> None:
    for weight in BUNDLED_FACES:
        comic, noto, hebrew, arabic, devanagari, bengali, tamil, nanum, han = (
            read_cmap(FONT_DIR / name) for name in BUNDLED_FACES[weight]
        )
        assert set(range(0x915, 0x93A)) <= devanagari and set(range(0x995, 0x9A9)) <= bengali  # the consonants
        assert {0xB95, 0xB99, 0xB9A, 0xB9C, 0xB9E, 0xB9F, 0xBA3, 0xBA4, 0xBA8, 0xBAA, 0xBAE} <= tamil
        assert set(range(0x5D0, 0x5EB)) <= hebrew and set(range(0x621, 0x64B)) | set(range(0x660, 0x66A)) <= arabic
        assert {0x67E, 0x686, 0x6AF, 0x6CC} <= arabic  # Persian letters
        assert set(range(0x4E00, 0x9FA6)) <= han  # every unified ideograph of Unicode 4.1
        assert set(range(0x3041, 0x3094)) <= nanum | han and set(range(0x30A1, 0x30F7)) <= nanum | han  # kana
        assert set(range(0x20, 0x7F)) | set(range(0xA0, 0x100)) <= comic  # ASCII and Latin-1
        assert not comic & set(range(0x400, 0x500)) and not comic & set(range(0xAC00, 0xD7A4))
        assert set(range(0x400, 0x500)) <= noto and set(range(0x100, 0x180)) <= noto  # Cyrillic, Latin Ext-A
        assert set(range(0xAC00, 0xAC00 + 11172)) <= nanum  # every Hangul syllable
        assert set(range(0x3131, 0x3131 + 94)) <= nanum  # the compatibility jamo


# ------------------------------------------------------------------------------------------- cmap


def test_cmap_agrees_with_missing_glyph_rendering(chain: FontChain) -> None:
    """The character map read from the file says the same as comparing with the .notdef drawing."""
    for face in chain.faces:
        notdef = face.missing_glyph_mask()
        for char in "Aañ가Жé—…":
            rendered_real = _mask(face, char) != notdef
            assert face.has_glyph(char) == rendered_real, (face, char)


def test_read_cmap_rejects_non_fonts() -> None:
    with pytest.raises(ValueError):
        read_cmap(b"not a font at all")
    data = (FONT_DIR / BUNDLED_FACES["bold"][1]).read_bytes()
    with pytest.raises(ValueError):
        read_cmap(data[:200])


def test_read_cmap_leaves_out_characters_mapped_to_notdef() -> None:
    data = _tiny_font({ord("A"): "A", ord("B"): ".notdef", 0x1F600: "A"})
    assert read_cmap(data) == {ord("A"), 0x1F600}


def test_read_cmap_takes_bytes_or_a_file(tmp_path) -> None:
    path = tmp_path / "tiny.ttf"
    path.write_bytes(_tiny_font({ord("A"): "A", ord("Z"): "A"}))
    assert read_cmap(path) == read_cmap(str(path)) == read_cmap(path.read_bytes()) == {ord("A"), ord("Z")}
    face = FontFace(path)
    assert face.has_glyph("Z") and not face.has_glyph("B")


def test_read_cmap_of_a_collection_reads_its_first_font() -> None:
    collection = TTCollection()
    collection.fonts = [TTFont(io.BytesIO(_tiny_font({ord(c): "A"}))) for c in "CD"]
    buffer = io.BytesIO()
    collection.save(buffer)
    assert buffer.getvalue()[:4] == b"ttcf"
    assert read_cmap(buffer.getvalue()) == {ord("C")}


def test_read_cmap_needs_a_unicode_map() -> None:
    font = TTFont(io.BytesIO(_tiny_font({ord("A"): "A"})))
    mac_roman = cmap_format_0(0)
    mac_roman.platformID, mac_roman.platEncID, mac_roman.language, mac_roman.cmap = 1, 0, 0, {ord("A"): "A"}
    font["cmap"].tables = [mac_roman]
    buffer = io.BytesIO()
    font.save(buffer)
    with pytest.raises(ValueError, match="Unicode"):
        read_cmap(buffer.getvalue())


# ------------------------------------------------------------------------------------------- chain


def test_fallback_chain_picks_the_face_per_glyph(chain: FontChain) -> None:
    comic, noto, hebrew, arabic, devanagari, bengali, tamil, nanum, han = chain.faces
    assert chain.face_for("क") is devanagari and chain.face_for("ক") is bengali and chain.face_for("க") is tamil
    assert chain.face_for("ש") is hebrew and chain.face_for("م") is arabic
    assert chain.face_for("春") is han and chain.face_for("가") is nanum and chain.face_for("힣") is nanum
    assert chain.face_for("a") is comic
    assert chain.face_for("ñ") is comic  # Comic Neue has Latin-1 accents
    assert chain.face_for("Ж") is noto
    assert chain.face_for("ł") is comic or chain.face_for("ł") is noto
    assert chain.face_for("가") is nanum
    runs = chain.runs("Hi 안녕 Привет!")
    assert [face for face, _ in runs] == [comic, nanum, noto, comic]


@pytest.mark.parametrize("text", [HANGUL, SPANISH, RUSSIAN])
def test_every_character_gets_a_real_glyph(chain: FontChain, text: str) -> None:
    prepared, missing = chain.prepare(text)
    assert prepared == text and not missing
    comic_box = chain.faces[0].missing_glyph_mask()
    for char in text:
        if char.isspace():
            continue
        face = chain.face_for(char)
        assert face is not None, char
        glyph = _mask(face, char)
        assert glyph != face.missing_glyph_mask(), f"{char!r} drawn as {face.name}'s missing glyph"
        assert glyph != comic_box, f"{char!r} drawn as a box"


def test_decomposed_accents_are_composed(chain: FontChain) -> None:
    prepared, missing = chain.prepare("sen\u0303or")
    assert prepared == "señor" and not missing


def test_characters_no_face_has_get_a_stand_in_or_are_reported(chain: FontChain) -> None:
    assert chain.face_for("\U0001d400") is None  # mathematical bold A
    prepared, missing = chain.prepare("a\u200bb \U0001f600 \U0001d400")  # zero-width space, emoji
    assert missing == {"\U0001f600"}
    assert prepared == "ab A"  # the emoji goes with the space before it


def test_marks_that_only_steer_other_characters_are_never_drawn_nor_missing(chain: FontChain) -> None:
    """Direction marks pasted with right-to-left text and emoji variation selectors: some fonts draw the marks
    as visible glyphs, and a selector was reported as a missing writing system."""
    steering = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2069\ufe0f\ufe0e\U000e0100\u00ad\u2060"
    prepared, missing = chain.prepare(f"a{steering}b \u2764\ufe0f")
    assert prepared.startswith("ab") and not set(prepared) & set(steering)
    assert not set(missing) & set(steering)
    assert chain.covers("\u202e") and all(
        char not in "".join(t for _, t in chain.runs("x\u202ey")) for char in "\u202e"
    )


@pytest.mark.parametrize(
    ("text", "prepared"),
    [
        ("Leo liked books \U0001f4da.", "Leo liked books."),  # no stray space before the full stop
        ("Look! \U0001f388\U0001fa81", "Look!"),
        ("Hi \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 there", "Hi there"),  # Thai
        (
            "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\uff0c\u0e42\u0e25\u0e01",
            "",
        ),  # Thai: only a fullwidth comma would be left
        ("\u4f60\u597d\uff0c\u4e16\u754c", "\u4f60\u597d\uff0c\u4e16\u754c"),  # Chinese is drawn
        ("\U0001f600 ...", ""),
        ("\U0001f600 OK", " OK"),
    ],
)
def test_text_around_characters_no_face_has_reads_as_if_they_were_never_written(chain, text, prepared):
    assert chain.prepare(text)[0] == prepared


def test_missing_characters_are_described_by_their_writing_system():
    from storydiffusion.layout.lettering.coverage import describe_missing

    described = describe_missing(frozenset("\u0645\u0631\u05e9\u4f60\U0001f600"))
    assert described.startswith("Arabic letters, Chinese or Japanese characters, Hebrew letters and emoji or symbols (")
    assert "\U0001f600" in described and "\u0645" in described
    assert describe_missing(frozenset("\U0001f600")) == "emoji or symbols (\U0001f600)"
    assert describe_missing(frozenset(chr(0x4E00 + i) for i in range(20))).endswith(" …)")  # a few, not all


def test_unknown_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="bold"):
        default_font_chain("light")


# ------------------------------------------------------------------------------------------- metrics


def test_line_metrics_fit_every_face(chain: FontChain) -> None:
    m = chain.metrics(20)
    assert m.height == chain.line_height(20) > m.ascent + m.descent > 20
    for text in ("ÁÉgjpy", HANGUL, RUSSIAN):
        left, top, right, bottom = chain.ink_box((0, 0), text, 20)
        assert top >= 0 and bottom <= m.ascent + m.descent


def test_text_width_is_the_sum_of_runs_in_their_own_faces(chain: FontChain) -> None:
    text = "Hi 안녕 Привет!"
    expected = sum(face.font(20).getlength(run) for face, run in chain.runs(text))
    assert abs(chain.text_width(text, 20) - expected) <= 1
    assert chain.ink_box((0, 0), "   ", 20) is None
