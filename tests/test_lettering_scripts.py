"""Hebrew, Arabic and Indic lettering: the drawing order of mixed lines (the Unicode Bidirectional Algorithm's
rules that plain captions need), joined Arabic letters, right-aligned captions, and a whole page."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from PIL import Image, ImageDraw

from storydiffusion.layout.lettering.bidi import RIGHT_TO_LEFT_MARK, drawing_order, paragraph_direction
from storydiffusion.layout.lettering.captions import caption_origins
from storydiffusion.layout.lettering.fonts import SHAPING, FontChain, default_font_chain
from storydiffusion.layout.lettering.style import LetteringStyle

SHALOM, WORLD, MARHABA = "שלום", "world", "مرحبا"


@pytest.fixture(scope="module")
def chain() -> FontChain:
    return default_font_chain("bold")


def order(line: str) -> list[tuple[str, bool]]:
    return [(run.text, run.rtl) for run in drawing_order(line)]


@pytest.mark.parametrize(
    "line,expected",
    [
        ("plain Latin text", [("plain Latin text", False)]),
        (f"{SHALOM} {WORLD}", [(WORLD, False), (f"{SHALOM} ", True)]),  # a Hebrew line: its Latin word on the left
        (f"Hello {SHALOM}!", [("Hello ", False), (SHALOM, True), ("!", False)]),  # a Latin line keeps its "!"
        ("שלום, עולם!", [("שלום, עולם!", True)]),  # the "!" ends the line on the left
        ("ב-1990 הוא", [(" הוא", True), ("1990", False), ("ב-", True)]),  # a number reads left to right
        ("קנה ב-3.5% הנחה", [(" הנחה", True), ("3.5%", False), ("קנה ב-", True)]),  # W4, W5
        ("قال 3.5%", [("%", True), ("3.5", False), ("قال ", True)]),  # after Arabic letters: Arabic numbers (W2)
        ("אָבָא", [("אָבָא", True)]),  # points take the class of their letter (W1)
        (
            f"{RIGHT_TO_LEFT_MARK}Mia {SHALOM}",
            [(f" {SHALOM}", True), ("Mia", False), (RIGHT_TO_LEFT_MARK, True)],
        ),
    ],
)
def test_a_line_is_drawn_in_the_order_the_bidirectional_algorithm_gives(line, expected):
    assert order(line) == expected
    assert "".join(sorted(line)) == "".join(sorted("".join(text for text, _ in expected)))  # nothing lost


def test_the_paragraph_takes_the_direction_of_its_first_letter():
    assert paragraph_direction("123 " + SHALOM + " hi") == "rtl"
    assert paragraph_direction("... hi " + SHALOM) == "ltr" and paragraph_direction("123 !") == "ltr"


def drawn(chain: FontChain, line: str, size: int = 40, width: int = 600) -> np.ndarray:
    image = Image.new("L", (width, 70), 255)
    chain.draw_text(ImageDraw.Draw(image), (10, 5), line, size, fill=0)
    return np.asarray(image)


def test_a_hebrew_line_draws_its_latin_word_on_the_left_and_a_latin_line_on_the_right(chain):
    word = drawn(chain, WORLD)
    columns = slice(0, 10 + chain.text_width(WORLD, 40))
    hebrew_first = drawn(chain, f"{SHALOM} {WORLD}")
    assert np.array_equal(hebrew_first[:, columns], word[:, columns])  # "world" starts the drawn line
    latin_first = drawn(chain, f"{WORLD} {SHALOM}")
    assert np.array_equal(latin_first[:, columns], word[:, columns])
    assert not np.array_equal(hebrew_first, latin_first)  # the same words, the Hebrew word on the other side
    letters = drawn(chain, SHALOM)
    ink = np.flatnonzero((letters < 128).any(axis=0))
    first_letter = drawn(chain, SHALOM[0])  # shin, read first: drawn at the right end of the word
    shin_width = np.flatnonzero((first_letter < 128).any(axis=0)).size
    right_end = slice(ink[-1] + 1 - shin_width, ink[-1] + 1)
    shin = np.flatnonzero((first_letter < 128).any(axis=0))
    assert np.array_equal(letters[:, right_end] < 128, first_letter[:, shin[0] : shin[-1] + 1] < 128)


@pytest.mark.skipif(not SHAPING, reason="joining Arabic letters needs Pillow with libraqm")
def test_arabic_letters_are_kept_and_joined(chain):
    prepared, missing = chain.prepare(f"Mia: {MARHABA}!")
    assert prepared == f"Mia: {MARHABA}!" and not missing
    face = chain.face_for(MARHABA[0])
    isolated = sum(face.advance(letter, 40) for letter in MARHABA)  # each letter in its own, unjoined form
    assert chain.text_width(MARHABA, 40) < isolated - 5
    word = drawn(chain, MARHABA)
    ink = np.flatnonzero((word < 128).any(axis=0))
    assert ink.size and ink[-1] - ink[0] + 1 <= chain.text_width(MARHABA, 40) + 2


def test_a_hebrew_caption_is_aligned_right_and_its_lines_keep_their_direction(chain):
    paragraph = " ".join([SHALOM, "Mia", SHALOM, SHALOM, "Mia", "Leo", SHALOM, SHALOM] * 2)
    lines = chain.wrap(paragraph, 30, 200)
    assert len(lines) > 2 and all(paragraph_direction(line) == "rtl" for line in lines)
    assert any(line.startswith(RIGHT_TO_LEFT_MARK) for line in lines)  # a line opening with "Mia" or "Leo"
    from storydiffusion.layout.lettering.style import Pixels

    px = Pixels.of(LetteringStyle(), 1.0)
    box = (0, 0, 260, 200)
    for (x, _), line in zip(caption_origins(chain, px, box, tuple(lines), 30), lines):
        assert x + chain.text_width(line, 30) == box[2] - px.padding - px.caption_border
    latin = chain.wrap("Mia and Leo walk home " * 3, 30, 200)
    assert {x for x, _ in caption_origins(chain, px, box, tuple(latin), 30)} == {px.padding + px.caption_border}


def test_a_page_with_hebrew_and_arabic_captions_letters_them_without_a_warning():
    from storydiffusion.layout.paginate import paginate
    from storydiffusion.layout.render import render_pages
    from storydiffusion.layout.template_files import load_template
    from storydiffusion.story import story_from_text

    story = story_from_text("[Dan] a man", f"[Dan] walks # {SHALOM} Dan! @Dan: {MARHABA}\n[NC] a street # سلام")
    template = load_template("four-panel", dpi=60)
    layouts = paginate(template, [(96, 96)] * 2)
    white = [Image.new("RGB", (96, 96), "white")] * 2
    warnings: list[str] = []
    lettered = render_pages(layouts, white, story, template, lettering=True, warnings=warnings)[0]
    plain = render_pages(layouts, white, story, template, lettering=False)[0]
    assert warnings == []
    for cell in layouts[0].cells:
        box = (cell.x, cell.y, cell.x + cell.w, cell.y + cell.h)
        assert lettered.crop(box).tobytes() != plain.crop(box).tobytes()


@pytest.mark.skipif(not SHAPING, reason="shaping Indic scripts needs Pillow with libraqm")
@pytest.mark.parametrize("word", ["कि", "क्षत्रिय", "বাংলায়", "வணக்கம்"])
def test_an_indic_word_is_shaped_as_its_script_needs(chain, word):
    face = chain.face_for(word[0])
    assert face.complex and not chain.face_for("a").complex
    assert chain.prepare(word) == (word, frozenset())
    shaped = drawn(chain, word)
    image = Image.new("L", shaped.shape[::-1], 255)  # the same letters one by one, as basic layout sets them
    ImageDraw.Draw(image).text((10, 5 + chain.metrics(40).ascent), word, font=face.font(40), fill=0, anchor="ls")
    assert not np.array_equal(shaped, np.asarray(image))
    ink = np.flatnonzero((shaped < 128).any(axis=0))
    assert ink[-1] - ink[0] + 1 <= chain.text_width(word, 40) + 4  # measured as drawn


def test_an_indic_line_made_of_one_long_word_breaks_between_letters_never_inside_one(chain):
    word = "प्रत्येकव्यक्तिकोशिक्षाकाअधिकारहै"
    lines = chain.wrap(word, 30, 90)
    assert len(lines) > 2 and "".join(lines) == word  # no hyphen added either
    for line in lines[1:]:
        assert not unicodedata.category(line[0]).startswith("M")  # no vowel sign or virama opens a line
    for line in lines[:-1]:
        assert unicodedata.combining(line[-1]) != 9  # and no line ends on a virama


def test_the_arabic_example_letters_every_caption_and_bubble_without_a_warning():
    from storydiffusion.layout.paginate import paginate
    from storydiffusion.layout.render import render_pages
    from storydiffusion.layout.template_files import load_template
    from storydiffusion.resources import data_path
    from storydiffusion.story import load_story

    story = load_story(data_path("examples", "arabic.yaml"))
    template = load_template("classic", dpi=60)
    layouts = paginate(template, [(128, 128)] * len(story.panels), title=True)
    warnings: list[str] = []
    panels = [Image.new("RGB", (128, 128), "white")] * len(story.panels)
    render_pages(layouts, panels, story, template, title=story.title, lettering=True, warnings=warnings)
    assert warnings == [] and paragraph_direction(story.title) == "rtl"


def test_the_new_scripts_leave_the_line_height_of_other_text_as_it_was(chain):
    """The chain's lines reach as far as Arabic and Indic letters only for text that has them: with every face
    measured, an English caption's lines were 23 % further apart."""
    from storydiffusion.layout.lettering.fonts import FontChain

    before = FontChain([face for face in chain.faces if not face.complex])  # the chain of the simple scripts
    for size in (20, 31, 48):
        assert chain.metrics(size) == before.metrics(size) == chain.for_text("Mia: שלום, 你好, 안녕!").metrics(size)
        assert chain.for_text(f"Mia: {MARHABA}").metrics(size).descent > before.metrics(size).descent
        assert chain.for_text("नमस्ते").metrics(size).height >= before.metrics(size).height
    assert chain.for_text(MARHABA) is chain.for_text("سلام")  # one view per set of faces, its metrics kept
