"""Tests never reach a hub: everything runs on tiny models built offline."""

import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def pytest_configure(config):
    """Under pytest-xdist each worker gets its share of the cores, not all of them each: two workers
    on two cores that each start two torch threads spend their time waiting for one another."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        share = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(share)
        os.environ.setdefault("OMP_NUM_THREADS", str(share))  # and the commands a test starts, likewise


@pytest.fixture(scope="session")
def tiny_sdxl():
    """One StoryPipeline on the tiny SDXL model, shared: runs own no state of the pipeline."""
    from storydiffusion.pipeline import StoryPipeline

    return StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")


@pytest.fixture(scope="session")
def tiny_sd15():
    from storydiffusion.pipeline import StoryPipeline

    return StoryPipeline.from_pretrained("tiny-sd15", device="cpu")


@pytest.fixture
def cast():
    """Bob and Alice, the characters of the story tests."""
    from story_helpers import CHARACTERS

    from storydiffusion.story import parse_characters

    return parse_characters(CHARACTERS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a fixture can tell whether its test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)
