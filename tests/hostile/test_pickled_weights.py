"""Weights a user names are read from .safetensors only: a pickle (.bin, .ckpt, .pt) can run code as it
loads, so a model folder or a LoRA that holds one is refused unread, before any model loads."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from storydiffusion.cli_checks import check_lora_flag, check_model_flag
from storydiffusion.errors import ModelError, StoryDiffusionError
from storydiffusion.models import build_tiny_sd15_pipeline, load_diffusers_pipeline


class Payload:
    """What a hostile pickle does when it is read: here, leave a file behind."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(Payload(marker)))
    return path


def test_a_model_folder_saved_as_pickles_is_refused_unread(tmp_path):
    folder, marker = tmp_path / "model", tmp_path / "ran"
    build_tiny_sd15_pipeline().save_pretrained(folder, safe_serialization=False)
    hostile_pickle(folder / "unet" / "diffusion_pytorch_model.bin", marker)
    with pytest.raises(StoryDiffusionError, match=r"unet/diffusion_pytorch_model\.bin is a pickle"):
        check_model_flag(str(folder))  # the command line, before torch loads a model
    with pytest.raises(ModelError, match=r"is a pickle \(only \.safetensors weights are read"):
        load_diffusers_pipeline(str(folder))  # the library, as the studio and scripts call it
    assert not marker.exists()


def test_a_model_folder_with_safetensors_beside_a_stray_pickle_still_loads(tmp_path):
    folder = tmp_path / "model"
    build_tiny_sd15_pipeline().save_pretrained(folder)
    (folder / "unet" / "old.bin").write_bytes(b"never read")  # safetensors beside it: that is what is read
    check_model_flag(str(folder))
    loaded, spec = load_diffusers_pipeline(str(folder))
    assert spec.family == "sd15" and loaded.unet is not None


@pytest.mark.parametrize("name", ["style.bin", "style.pt", "style.ckpt", "style.pth", "style"])
def test_a_lora_file_that_is_not_safetensors_is_refused_before_any_model_loads(tmp_path, name):
    lora = hostile_pickle(tmp_path / name, tmp_path / "ran")
    with pytest.raises(StoryDiffusionError, match=r"^--lora: LoRA .*: only \.safetensors files are read"):
        check_lora_flag(str(lora))
    assert not (tmp_path / "ran").exists()


def test_a_lora_folder_must_hold_one_safetensors_file_or_the_one_diffusers_saves(tmp_path):
    pickles = tmp_path / "pickles"
    hostile_pickle(pickles / "pytorch_lora_weights.bin", tmp_path / "ran")
    with pytest.raises(StoryDiffusionError, match="the folder holds no .safetensors file"):
        check_lora_flag(str(pickles))
    several = tmp_path / "several"
    several.mkdir()
    for name in ("a.safetensors", "b.safetensors"):
        (several / name).write_bytes(b"{}")
    with pytest.raises(StoryDiffusionError, match="holds 2 .safetensors files; give the LoRA's file itself"):
        check_lora_flag(str(several))
    (several / "pytorch_lora_weights.safetensors").write_bytes(b"{}")
    check_lora_flag(str(several))  # the file diffusers saves is the one read
    assert not (tmp_path / "ran").exists()
