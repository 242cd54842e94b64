"""The studio page as built by app.py: its widgets agree with the library's rules."""

import gradio as gr
import pytest

from storydiffusion.errors import ModelError, SettingsError
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
    assert (slider.minimum, slider.maximum, slider.step) == (allowed.low, allowed.high, allowed.step)
    assert allowed.contains(slider.value) or allowed.contains(round(slider.value))


def test_the_seed_field_is_text_so_every_seed_up_to_2_63_stays_exact(widgets):
    """A browser's number box rounds integers above 2**53 (and Gradio's turned 2**70 into 0)."""
    from storydiffusion.studio_text import setting_value

    assert isinstance(widgets["seed"], gr.Textbox) and isinstance(widgets["panel-seed"], gr.Textbox)
    big = 2**63 - 1
    assert setting_value("seed", str(big)) == big and setting_value("seed", f" {random_seed()} ") <= MAX_DICE_SEED
    for typed in (str(2**70), "1e5", "-3", "seven", "7.5"):
        with pytest.raises(SettingsError, match="^Seed") as refused:
            setting_value("seed", typed)
        assert "e+" not in str(refused.value)  # the number as typed, never as a float


def test_without_weights_the_page_shows_one_offline_banner_line(tiny_sdxl):
    pool = tiny_pool(tiny_sdxl, "sdxl-base", hub_online=lambda: False, in_cache=lambda repo: False)
    demo = app.build_app(pool)
    banner = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "model-notice")
    assert banner.visible and "Offline demo" in banner.value and "offline demo model instead" in banner.value
    assert "--" not in banner.value  # a web user has no command line: the page never points at one
    assert "\n" not in banner.value.strip()


def test_sessions_expire_with_their_files_and_the_queue_is_bounded(tiny_sdxl):
    import gradio as gr

    from storydiffusion.studio import close_session
    from storydiffusion.studio_server import CACHE_MAX_AGE_SECONDS, SESSION_TTL_SECONDS, ServerOptions

    demo = app.make_app(ServerOptions(model=OFFLINE_MODEL, max_queue=5), tiny_pool(tiny_sdxl))
    state = next(block for block in demo.blocks.values() if isinstance(block, gr.State))
    assert state.value is None  # no default to deep-copy: API clients get a session on first use
    assert state.time_to_live == SESSION_TTL_SECONDS and state.delete_callback is close_session
    assert demo.delete_cache[1] == CACHE_MAX_AGE_SECONDS
    assert demo._queue.max_size == 5


def test_a_shared_server_offers_no_free_text_model_box(tiny_sdxl):
    shared = app.build_app(tiny_pool(tiny_sdxl, allow_custom=False))
    local = app.build_app(tiny_pool(tiny_sdxl, allow_custom=True))
    for demo, custom in ((shared, False), (local, True)):
        model = next(block for block in demo.blocks.values() if getattr(block, "label", None) == "Model")
        assert model.allow_custom_value is custom


def test_every_endpoint_names_its_values_for_api_clients(tiny_sdxl):
    """An API client reads each value by its label; an unlabeled one would show as ``value_72``."""
    info = app.build_app(tiny_pool(tiny_sdxl)).get_api_info()
    for name, endpoint in info["named_endpoints"].items():
        for value in [*endpoint["parameters"], *endpoint["returns"]]:
            assert value.get("label") and not str(value["label"]).startswith("value_"), (name, value)
