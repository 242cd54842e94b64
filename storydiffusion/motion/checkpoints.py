"""The training run folder: checkpoints (safetensors + JSON, no pickles) and the step log.

A checkpoint holds the model, the AdamW state (tensors in safetensors, the rest in JSON) and the
RNG state, so a resumed run continues exactly; it is written to a temporary folder and renamed, so
it is complete or absent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path, atomic_write_bytes
from ..errors import SettingsError, shown
from ..structured import InputFileError, check_regular_file, parse_json, read_text
from .checks import AnimationError
from .predictor import CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, PredictorConfig, SemanticMotionPredictor

LOG_NAME = "train_log.jsonl"
STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
CHECKPOINT_PREFIX = "checkpoint-"
MAX_CONFIG_INTEGER = 2**16  # widths, layers, heads and tokens of a predictor that fits in memory
MAX_CONFIG_FLOAT = 64.0  # dropout and mlp_ratio


def read_predictor_config(folder: str | os.PathLike, label: str = "--predictor") -> PredictorConfig:
    """The checked config of a predictor folder (``config.json`` beside ``model.safetensors``), read
    through the structured-file limits, so a broken folder is refused before any model loads."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise AnimationError(
            f"{label} {folder} {what}: give the folder of a trained motion predictor ({CONFIG_NAME} + {WEIGHTS_NAME})"
        )
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not (folder / WEIGHTS_NAME).exists():
        raise AnimationError(
            f"{label} {folder} has no {WEIGHTS_NAME} but {', '.join(pickles[:3])}: pickle checkpoints are never "
            "loaded (they can run code); convert them to safetensors"
        )
    try:
        check_regular_file(folder / WEIGHTS_NAME, f"{label} weights")
        path = folder / CONFIG_NAME
        data = parse_json(read_text(path, f"{label} config"), f"{label} {path}")
    except InputFileError as error:
        raise AnimationError(str(error)) from None
    if not isinstance(data, dict):
        raise AnimationError(f"{label} {path} must hold a mapping of settings, not {shown(data)}")
    for field in dataclasses.fields(PredictorConfig):
        if field.name in data:
            optional = "None" in str(field.type)  # e.g. encoder_pretrained: str | None
            _check_config_value(field.name, field.default, data[field.name], f"{label} {path}", optional)
    try:
        return PredictorConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise AnimationError(f"{label} {path}: {error}") from None


def _check_config_value(name: str, default: Any, value: Any, where: str, optional: bool) -> None:
    """A value of the kind its default is: whole numbers, numbers or text, each of a sane size."""
    if value is None and optional:
        return
    if isinstance(default, str):
        fits, expected = isinstance(value, str), "text"
    elif isinstance(default, int):
        fits = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONFIG_INTEGER
        expected = f"a whole number 1..{MAX_CONFIG_INTEGER}"
    else:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        fits = fits and math.isfinite(value) and 0 <= value <= MAX_CONFIG_FLOAT
        expected = f"a number between 0 and {MAX_CONFIG_FLOAT:g}"
    if not fits:
        raise AnimationError(f"{where}: {name} must be {expected}, got {shown(value)}")


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The complete checkpoint (one with its trainer state) with the highest step, if any."""
    found = []
    for path in out_dir.glob(f"{CHECKPOINT_PREFIX}*"):
        suffix = path.name[len(CHECKPOINT_PREFIX) :]
        if suffix.isdigit() and (path / STATE_NAME).is_file():
            found.append((int(suffix), path))
    return max(found)[1] if found else None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors for safetensors, JSON for the rest): no pickles."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the RNG state a checkpoint saved (CUDA only on the same number of GPUs)."""
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_checkpoint(
    folder: Path, model: SemanticMotionPredictor, optimizer: Any, scaler: Any, step: int, options: dict[str, Any]
) -> None:
    """Write into a temporary folder and rename, so a checkpoint is either complete or absent."""
    with atomic_path(folder) as tmp:
        model.save_pretrained(tmp)
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_NAME))
        state = {
            "step": step,
            "seed": options["seed"],
            "rng": _rng_state(),
            "optimizer": meta,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "options": options,
        }
        (tmp / STATE_NAME).write_text(json.dumps(state) + "\n", encoding="utf-8")


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint a resumed run starts from)."""
    if not log_path.is_file():
        return
    keep = [
        line
        for line in log_path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    atomic_write_bytes(log_path, "".join(line + "\n" for line in keep).encode("utf-8"))


def load_checkpoint(
    folder: Path, config: PredictorConfig, model: SemanticMotionPredictor, optimizer: Any
) -> dict[str, Any]:
    """Load the weights and optimizer state of ``folder`` and return its trainer state (step, RNG, scaler).

    The options saved with the state are not read back: the command line decides them, and keys
    that older versions wrote are simply ignored.
    """
    saved = read_predictor_config(folder, "checkpoint")
    if saved != config:
        raise SettingsError(f"{folder} was trained with another architecture ({saved}); resume with the same options.")
    try:
        state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        optimizer.load_state_dict(_unflatten_optimizer(load_file(str(folder / OPTIMIZER_NAME)), state["optimizer"]))
        int(state["step"]), state["rng"]["torch"]  # what a resume reads next
    except Exception as error:  # cut short, edited or mixed up: JSON, safetensors and torch each raise their own
        raise SettingsError(
            f"--resume: {folder.name} is damaged ({type(error).__name__}: {str(error)[:120]}); delete that folder "
            "to resume from the checkpoint before it"
        ) from None
    return state
