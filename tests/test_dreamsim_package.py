"""DreamSim's own package (its ensemble of DINO, CLIP and OpenCLIP ViT-B/16 with its LoRA) on a cache folder of
random weights built here in the published layout, through ``load_dreamsim`` and ``evaluate --dreamsim``.
Skipped where DreamSim is not installed (it is optional: ``pip install dreamsim``)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

pytest.importorskip("dreamsim")
pytest.importorskip("peft")

from storydiffusion.evaluation.extra_models import DREAMSIM_FILES, load_dreamsim  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# torch.hub's copy of the DINO repository holds its code; this stand-in builds the same ViT-B/16 with DreamSim's
# own copy of that architecture, and loads its weights from the hub's checkpoints folder as the original does.
HUBCONF = """
import torch
from dreamsim.feature_extraction.vision_transformer import vit_base

dependencies = ["torch"]


def dino_vitb16(pretrained=True, **kwargs):
    model = vit_base(patch_size=16, num_classes=0, **kwargs)
    if pretrained:
        url = "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"
        model.load_state_dict(torch.hub.load_state_dict_from_url(url, map_location="cpu"))
    return model
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    from dreamsim.config import dreamsim_args
    from dreamsim.feature_extraction.vision_transformer import DINOHead, vit_base
    from dreamsim.model import PerceptualModel
    from peft import LoraConfig, get_peft_model

    folder = tmp_path_factory.mktemp("dreamsim")
    torch.manual_seed(0)
    (folder / "facebookresearch_dino_main").mkdir()
    (folder / "facebookresearch_dino_main" / "hubconf.py").write_text(HUBCONF, encoding="utf-8")
    (folder / "checkpoints").mkdir()
    torch.save(vit_base(patch_size=16, num_classes=0).state_dict(), folder / "checkpoints/dino_vitbase16_pretrain.pth")
    student = {f"module.head.{key}": value for key, value in DINOHead(768, 2048).state_dict().items()}
    student["module.head.last_layer.weight"] = torch.randn(2048, 256)
    torch.save({"student": student}, folder / "dino_vitb16_pretrain.pth")
    for name in ("clip_vitb16_pretrain.pth.tar", "open_clip_vitb16_pretrain.pth.tar"):
        vit = vit_base(patch_size=16)
        vit.pos_drop = torch.nn.LayerNorm(vit.embed_dim)
        torch.save({"state_dict": {**vit.state_dict(), "proj": torch.randn(768, 512) / 28}}, folder / name)
    torch.hub.set_dir(str(folder))
    model = PerceptualModel(**dreamsim_args["model_config"]["ensemble"], device="cpu", load_dir=str(folder))
    lora = LoraConfig(r=16, lora_alpha=0.5, lora_dropout=0.3, bias="none", target_modules=["qkv"])
    get_peft_model(model, lora).save_pretrained(str(folder / "ensemble_lora"))
    assert all((folder / name).is_file() for name in DREAMSIM_FILES)
    return folder


def picture(colour: str, box: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGB", (96, 96), colour)
    image.paste((255, 255, 255), box)
    return image


@pytest.mark.slow
def test_dreamsim_distance_is_zero_for_the_same_image_and_positive_for_another(cache):
    model = load_dreamsim(cache)
    same, other = picture("red", (10, 10, 40, 80)), picture("navy", (50, 5, 90, 30))
    embeddings = model.encode_images([same, same, other])
    assert embeddings.shape[0] == 3 and torch.allclose(embeddings.norm(dim=-1), torch.ones(3), atol=1e-5)
    distance = 1 - embeddings @ embeddings.T
    assert abs(distance[0, 1].item()) < 1e-5 and distance[0, 2].item() > 1e-3


@pytest.mark.slow
def test_evaluate_json_stays_json_with_dreamsim(cache, tmp_path):
    story = tmp_path / "story.yaml"
    story.write_text(
        "characters: {Bob: a man}\npanels: ['[Bob] walks', '[Bob] runs']\n"
        "settings: {steps: 2, id_images: 1, height: 64, width: 64}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    command = [sys.executable, "-m", "storydiffusion"]
    made = subprocess.run(
        [*command, "generate", str(story), "--out", str(tmp_path / "run"), "--model", "tiny-sdxl", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    scored = subprocess.run(
        [*command, "evaluate", str(tmp_path / "run"), "--encoder", "tiny", "--dreamsim", str(cache), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert scored.returncode == 0, scored.stderr
    scores = json.loads(scored.stdout)  # nothing the package printed while loading
    assert 0 <= scores["characters"]["Bob"]["dreamsim"] <= 2 and scores["summary"]["dreamsim"] is not None
    assert str(cache) not in scored.stdout + scored.stderr
