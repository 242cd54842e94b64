"""Loading options of StoryPipeline: LoRA, schedulers, styles, VAE memory options."""

import numpy as np
import pytest
import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from storydiffusion.attention import ConsistentSelfAttnProcessor
from storydiffusion.errors import ModelError, SettingsError
from storydiffusion.models import SCHEDULERS, build_tiny_sdxl_pipeline, fresh_scheduler, make_scheduler
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.styles import get_style, load_styles


def small_story(**settings):
    options = dict(style="none", id_images=1, window=2, steps=2)
    options.update(settings)
    return story_from_text(
        "[Bob] a man in a red coat", "[Bob] walks\n[Bob] sits", settings=GenerationSettings(**options)
    )


def write_tiny_lora(directory):
    """A LoRA for the tiny SDXL UNet, saved the way diffusers saves LoRAs."""
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    pipe = build_tiny_sdxl_pipeline()
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in pipe.unet.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionXLPipeline.save_lora_weights(str(directory), unet_lora_layers=layers)
    return directory / "pytorch_lora_weights.safetensors"


def test_lora_changes_the_images_and_keeps_consistent_attention(tmp_path, tiny_sdxl):
    lora_file = write_tiny_lora(tmp_path)
    with_lora = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", lora=str(lora_file), lora_scale=1.0)
    assert sum(isinstance(p, ConsistentSelfAttnProcessor) for p in with_lora.pipe.unet.attn_processors.values()) == 9
    story = small_story()
    plain = tiny_sdxl.generate(story).panels[0].image
    styled = with_lora.generate(story).panels[0].image
    assert np.abs(np.asarray(plain, dtype=int) - np.asarray(styled, dtype=int)).max() > 5


def test_a_lora_folder_loads_the_file_diffusers_saved_whatever_else_it_holds(tmp_path):
    lora_file = write_tiny_lora(tmp_path)
    (tmp_path / "notes.safetensors").write_bytes(b"not a LoRA")  # never taken for it
    story = small_story()
    images = [
        StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", lora=str(source), lora_scale=1.0).generate(story)
        for source in (tmp_path, lora_file)
    ]
    assert images[0].panels[0].image.tobytes() == images[1].panels[0].image.tobytes()


def test_bad_lora_is_a_model_error(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"nope")
    with pytest.raises(ModelError, match="could not load LoRA"):
        StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", lora=str(tmp_path / "broken.safetensors"))


@pytest.mark.parametrize("scheduler", ["euler-a", "ddim", "dpm++", "unipc"])
def test_scheduler_choice_per_run(tiny_sdxl, scheduler):
    story = small_story(scheduler=scheduler)
    result = tiny_sdxl.generate(story)
    assert result.scheduler == scheduler and len(result.panels) == 2
    assert type(tiny_sdxl.pipe.scheduler).__name__ == "EulerDiscreteScheduler"  # the shared pipeline is untouched


def test_unknown_scheduler_is_refused(tiny_sdxl):
    with pytest.raises(SettingsError, match="choose one of"):
        tiny_sdxl.generate(small_story(scheduler="warp-drive"))


def test_schedulers_by_short_name_keep_the_model_config(tiny_sdxl):
    current = tiny_sdxl.pipe.scheduler
    for name, (class_name, _) in SCHEDULERS.items():
        scheduler = make_scheduler(name, current.config)
        assert type(scheduler).__name__ == class_name
        assert scheduler.config.beta_schedule == current.config.beta_schedule == "scaled_linear"
    assert make_scheduler("dpm++-karras", current.config).config.use_karras_sigmas
    assert not make_scheduler("dpm++", current.config).config.use_karras_sigmas
    fresh = fresh_scheduler(None, current)
    assert type(fresh) is type(current) and fresh is not current
    with pytest.raises(SettingsError, match="choose one of"):
        fresh_scheduler("warp-drive", current)


def test_vae_memory_options_keep_the_pictures(tiny_sdxl):
    lean = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu", vae_slicing=True, vae_tiling=True)
    story = small_story()
    first = tiny_sdxl.generate(story).panels[0].image
    second = lean.generate(story).panels[0].image
    assert np.abs(np.asarray(first, dtype=int) - np.asarray(second, dtype=int)).max() <= 2


def test_styles_are_plain_templates():
    styles, default = load_styles()
    assert default in styles and {"none", "comic", "manga"} <= set(styles)
    prompt, negative = get_style("comic").apply("a man walks", "blurry")
    assert "a man walks" in prompt and prompt != "a man walks" and negative.startswith("blurry, ")
    assert all("(" not in style.prompt for style in styles.values())  # no A1111 weight syntax
    assert get_style("none").apply("x") == ("x", "")
    with pytest.raises(SettingsError, match="unknown style"):
        get_style("baroque")


def test_style_reaches_the_prompts(tiny_sdxl):
    result = tiny_sdxl.generate(small_story(style="manga"))
    assert result.panels[0].prompt.startswith("manga panel, ")
    assert "a man in a red coat" in result.panels[0].prompt


def test_an_ancestral_scheduler_draws_the_same_pixels_for_the_same_seed(tiny_sdxl):
    """euler-a adds noise at every step: it comes from each panel's own seeded generator, not torch's global one."""
    story = small_story(scheduler="euler-a")
    torch.manual_seed(1)
    first = tiny_sdxl.generate(story)
    torch.manual_seed(2)
    again = tiny_sdxl.generate(story)
    assert [p.image.tobytes() for p in first.panels] == [p.image.tobytes() for p in again.panels]
