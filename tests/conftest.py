"""Tests never reach a hub: everything runs on tiny models built offline."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def tiny_sdxl():
    """One StoryPipeline on the tiny SDXL model, shared: runs own no state of the pipeline."""
    from storydiffusion.pipeline import StoryPipeline

    return StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")


@pytest.fixture(scope="session")
def tiny_sd15():
    from storydiffusion.pipeline import StoryPipeline

    return StoryPipeline.from_pretrained("tiny-sd15", device="cpu")
