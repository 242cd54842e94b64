"""Device and dtype choice, placing a pipeline, and the dtype keyword of the installed diffusers."""

import diffusers
import pytest
import torch

from storydiffusion.errors import ModelError
from storydiffusion.models import dtype_kwargs, place_pipeline, select_device, select_dtype


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


@pytest.mark.parametrize(
    "version, keyword",
    [
        ("0.42.1", "dtype"),
        ("0.43.0.dev0", "dtype"),
        ("1.0.0", "dtype"),
        ("0.41.0", "torch_dtype"),
        ("0.30.3", "torch_dtype"),
    ],
)
def test_dtype_keyword_follows_the_installed_diffusers(monkeypatch, version, keyword):
    monkeypatch.setattr(diffusers, "__version__", version)
    assert dtype_kwargs(torch.bfloat16) == {keyword: torch.bfloat16}
    assert dtype_kwargs(None) == {}


class FakeVae:
    def __init__(self):
        self.slicing = self.tiling = False

    def enable_slicing(self):
        self.slicing = True

    def enable_tiling(self):
        self.tiling = True


class FakePipe:
    def __init__(self):
        self.vae, self.moved_to, self.offloaded_to = FakeVae(), None, None

    def to(self, device):
        self.moved_to = device

    def enable_model_cpu_offload(self, device):
        self.offloaded_to = device


def test_place_pipeline_moves_it_and_sets_the_vae_options():
    pipe = place_pipeline(FakePipe(), torch.device("cpu"), cpu_offload=True, vae_tiling=True)
    assert pipe.moved_to == torch.device("cpu") and pipe.offloaded_to is None  # offload is for CUDA only
    assert pipe.vae.tiling and not pipe.vae.slicing
    cuda = place_pipeline(FakePipe(), torch.device("cuda"), cpu_offload=True, vae_slicing=True)
    assert cuda.offloaded_to == torch.device("cuda") and cuda.moved_to is None
    assert cuda.vae.slicing and not cuda.vae.tiling
