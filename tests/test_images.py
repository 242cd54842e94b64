"""Reading a user's image: every mode to RGB, limits checked before decoding, errors that name the file."""

import io
import warnings

import numpy as np
import pytest
from file_helpers import png_header_only
from PIL import Image, ImageFile

from storydiffusion.errors import ImageInputError, StoryDiffusionError
from storydiffusion.images import IMAGE_FORMATS, MAX_IMAGE_PIXELS, image_size, read_image, to_rgb


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def noise(side: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (side, side, 3), dtype=np.uint8))


def refused(source, *words, **limits) -> str:
    with pytest.raises(ImageInputError) as caught:
        read_image(source, "their/panel.png", **limits)
    message = str(caught.value)
    assert message.startswith("their/panel.png: ") and "\n" not in message, message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------------------------------- modes to RGB


def test_sixteen_bit_grey_is_scaled_not_clipped():
    grey = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert grey.mode.startswith("I;16")
    image = read_image(encoded(grey), "grey16.png")
    assert image.mode == "RGB" and [image.getpixel((x, 0)) for x in range(3)] == [(0,) * 3, (128,) * 3, (255,) * 3]


def test_palette_one_bit_and_grey_images_keep_their_colours():
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((1, 0), 1)
    image = read_image(encoded(palette), "palette.png")
    assert [image.getpixel((x, 0)) for x in range(2)] == [(10, 20, 30), (200, 100, 50)]
    one_bit = Image.new("1", (2, 1), 0)
    one_bit.putpixel((1, 0), 1)
    image = read_image(encoded(one_bit), "bits.png")
    assert [image.getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]
    assert read_image(encoded(Image.new("L", (1, 1), 77)), "grey.png").getpixel((0, 0)) == (77, 77, 77)


def test_cmyk_becomes_rgb():
    cmyk = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (0, 255, 255, 0))
    image = read_image(encoded(cmyk, "TIFF"), "print.tif")
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 0)) == (255, 0, 0)


def test_transparency_is_laid_over_white_or_the_given_background():
    grey_alpha = Image.new("LA", (2, 1), (100, 0))
    grey_alpha.putpixel((1, 0), (100, 255))
    image = read_image(encoded(grey_alpha), "la.png")
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((1, 0)) == (100, 100, 100)
    half = Image.new("RGBA", (1, 1), (0, 0, 0, 128))
    assert read_image(encoded(half), "half.png").getpixel((0, 0)) == (127, 127, 127)
    red, green, blue = read_image(encoded(half), "half.png", background=(0, 0, 254)).getpixel((0, 0))
    assert red == green == 0 and abs(blue - 254 * 127 / 255) <= 1
    keyed = Image.new("P", (1, 1), 0)
    keyed.putpalette([255, 0, 0] + [0] * 765)
    keyed.info["transparency"] = 0
    assert read_image(encoded(keyed), "keyed.png").getpixel((0, 0)) == (255, 255, 255)


def test_an_animated_file_gives_its_first_frame():
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert read_image(data, "moving.gif").getpixel((1, 1)) == (255, 0, 0)


def test_to_rgb_returns_a_new_image_for_every_mode():
    for mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I", "F", "I;16", "CMYK", "YCbCr"):
        source = Image.new(mode, (3, 2))
        image = to_rgb(source)
        assert image.mode == "RGB" and image.size == (3, 2) and image is not source


# ------------------------------------------------------------------------------------ hostile files


def test_a_truncated_png_or_jpeg_is_refused_by_name():
    for format in ("PNG", "JPEG"):
        data = encoded(noise(64), format)
        refused(data[: len(data) // 2], "cut short")


def test_a_header_claiming_a_huge_image_is_refused_before_decoding():
    """Each data part is a few bytes: decoding would fail as 'cut short', so the limit is what refused it."""
    for side in (100_000, 10_000, 20_000, 9_000):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Pillow's bomb warning must become our error, not leak out
            message = refused(png_header_only(side, side), f"{MAX_IMAGE_PIXELS:,} pixels", "refused before decoding")
        assert "cut short" not in message and "decompression bomb" not in message  # Pillow's words stay out
        assert f"{side * side:,} pixels" in message or f"{side} x {side} pixels" in message
    assert Image.MAX_IMAGE_PIXELS == 89478485  # Pillow's global limit is left as it is


def test_the_pixel_limit_is_checked_before_any_pixel_is_decoded(monkeypatch):
    data = encoded(Image.new("RGB", (64, 64)))

    def decode(self):
        raise AssertionError("decoded before the pixel limit was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    refused(data, "64 x 64 pixels", "1,000 pixels", max_pixels=1000)
    with pytest.raises(ImageInputError, match="64 x 64"):
        image_size(data, max_pixels=1000)
    assert image_size(data) == (64, 64)  # the header alone


def test_empty_text_oversized_and_zero_sized_files_are_refused(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refused(empty, "empty")
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    refused(text, "not an image", "PNG")
    refused(encoded(noise(64)), "larger than the 100 bytes", max_bytes=100)
    refused(png_header_only(0, 10))
    refused(tmp_path, "not a plain file")
    refused(tmp_path / "absent.png", "no such file")


def test_the_name_defaults_to_the_path_as_given(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImageInputError, match=f"^{path}: "):
        read_image(path)


def test_formats_can_be_narrowed_and_errors_are_typed():
    jpeg = encoded(Image.new("RGB", (8, 8)), "JPEG")
    assert read_image(jpeg, "photo.jpg").size == (8, 8) and "JPEG" in IMAGE_FORMATS
    message = refused(jpeg, "give a PNG file", formats=("PNG",))
    assert "JPEG" not in message
    assert issubclass(ImageInputError, StoryDiffusionError) and issubclass(ImageInputError, ValueError)
