"""The model registry: named models with their defaults, family defaults for the rest, clear errors."""

import pytest

from storydiffusion.errors import ModelError
from storydiffusion.models import ModelSpec, default_model_name, family_spec, load_model_registry

ENTRY = "    source: a/b\n    family: {family}\n    steps: 1\n    guidance: 1\n    height: 8\n    width: 8\n"


def write_registry(tmp_path, text):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    return path


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


def test_default_model_is_the_default_key_else_the_first_entry(tmp_path):
    with_default = write_registry(
        tmp_path, "default: b\nmodels:\n  a:\n" + ENTRY.format(family="sd15") + "  b:\n" + ENTRY.format(family="sdxl")
    )
    assert default_model_name(path=with_default) == "b"
    without = write_registry(
        tmp_path, "models:\n  a:\n" + ENTRY.format(family="sd15") + "  b:\n" + ENTRY.format(family="sdxl")
    )
    assert default_model_name(path=without) == "a"


def test_registry_refuses_a_default_it_does_not_list(tmp_path):
    path = write_registry(tmp_path, "default: c\nmodels:\n  a:\n" + ENTRY.format(family="sd15"))
    with pytest.raises(ModelError, match="default 'c'"):
        load_model_registry(path)


def test_registry_names_missing_and_unknown_keys(tmp_path):
    with pytest.raises(ModelError, match="lacks steps"):
        load_model_registry(write_registry(tmp_path, "models:\n  a:\n    source: a/b\n    family: sd15\n"))
    extra = "models:\n  a:\n" + ENTRY.format(family="sd15") + "    colour: red\n"
    with pytest.raises(ModelError, match="unknown keys colour"):
        load_model_registry(write_registry(tmp_path, extra))
    with pytest.raises(ModelError, match="non-empty"):
        load_model_registry(write_registry(tmp_path, "models: {}\n"))


def test_family_defaults_for_models_outside_the_registry():
    sdxl = family_spec("mine", "owner/mine", "sdxl")
    assert (sdxl.steps, sdxl.guidance, sdxl.height, sdxl.width) == (30, 5.0, 768, 768)
    sd15 = family_spec("old", "owner/old", "sd15", description="an SD 1.5 model")
    assert (sd15.steps, sd15.guidance, sd15.height, sd15.width) == (30, 7.0, 512, 512)
    assert sd15.description == "an SD 1.5 model" and sd15.source == "owner/old"
    with pytest.raises(ModelError, match="flux"):
        family_spec("new", "owner/new", "flux")
