"""A misspelt --model is refused in a moment: by name, exit 2, before torch or diffusers are imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storydiffusion.errors import ModelError
from storydiffusion.models.registry import check_model_name, load_model_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Runs the CLI in a fresh interpreter and reports its exit code and which heavy libraries it imported.
PROBE = """
import json, sys
from storydiffusion.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)}))
"""


def _probe(args: list[str], tmp_path: Path) -> tuple[dict, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["generate", str(EXAMPLES / "two_friends.yaml"), "--out", "run"],
        ["plan", str(EXAMPLES / "two_friends.yaml")],
        ["benchmark", str(EXAMPLES / "benchmark" / "subjects.yaml"), "--out", "bench"],
    ],
    ids=["generate", "plan", "benchmark"],
)
@pytest.mark.parametrize(
    ("model", "words"),
    [("tiny", "Unknown model 'tiny': not a registry name"), ("./sdxl.safetensors", "looks like a path")],
)
def test_a_model_that_is_nowhere_is_refused_before_torch_loads(command, model, words, tmp_path):
    report, stderr = _probe([*command, "--model", model], tmp_path)
    assert report == {"code": 2, "heavy": []}
    assert words in stderr and "tiny-sdxl" in stderr  # the names that would have worked
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output folder was made


def test_names_that_may_load_pass_the_check(tmp_path):
    registry = load_model_registry()
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    for name in ("tiny-sdxl", "stabilityai/stable-diffusion-xl-base-1.0", str(tmp_path), str(weights)):
        check_model_name(name, registry)
    for name in ("tiny", "no such model", str(tmp_path / "gone.safetensors"), "~/gone", "a/b/c"):
        with pytest.raises(ModelError, match=repr(name).replace("\\", "\\\\")[1:-1]):
            check_model_name(name, registry)
