"""Train the Semantic Motion Predictor on a folder of videos.

    python -m storydiffusion.motion.train --videos clips/ --out predictor/
    accelerate launch -m storydiffusion.motion.train --videos clips/ --out predictor/ --mixed-precision bf16

Each step samples clips (start, end and evenly spaced frames in between) from the cached CLIP token
embeddings of the videos and minimises the MSE between predicted and true embeddings of the
intermediate frames. The batch of a step depends only on (seed, step, process), and checkpoints hold
the model, the optimizer state (safetensors) and the RNG state (JSON), so ``--resume`` continues
exactly where the run stopped. The paper's additional loss through the video model is not
implemented: training uses the embedding loss only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..atomic import write_json
from ..cli_checks import interrupted_exit, stop_on_sigterm
from ..errors import SettingsError, StoryDiffusionError
from ..settings import SETTING_RANGES
from .checkpoints import (
    CHECKPOINT_PREFIX,
    LOG_NAME,
    STATE_NAME,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    truncate_log,
)
from .data import MotionClipDataset
from .encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL, ClipImageEncoder
from .predictor import PredictorConfig, SemanticMotionPredictor

OPTIONS_NAME = "training_options.json"
MIXED_PRECISION = ("no", "fp16", "bf16")
TRAINED_NUMBERS = tuple(name.removeprefix("train_") for name in SETTING_RANGES if name.startswith("train_"))


@dataclass
class TrainingOptions:
    """Everything a training run depends on; defaults follow the paper (ViT-H-14, 8 layers, hidden 1024)."""

    encoder: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    tiny_encoder: bool = False  # random-weight tiny OpenCLIP ViT, offline (tests, demos)
    frames: int = 16
    tokens: int = 16
    token_selection: str = "cls+pooled"
    layers: int = 8
    hidden: int = 1024
    heads: int = 16
    dropout: float = 0.0
    steps: int = 2000
    batch_size: int = 8  # per process
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    save_every: int = 500
    resume: bool = False
    seed: int = 0
    max_video_frames: int = 256
    progress: bool = True
    cpu: bool = False

    def validate(self) -> None:
        """Every option in its range, named by its flag: refused before any model loads or file is written."""
        for name in TRAINED_NUMBERS:  # their ranges: SETTING_RANGES["train_..."]
            SETTING_RANGES[f"train_{name}"].check(f"--{name.replace('_', '-')}", getattr(self, name))
        if self.mixed_precision not in MIXED_PRECISION:
            raise SettingsError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}")
        if self.token_selection == "cls" and self.tokens != 1:
            raise SettingsError(
                f"--tokens must be 1 with --token-selection cls (the CLS token alone), got {self.tokens}"
            )
        if self.token_selection == "cls+pooled" and self.tokens < 2:
            raise SettingsError(
                f"--tokens must be at least 2 with --token-selection cls+pooled (the CLS token and a pooled cell), "
                f"got {self.tokens}"
            )
        if self.hidden % self.heads:
            raise SettingsError(f"--hidden ({self.hidden}) must be divisible by --heads ({self.heads})")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingReport:
    """What a run did: steps, losses of this run (one per step), where the model went."""

    out_dir: Path
    steps: int
    start_step: int
    losses: list[float]
    checkpoints: list[Path]
    seconds: float
    config: PredictorConfig

    @property
    def first_loss(self) -> float | None:
        return self.losses[0] if self.losses else None

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


# --------------------------------------------------------------------------- training
def _load_encoder(options: TrainingOptions, device: torch.device) -> ClipImageEncoder:
    if options.tiny_encoder or options.encoder == TINY_MODEL:
        return ClipImageEncoder.tiny(seed=options.seed).to(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return ClipImageEncoder.from_pretrained(options.encoder, options.pretrained, device=device, dtype=dtype)


def _check_out_dir(out: Path, options: TrainingOptions) -> Path | None:
    """The checkpoint to resume from. A new run needs a new or empty folder: training writes config.json,
    model.safetensors and checkpoints there, and never over files it did not write."""
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} is a file: give a new or empty folder for the predictor")
    resume_from = latest_checkpoint(out) if out.is_dir() else None
    if options.resume:
        if resume_from is None:
            raise SettingsError(f"--resume: no checkpoint-STEP folder with {STATE_NAME} in {out}.")
        done = int(resume_from.name[len(CHECKPOINT_PREFIX) :])
        if done >= options.steps:
            raise SettingsError(
                f"--steps {options.steps}: the run in {out} is already at step {done}; give more steps to train further"
            )
        return resume_from
    if out.is_dir() and (resume_from or (out / LOG_NAME).exists()):
        raise SettingsError(
            f"{out} already holds a training run; pass --resume to continue it or choose another --out."
        )
    held = sorted(path.name for path in out.iterdir()) if out.is_dir() else []
    if held:
        raise SettingsError(
            f"--out {out} holds files this tool did not write ({', '.join(held[:3])}{', …' if len(held) > 3 else ''}): "
            "choose a new or empty folder for the predictor"
        )
    return None


def _predictor_config(options: TrainingOptions, encoder: ClipImageEncoder) -> PredictorConfig:
    return PredictorConfig(
        embed_dim=encoder.width,
        tokens=options.tokens,
        hidden=options.hidden,
        layers=options.layers,
        heads=options.heads,
        max_frames=max(64, options.frames),
        token_selection=options.token_selection,
        dropout=options.dropout,
        encoder_model=TINY_MODEL if options.tiny_encoder else options.encoder,
        encoder_pretrained=None if options.tiny_encoder else options.pretrained,
        encoder_layer=encoder.layer,
    )


def _train_step(
    accelerator: Any, model: Any, optimizer: Any, batch: tuple[torch.Tensor, ...], lr: float, options: TrainingOptions
) -> float:
    """One AdamW step on the MSE of the intermediate frames' embeddings; the loss averaged over processes."""
    start, end, target = (t.to(accelerator.device) for t in batch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with accelerator.autocast():
        predicted = model(start, end, options.frames)
        loss = F.mse_loss(predicted[:, 1:-1].float(), target[:, 1:-1].float())
    accelerator.backward(loss)
    if options.grad_clip > 0 and accelerator.sync_gradients:
        accelerator.clip_grad_norm_(model.parameters(), options.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(accelerator.gather(loss.detach().float().reshape(1)).mean())


def _progress_bar(options: TrainingOptions, accelerator: Any, start_step: int) -> Any:
    if not (options.progress and accelerator.is_local_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=options.steps, initial=start_step, desc="training motion predictor", unit="step")


def train_predictor(
    videos_dir: str | Path, out_dir: str | Path, options: TrainingOptions | None = None
) -> TrainingReport:
    """Train (or resume training) a predictor on ``videos_dir``; write checkpoints and the final model to ``out_dir``."""
    from accelerate import Accelerator

    options = options or TrainingOptions()
    options.validate()
    out = Path(out_dir)
    resume_from = _check_out_dir(out, options)

    accelerator = Accelerator(mixed_precision=options.mixed_precision, cpu=options.cpu)
    torch.manual_seed(options.seed + accelerator.process_index)
    encoder = _load_encoder(options, accelerator.device)
    try:
        dataset = MotionClipDataset.from_folder(
            videos_dir,
            encoder,
            options.frames,
            options.tokens,
            options.token_selection,
            max_video_frames=options.max_video_frames,
            seed=options.seed,
            progress=options.progress and accelerator.is_local_main_process,
        )
        config = _predictor_config(options, encoder)
    except StoryDiffusionError:  # the videos' own problems (no folder, too few frames): told as they are
        raise
    except ValueError as error:  # options in range that do not fit this encoder (--tokens with --token-selection all)
        name = TINY_MODEL if options.tiny_encoder else options.encoder
        raise SettingsError(f"the options do not fit the encoder {name}: {error}") from None
    del encoder  # embeddings are cached; free the (large) CLIP tower
    model = SemanticMotionPredictor(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    state = load_checkpoint(resume_from, config, model, optimizer) if resume_from is not None else None
    start_step = int(state["step"]) if state is not None else 0
    model, optimizer = accelerator.prepare(model, optimizer)
    if state is not None:
        if state.get("scaler") and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])

    log_path = out / LOG_NAME
    checkpoints: list[Path] = []
    losses: list[float] = []
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        truncate_log(log_path, start_step)
    progress = _progress_bar(options, accelerator, start_step)
    began = time.perf_counter()
    model.train()
    world, rank, size = accelerator.num_processes, accelerator.process_index, options.batch_size
    for step in range(start_step, options.steps):
        first = (step * world + rank) * size
        lr = options.lr * min(1.0, (step + 1) / max(1, options.warmup_steps))
        value = _train_step(accelerator, model, optimizer, dataset.batch(range(first, first + size)), lr, options)
        if not math.isfinite(value):
            raise StoryDiffusionError(
                f"training diverged at step {step + 1} (loss {value}); lower --lr or use bf16/no mixed precision."
            )
        losses.append(value)
        done = step + 1
        if accelerator.is_main_process:
            with log_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps({"step": done, "loss": value, "lr": lr}) + "\n")
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{value:.4g}")
        if done % options.save_every == 0 or done == options.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                folder = out / f"{CHECKPOINT_PREFIX}{done}"
                save_checkpoint(
                    folder, accelerator.unwrap_model(model), optimizer, accelerator.scaler, done, options.to_json()
                )
                checkpoints.append(folder)
    if progress is not None:
        progress.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out)
        write_json(out / OPTIONS_NAME, options.to_json())
    return TrainingReport(out, options.steps, start_step, losses, checkpoints, time.perf_counter() - began, config)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    d = TrainingOptions()
    p = argparse.ArgumentParser(
        prog="python -m storydiffusion.motion.train",
        description="Train the Semantic Motion Predictor (CLIP image space) on a folder of videos.",
    )
    p.add_argument("--videos", required=True, help="folder of videos (mp4, webm, mov, gif, avi, mkv)")
    p.add_argument(
        "--out", required=True, help="output folder: checkpoints, train_log.jsonl, config.json + model.safetensors"
    )
    p.add_argument("--encoder", default=d.encoder, help=f"OpenCLIP model name (default {d.encoder})")
    p.add_argument("--pretrained", default=d.pretrained, help=f"OpenCLIP pretrained tag (default {d.pretrained})")
    p.add_argument(
        "--tiny-encoder", action="store_true", help="tiny random-weight encoder, offline (tests and demos only)"
    )
    for name, kind, help_text in [
        ("frames", int, "frames per clip, start and end included"),
        ("tokens", int, "tokens kept per frame"),
        ("layers", int, "transformer layers (paper: 8)"),
        ("hidden", int, "transformer width (paper: 1024)"),
        ("heads", int, "attention heads"),
        ("steps", int, "total optimisation steps"),
        ("batch-size", int, "clips per step and process"),
        ("lr", float, "AdamW learning rate"),
        ("weight-decay", float, "AdamW weight decay"),
        ("warmup-steps", int, "linear learning-rate warm-up"),
        ("save-every", int, "checkpoint interval in steps"),
        ("seed", int, "seed for weights and clip sampling"),
        ("max-video-frames", int, "frames read per video at most"),
    ]:
        attr = name.replace("-", "_")
        p.add_argument(
            f"--{name}", type=kind, default=getattr(d, attr), help=f"{help_text} (default {getattr(d, attr)})"
        )
    p.add_argument("--token-selection", default=d.token_selection, choices=["cls+pooled", "pooled", "cls", "all"])
    p.add_argument("--mixed-precision", default=d.mixed_precision, choices=list(MIXED_PRECISION))
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keys = {f for f in TrainingOptions.__dataclass_fields__ if f != "progress"}
    options = TrainingOptions(**{k: v for k, v in vars(args).items() if k in keys}, progress=not args.no_progress)
    stop_on_sigterm()
    try:
        report = train_predictor(args.videos, args.out, options)
    except StoryDiffusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(
            f"interrupted: {args.out} keeps its last checkpoint; run the same command with --resume to continue",
            file=sys.stderr,
        )
        return interrupted_exit(stop)
    print(
        f"trained {report.steps} steps (from {report.start_step}) in {report.seconds:.1f} s; "
        f"final loss {report.final_loss}; model in {report.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
