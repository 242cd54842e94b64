"""The studio page as built by app.py: its widgets agree with the library's rules."""

import pytest

from storydiffusion.errors import ModelError
from storydiffusion.model_pool import OFFLINE_MODEL, ModelPool
from storydiffusion.settings import SETTING_RANGES
from storydiffusion.studio import MAX_DICE_SEED, random_seed
from storydiffusion.studio_widgets import setting_id

app = pytest.importorskip("app")

SLIDERS = ("steps", "guidance", "width", "height", "sampling_rate", "id_images", "window", "frames", "fps")


def tiny_pool(tiny_sdxl, default_model=OFFLINE_MODEL, **options):
    def loader(name, **_):
        if name != OFFLINE_MODEL:
            raise ModelError("no weights here")
        return tiny_sdxl

    return ModelPool(default_model, loader=loader, **options)


@pytest.fixture(scope="module")
def widgets(tiny_sdxl):
    demo = app.build_app(tiny_pool(tiny_sdxl))
    return {block.elem_id: block for block in demo.blocks.values() if getattr(block, "elem_id", None)}


@pytest.mark.parametrize("name", SLIDERS)
def test_each_slider_spans_exactly_the_allowed_range(widgets, name):
    slider, allowed = widgets[setting_id(name)], SETTING_RANGES[name]
    assert (slider.minimum, slider.maximum, slider.step) == (allowed.low, allowed.ui_maximum, allowed.step)
    assert allowed.contains(slider.value) or allowed.contains(round(slider.value))


def test_the_seed_field_takes_every_valid_seed_and_every_dice_seed(widgets):
    seed = widgets["seed"]
    assert (seed.minimum, seed.maximum) == (SETTING_RANGES["seed"].low, SETTING_RANGES["seed"].ui_maximum)
    assert seed.maximum < 2**53  # a browser's number field holds every seed it offers exactly
    assert seed.minimum <= 0 and MAX_DICE_SEED <= seed.maximum
    assert all(seed.minimum <= random_seed() <= seed.maximum for _ in range(20))


def test_without_weights_the_page_shows_one_offline_banner_line(tiny_sdxl):
    pool = tiny_pool(tiny_sdxl, "sdxl-base", hub_online=lambda: False, in_cache=lambda repo: False)
    demo = app.build_app(pool)
    banner = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "model-notice")
    assert banner.visible and "Offline demo" in banner.value and "--model" in banner.value
    assert "\n" not in banner.value.strip()
