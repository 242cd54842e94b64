"""Fitting a panel into a cell: centre crop or letterbox, aspect kept, checked at pixel level."""

import pytest
from PIL import Image, ImageDraw

from storydiffusion.layout import LayoutError
from storydiffusion.layout.fit import fit_image

RED, BLUE, YELLOW = (220, 20, 30), (20, 40, 200), (250, 220, 0)
WHITE = (255, 255, 255)


def solid(colour, size=(96, 96)):
    return Image.new("RGB", size, colour)


def square_marker(size, square, background=WHITE):
    """A white image with a black square of side ``square`` in the middle: shows scale and aspect."""
    image = Image.new("RGB", size, background)
    w, h = size
    ImageDraw.Draw(image).rectangle(
        ((w - square) // 2, (h - square) // 2, (w + square) // 2 - 1, (h + square) // 2 - 1), fill=(0, 0, 0)
    )
    return image


def colours_of(image):
    return {colour for _, colour in image.getcolors(image.width * image.height)}


def dark_box(image):
    return image.convert("L").point(lambda v: 255 if v < 128 else 0).getbbox()


def test_crop_fills_the_cell_with_no_background_and_keeps_the_aspect():
    fitted = fit_image(solid(RED, (300, 100)), 50, 50, "crop", background=WHITE)
    assert fitted.size == (50, 50) and fitted.mode == "RGB"
    assert colours_of(fitted) == {RED}
    # a 100 px square in a 400x200 image, scaled by 0.5 into 100x100: a centred 50 px square
    box = dark_box(fit_image(square_marker((400, 200), 100), 100, 100, "crop"))
    assert all(abs(a - b) <= 1 for a, b in zip(box, (25, 25, 75, 75))), box
    # the centre of the image is kept: a wide image loses its sides, a tall one its top and bottom
    stripes = Image.new("RGB", (300, 100), BLUE)
    stripes.paste(RED, (100, 0, 200, 100))
    assert fit_image(stripes, 40, 40, "crop").getpixel((20, 20)) == RED
    assert fit_image(stripes.rotate(90, expand=True), 40, 40, "crop").getpixel((20, 20)) == RED


@pytest.mark.parametrize(
    ("panel", "cells"),
    [
        ((832, 1216), [(50, 155), (50, 310), (301, 437), (640, 333)]),
        ((1216, 832), [(50, 60), (50, 63), (512, 350)]),
        ((640, 480), [(50, 65), (50, 69), (333, 250)]),
    ],
)
def test_crop_fits_common_sdxl_panel_sizes_into_any_cell(panel, cells):
    """For these sizes the centred crop box came out a hair outside the image (-5.7e-14) and PIL refused it."""
    image = solid(RED, panel)
    for width, height in cells + [(w, h) for w in range(50, 700, 97) for h in range(50, 700, 89)]:
        fitted = fit_image(image, width, height, "crop")
        assert fitted.size == (width, height) and colours_of(fitted) == {RED}


def test_letterbox_shows_the_whole_panel_with_bars():
    fitted = fit_image(solid(RED, (200, 100)), 100, 100, "letterbox", background=WHITE)
    assert fitted.size == (100, 100)
    assert fitted.getpixel((50, 10)) == WHITE and fitted.getpixel((50, 90)) == WHITE
    assert fitted.getpixel((50, 50)) == RED and fitted.getpixel((0, 50)) == RED and fitted.getpixel((99, 50)) == RED
    non_white = Image.eval(fitted, lambda v: 255 - v).getbbox()
    assert non_white == (0, 25, 100, 75)
    # the whole marker image is visible, at the same aspect: 400x200 -> 100x50, square 100 -> 25
    box = dark_box(fit_image(square_marker((400, 200), 100), 100, 100, "letterbox"))
    assert all(abs(a - b) <= 1 for a, b in zip(box, (37, 37, 63, 63))), box


def test_fit_flattens_transparency_and_rejects_unknown_modes():
    rgba = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    assert colours_of(fit_image(rgba, 10, 10, "crop", background=YELLOW)) == {YELLOW}
    assert fit_image(Image.new("L", (20, 10), 0), 10, 10, "letterbox").getpixel((5, 5)) == (0, 0, 0)
    with pytest.raises(LayoutError, match="crop, letterbox"):
        fit_image(solid(RED), 10, 10, "stretch")


def test_same_size_crop_is_an_exact_copy():
    image = square_marker((64, 64), 20)
    assert fit_image(image, 64, 64).tobytes() == image.tobytes()
