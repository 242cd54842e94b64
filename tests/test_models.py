"""Model registry, offline tokenizer, tiny pipelines, checkpoint detection, full-size UNet configs, devices."""

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
    default_model_name,
    detect_checkpoint_family,
    full_size_unet_config,
    load_diffusers_pipeline,
    load_model_registry,
    pipeline_family,
    select_device,
    select_dtype,
)
from storydiffusion.tokenizer import build_clip_tokenizer

SENTENCES = [
    "a photo of a cat",
    "A man with a red hat walks through the rainy city at night, cinematic lighting.",
    "The girl, 12 years old; smiles!! (comic style) #panel-3",
    "Dr. Watson's dog can't stop barking at the moon",
]


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


# ---------------------------------------------------------------------------- tokenizer


def test_tokenizer_special_ids_and_size():
    tok = build_clip_tokenizer()
    assert tok.bos_token_id == 49406
    assert tok.eos_token_id == 49407
    assert len(tok) == 49408
    assert tok.model_max_length == 77
    assert tok.pad_token_id == 49407
    tok2 = build_clip_tokenizer(pad_token="!")
    assert tok2.pad_token_id == tok2.convert_tokens_to_ids("!") == 0


def test_tokenizer_matches_open_clip():
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer()
    tok = build_clip_tokenizer()
    for sentence in SENTENCES:
        ids = tok(sentence).input_ids
        assert ids[0] == 49406 and ids[-1] == 49407
        assert ids[1:-1] == reference.encode(sentence), sentence
    padded = tok(SENTENCES[0], padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77


def test_tokenizer_without_open_clip_is_a_model_error(monkeypatch):
    import importlib.util

    from storydiffusion import tokenizer as tokenizer_module

    real = importlib.util.find_spec
    monkeypatch.setattr(
        tokenizer_module.importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a)
    )
    with pytest.raises(ModelError, match="open_clip_torch"):
        build_clip_tokenizer()


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


# ---------------------------------------------------------------------------- registry and loading


def test_registry_entries():
    registry = load_model_registry()
    assert default_model_name(registry) == "sdxl-base"
    assert {"sdxl-base", "realvisxl-v4", "sd15", "tiny-sdxl", "tiny-sd15"} <= set(registry)
    assert all(isinstance(spec, ModelSpec) for spec in registry.values())
    assert registry["tiny-sdxl"].family == "sdxl" and registry["tiny-sd15"].family == "sd15"
    assert registry["tiny-sdxl"].source == "tiny" and registry["tiny-sdxl"].height == 64
    assert registry["sdxl-base"].source == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (registry["sdxl-base"].height, registry["sdxl-base"].width) == (768, 768)
    assert registry["realvisxl-v4"].source == "SG161222/RealVisXL_V4.0"
    assert registry["sd15"].family == "sd15" and registry["sd15"].guidance == 7.0


def test_registry_bad_file(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text(
        "models:\n  x:\n    source: a/b\n    family: flux\n    steps: 1\n    guidance: 1\n    height: 8\n    width: 8\n"
    )
    with pytest.raises(ModelError, match="flux"):
        load_model_registry(bad)
    with pytest.raises(ModelError):
        load_model_registry(tmp_path / "missing.yaml")


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
    assert "tiny-sdxl" in str(info.value)


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


# ---------------------------------------------------------------------------- devices


def test_select_device_and_dtype_cpu():
    assert select_device("cpu") == torch.device("cpu")
    auto = select_device()
    assert auto.type in ("cpu", "cuda", "mps")
    cpu = torch.device("cpu")
    assert select_dtype(cpu) == torch.float32
    assert select_dtype("cpu", "auto") == torch.float32
    assert select_dtype(cpu, "bfloat16") == torch.bfloat16
    assert select_dtype(cpu, "float16") == torch.float16
    assert select_dtype(cpu, "float32") == torch.float32
    assert select_dtype(torch.device("cuda"), "auto") == torch.float16
    assert select_dtype(torch.device("cuda"), "bfloat16") == torch.bfloat16
    assert select_dtype(torch.device("mps")) == torch.float16


def test_select_device_and_dtype_bad_names():
    with pytest.raises(ModelError):
        select_device("gpu-please")
    with pytest.raises(ModelError):
        select_device("xla")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA"):
            select_device("cuda")
    with pytest.raises(ModelError):
        select_dtype(torch.device("cpu"), "float8")
