"""Tiny pipelines, loading from folders, checkpoints and the hub, checkpoint detection, full-size UNet configs."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in these tests may reach the Hugging Face hub

import numpy as np
import pytest
import torch

from storydiffusion.errors import ModelError
from storydiffusion.models import (
    ModelSpec,
    build_tiny_sd15_pipeline,
    build_tiny_sdxl_pipeline,
    detect_checkpoint_family,
    full_size_unet_config,
    load_diffusers_pipeline,
    pipeline_family,
)


def _generate(pipe, seed=1, prompts=("a cat in a hat",)):
    result = pipe(
        list(prompts),
        num_inference_steps=2,
        height=64,
        width=64,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return np.asarray(result.images)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _assert_good_images(images: np.ndarray, count: int) -> None:
    assert images.shape == (count, 64, 64, 3)
    assert np.isfinite(images).all()
    for image in images:
        assert image.std() > 0.01


@pytest.fixture(scope="module")
def tiny_sdxl():
    return build_tiny_sdxl_pipeline(seed=0)


@pytest.fixture(scope="module")
def tiny_sd15():
    return build_tiny_sd15_pipeline(seed=0)


@pytest.fixture(scope="module")
def tiny_images(tiny_sdxl, tiny_sd15):
    """One seeded generation per tiny pipeline, shared by the tests (CPU time is scarce)."""
    return {"sdxl": _generate(tiny_sdxl), "sd15": _generate(tiny_sd15)}


# ---------------------------------------------------------------------------- tiny pipelines


def test_tiny_sdxl_runs_and_is_deterministic(tiny_sdxl, tiny_images):
    assert pipeline_family(tiny_sdxl) == "sdxl"
    assert tiny_sdxl.tokenizer_2.pad_token == "!"
    for component in (tiny_sdxl.unet, tiny_sdxl.vae, tiny_sdxl.text_encoder, tiny_sdxl.text_encoder_2):
        assert not component.training
        assert all(p.dtype == torch.float32 for p in component.parameters())
    images = tiny_images["sdxl"]
    _assert_good_images(images, 1)

    again = build_tiny_sdxl_pipeline(seed=0)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        _assert_same_weights(getattr(tiny_sdxl, name), getattr(again, name))
    assert np.array_equal(images, _generate(again))


def test_tiny_sdxl_seed_changes_weights(tiny_sdxl):
    other = build_tiny_sdxl_pipeline(seed=1)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(tiny_sdxl, name).state_dict(), getattr(other, name).state_dict()
        assert any(not torch.equal(a[k], b[k]) for k in a), name


def test_tiny_sd15_runs_and_is_deterministic(tiny_sd15, tiny_images):
    assert pipeline_family(tiny_sd15) == "sd15"
    assert tiny_sd15.safety_checker is None
    images = tiny_images["sd15"]
    _assert_good_images(images, 1)

    again = build_tiny_sd15_pipeline(seed=0)
    for name in ("unet", "vae", "text_encoder"):
        _assert_same_weights(getattr(tiny_sd15, name), getattr(again, name))
    assert np.array_equal(images, _generate(again))

    other = build_tiny_sd15_pipeline(seed=7)
    a, b = tiny_sd15.unet.state_dict(), other.unet.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_tiny_build_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_sd15_pipeline(seed=3)
    assert torch.equal(torch.rand(3), expected)


def test_tiny_unets_have_self_attention_in_up_blocks(tiny_sdxl, tiny_sd15):
    def attn1(unet):
        return [name for name, _ in unet.named_modules() if name.endswith("attn1")]

    sdxl, sd15 = attn1(tiny_sdxl.unet), attn1(tiny_sd15.unet)
    assert len(sdxl) == 17 and sum(n.startswith("up_blocks") for n in sdxl) == 9
    assert len(sd15) == 6 and sum(n.startswith("up_blocks") for n in sd15) == 3


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_save_and_load_local_folder(tmp_path, tiny_sdxl, tiny_sd15, tiny_images, family):
    pipe = tiny_sdxl if family == "sdxl" else tiny_sd15
    pipe.save_pretrained(tmp_path)
    loaded, spec = load_diffusers_pipeline(str(tmp_path))
    assert type(loaded) is type(pipe)
    assert spec.family == family
    assert (spec.height, spec.width) == (64, 64)  # a small saved model defaults to its native size
    assert np.array_equal(tiny_images[family], _generate(loaded))


def test_load_tiny_by_registry_name():
    pipe, spec = load_diffusers_pipeline("tiny-sd15")
    assert pipeline_family(pipe) == "sd15"
    assert spec.name == "tiny-sd15" and spec.source == "tiny" and spec.height == 64
    half, _ = load_diffusers_pipeline("tiny-sd15", torch_dtype=torch.bfloat16)
    assert half.unet.dtype == torch.bfloat16 and half.text_encoder.dtype == torch.bfloat16


def test_local_folder_loads_in_the_requested_dtype(tmp_path, tiny_sd15):
    tiny_sd15.save_pretrained(tmp_path)
    loaded, _ = load_diffusers_pipeline(str(tmp_path), torch_dtype=torch.bfloat16)
    assert loaded.unet.dtype == torch.bfloat16 and loaded.vae.dtype == torch.bfloat16


@pytest.mark.parametrize("version, keyword", [("0.42.0", "dtype"), ("0.41.0", "torch_dtype")])
def test_single_file_checkpoint_gets_the_dtype_keyword_of_the_installed_diffusers(
    monkeypatch, tmp_path, tiny_sd15, version, keyword
):
    import diffusers
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file({"cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(2)}, str(checkpoint))
    calls = []

    def from_single_file(path, **kwargs):
        calls.append((path, kwargs))
        return tiny_sd15

    monkeypatch.setattr(diffusers, "__version__", version)
    monkeypatch.setattr(StableDiffusionPipeline, "from_single_file", from_single_file)
    pipe, spec = load_diffusers_pipeline(str(checkpoint), torch_dtype=torch.float16, local_files_only=True)
    assert pipe is tiny_sd15 and spec.family == "sd15"
    assert calls == [
        (
            str(checkpoint),
            {
                "local_files_only": True,
                keyword: torch.float16,
                "safety_checker": None,
                "requires_safety_checker": False,
            },
        )
    ]


@pytest.mark.parametrize("version, keyword", [("0.42.0", "dtype"), ("0.41.0", "torch_dtype")])
def test_hub_model_without_the_variant_falls_back_to_its_regular_weights(monkeypatch, tiny_sdxl, version, keyword):
    import diffusers
    from diffusers import DiffusionPipeline

    registry = {"mine": ModelSpec("mine", "owner/mine", "sdxl", 20, 4.0, 512, 512, variant="fp16")}
    calls = []

    def from_pretrained(source, **kwargs):
        calls.append((source, kwargs))
        if "variant" in kwargs:
            raise ValueError("no files of variant fp16 in owner/mine")
        return tiny_sdxl

    monkeypatch.setattr(diffusers, "__version__", version)
    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", from_pretrained)
    pipe, spec = load_diffusers_pipeline("mine", torch_dtype=torch.float16, registry=registry)
    assert pipe is tiny_sdxl and spec is registry["mine"]
    expected = {"local_files_only": False, "use_safetensors": True, keyword: torch.float16}  # no pickles
    assert calls == [("owner/mine", {"variant": "fp16", **expected}), ("owner/mine", expected)]


def test_hub_failure_other_than_the_variant_is_a_model_error(monkeypatch):
    from diffusers import DiffusionPipeline

    def from_pretrained(source, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", from_pretrained)
    with pytest.raises(ModelError, match="connection refused.*tiny-sdxl"):
        load_diffusers_pipeline("owner/elsewhere")


# ---------------------------------------------------------------------------- loading


def test_unknown_model_lists_registry_names():
    with pytest.raises(ModelError) as info:
        load_diffusers_pipeline("no such model")
    for name in ("sdxl-base", "sd15", "tiny-sdxl"):
        assert name in str(info.value)


def test_missing_local_path_is_a_model_error(tmp_path):
    with pytest.raises(ModelError):
        load_diffusers_pipeline(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(ModelError, match="no such file"):
        load_diffusers_pipeline("missing-checkpoint.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model_index.json"):
        load_diffusers_pipeline(str(tmp_path / "empty"))


def test_offline_hub_id_is_a_model_error():
    with pytest.raises(ModelError) as info:
        load_diffusers_pipeline("storydiffusion-tests/no-such-model-xyz", local_files_only=True)
    message = str(info.value)
    assert "tiny-sdxl" in message and "not in the Hugging Face cache, and downloads are off" in message
    for unasked in ("local_files_only", "stacktrace", "stack trace"):  # arguments and output the user never saw
        assert unasked not in message


def test_a_library_failure_pointing_at_a_stack_trace_is_told_without_that_hint(monkeypatch):
    from diffusers import DiffusionPipeline

    def from_pretrained(source, **kwargs):
        raise OSError("Bad header. Please check out the root cause in the stacktrace above. Try again")

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", from_pretrained)
    with pytest.raises(ModelError) as info:
        load_diffusers_pipeline("owner/elsewhere")
    assert "Bad header. Try again" in str(info.value) and "stacktrace" not in str(info.value)


@pytest.mark.parametrize(
    ("lora", "expected"),
    [
        ("missing/style.safetensors", "no such file or folder"),  # a relative path, though shaped like owner/name
        ("storydiffusion-tests/no-such-lora", "not in the Hugging Face cache"),  # a hub id, offline
    ],
)
def test_a_lora_that_cannot_be_had_says_why_in_the_users_terms(lora, expected):
    from storydiffusion.models import build_tiny_sdxl_pipeline, load_lora

    with pytest.raises(ModelError, match=expected) as info:
        load_lora(build_tiny_sdxl_pipeline(), lora, 1.0, "sdxl")
    assert "weight_name" not in str(info.value) and "offline mode" not in str(info.value)


def test_unsupported_pipeline_class():
    with pytest.raises(ModelError, match="StableDiffusionXLPipeline"):
        pipeline_family(object())


# ---------------------------------------------------------------------------- checkpoints


def test_detect_checkpoint_family(tmp_path):
    from safetensors.torch import save_file

    sdxl = tmp_path / "sdxl.safetensors"
    save_file(
        {
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": torch.zeros(2, 2),
            "conditioner.embedders.1.model.ln_final.weight": torch.zeros(2, 2),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2),
        },
        str(sdxl),
    )
    sd15 = tmp_path / "sd15.safetensors"
    save_file(
        {
            "cond_stage_model.transformer.text_model.final_layer_norm.weight": torch.zeros(2, 2),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2),
        },
        str(sd15),
    )
    junk = tmp_path / "junk.safetensors"
    save_file({"foo.bar": torch.zeros(2), "baz": torch.zeros(3)}, str(junk))
    not_safetensors = tmp_path / "text.safetensors"
    not_safetensors.write_text("hello")

    assert detect_checkpoint_family(sdxl) == "sdxl"
    assert detect_checkpoint_family(str(sd15)) == "sd15"
    with pytest.raises(ModelError):
        detect_checkpoint_family(junk)
    with pytest.raises(ModelError):
        detect_checkpoint_family(not_safetensors)
    with pytest.raises(ModelError):
        load_diffusers_pipeline(str(junk))


# ---------------------------------------------------------------------------- full-size UNets


@pytest.mark.parametrize(
    "family, low, high, attn1, attn1_up",
    [("sdxl", 2.56e9, 2.57e9, 70, 36), ("sd15", 0.85e9, 0.87e9, 16, 9)],
)
def test_full_size_unet_configs_on_meta(family, low, high, attn1, attn1_up):
    from diffusers import UNet2DConditionModel

    config = full_size_unet_config(family)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
    params = sum(p.numel() for p in unet.parameters())
    assert low <= params <= high
    assert all(p.device.type == "meta" for p in unet.parameters())
    names = [name for name, _ in unet.named_modules() if name.endswith("attn1")]
    assert len(names) == attn1
    assert sum(name.startswith("up_blocks") for name in names) == attn1_up


def test_full_size_unet_config_bad_family():
    with pytest.raises(ModelError):
        full_size_unet_config("sd3")
