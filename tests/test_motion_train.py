"""Training the motion predictor on a synthetic video set: it learns curved motion, resumes exactly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from storydiffusion.errors import SettingsError
from storydiffusion.motion.checkpoints import latest_checkpoint
from storydiffusion.motion.data import MotionClipDataset, list_videos, read_frames, sample_clip
from storydiffusion.motion.encoder import ClipImageEncoder
from storydiffusion.motion.predictor import SemanticMotionPredictor, linear_interpolation
from storydiffusion.motion.train import TrainingOptions, train_predictor

ROOT = Path(__file__).resolve().parent.parent
PALETTE = [(255, 60, 60), (60, 220, 60), (80, 120, 255)]
FRAMES, TOKENS = 8, 5


def _write_clip(path: Path, rng: np.random.Generator, size: int = 64) -> None:
    """A coloured disc or square travelling along an arc of a circle around the centre, at its own speed."""
    import imageio.v3 as iio

    count = int(rng.integers(16, 25))
    colour = PALETTE[int(rng.integers(0, len(PALETTE)))]
    angle0 = rng.uniform(0, 2 * math.pi)
    sweep = rng.uniform(0.6, 1.0) * math.pi * rng.choice([-1, 1])
    square = bool(rng.integers(0, 2))
    frames = []
    for i in range(count):
        angle = angle0 + sweep * i / (count - 1)
        x, y = size / 2 + 18 * math.cos(angle), size / 2 + 18 * math.sin(angle)
        image = Image.new("RGB", (size, size), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        (draw.rectangle if square else draw.ellipse)((x - 7, y - 7, x + 7, y + 7), fill=colour)
        frames.append(np.asarray(image))
    iio.imwrite(path, np.stack(frames), fps=8)


def _write_set(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        _write_clip(folder / f"clip_{k:02d}.mp4", rng)
    return folder


def _tiny_options(**overrides) -> TrainingOptions:
    base = dict(
        tiny_encoder=True,
        frames=FRAMES,
        tokens=TOKENS,
        layers=2,
        hidden=64,
        heads=4,
        steps=800,
        batch_size=16,
        lr=2e-3,
        warmup_steps=20,
        save_every=400,
        progress=False,
        cpu=True,
        seed=0,
    )
    base.update(overrides)
    return TrainingOptions(**base)


def _small(**overrides) -> TrainingOptions:
    """A smaller predictor and batch: what resuming must keep exact does not depend on the size."""
    return _tiny_options(**{"layers": 1, "hidden": 32, "batch_size": 4, **overrides})


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("motion_videos")
    return _write_set(root / "train", 24, seed=0), _write_set(root / "held_out", 6, seed=1)


@pytest.fixture(scope="module")
def few_videos(tmp_path_factory) -> Path:
    """Four clips: for what does not depend on learning (resuming, checkpoints, the command), each clip
    read costs an ffmpeg process every time a run builds its dataset."""
    return _write_set(tmp_path_factory.mktemp("motion_videos") / "few", 4, seed=2)


@pytest.fixture(scope="module")
def trained(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("motion_run") / "predictor"
    return train_predictor(videos[0], out, _tiny_options())


def test_reading_and_sampling(videos):
    paths = list_videos(videos[0])
    assert len(paths) == 24
    frames = read_frames(paths[0])
    assert 16 <= len(frames) <= 24 and frames[0].size == (64, 64)
    assert len(read_frames(paths[0], max_frames=5)) == 5
    indices = sample_clip(20, 8, torch.Generator().manual_seed(0))
    steps = {b - a for a, b in zip(indices, indices[1:])}
    assert len(indices) == 8 and len(steps) == 1 and steps.pop() >= 1 and indices[-1] < 20


def test_unreadable_video_is_a_clear_error(tmp_path):
    from storydiffusion.motion.data import VideoDataError

    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoDataError, match="Cannot read video"):
        read_frames(bad)


@pytest.mark.slow
def test_training_lowers_loss_and_beats_linear_interpolation(trained, videos):
    losses = trained.losses
    assert len(losses) == 800
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    print(f"\ntraining loss: first-20 mean {first:.5f}, last-20 mean {last:.5f} ({last / first:.2f}x)")
    assert last < 0.5 * first

    model = SemanticMotionPredictor.from_pretrained(trained.out_dir)
    held = MotionClipDataset.from_folder(videos[1], ClipImageEncoder.tiny(seed=0), FRAMES, TOKENS, seed=123)
    start, end, target = held.batch(range(256))
    predicted = model.predict(start, end, FRAMES)
    linear = linear_interpolation(start, end, FRAMES).transpose(0, 1)
    mse_model = F.mse_loss(predicted[:, 1:-1], target[:, 1:-1]).item()
    mse_linear = F.mse_loss(linear[:, 1:-1], target[:, 1:-1]).item()
    print(f"held-out MSE: predictor {mse_model:.5f}, linear {mse_linear:.5f} ({mse_model / mse_linear:.2f}x)")
    assert mse_model < 0.8 * mse_linear
    assert torch.equal(predicted[:, 0], start) and torch.equal(predicted[:, -1], end)


@pytest.mark.slow
def test_outputs_are_safetensors_and_json_only(trained):
    out = trained.out_dir
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-400", "checkpoint-800"]
    assert {p.name for p in (out / "checkpoint-400").iterdir()} == {
        "config.json",
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    }
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".jsonl", ".safetensors"}, suffixes
    assert not [p for p in out.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 801))
    state = json.loads((out / "checkpoint-400" / "trainer_state.json").read_text())
    assert state["step"] == 400 and state["seed"] == 0 and isinstance(state["rng"]["torch"], list)


@pytest.mark.slow
def test_resume_continues_exactly(few_videos, tmp_path):
    straight = train_predictor(few_videos, tmp_path / "straight", _small(steps=40, save_every=20))
    part = tmp_path / "resumed"
    train_predictor(few_videos, part, _small(steps=20, save_every=20))
    state_file = part / "checkpoint-20" / "trainer_state.json"  # as older versions wrote it: a removed option
    state = json.loads(state_file.read_text())
    state["options"]["video_loss_weight"] = 0.0
    state_file.write_text(json.dumps(state))
    with (part / "train_log.jsonl").open("a") as log:  # a step logged after the checkpoint, then interrupted
        log.write(json.dumps({"step": 21, "loss": 1.0, "lr": 0.0}) + "\n")
    with pytest.raises(SettingsError, match="--resume"):
        train_predictor(few_videos, part, _small(steps=40, save_every=20))
    resumed = train_predictor(few_videos, part, _small(steps=40, save_every=20, resume=True))
    assert resumed.start_step == 20 and len(resumed.losses) == 20
    assert latest_checkpoint(part).name == "checkpoint-40"
    log = [json.loads(line) for line in (part / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert resumed.losses == pytest.approx(straight.losses[20:], rel=1e-5, abs=1e-8)
    a = SemanticMotionPredictor.from_pretrained(straight.out_dir).state_dict()
    b = SemanticMotionPredictor.from_pretrained(part).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_without_checkpoint_is_refused(few_videos, tmp_path):
    with pytest.raises(SettingsError, match="no checkpoint"):
        train_predictor(few_videos, tmp_path / "empty", _tiny_options(steps=2, resume=True))


def test_the_videos_own_problem_is_told_as_it_is_and_a_misfit_option_names_the_encoder_in_use(few_videos, tmp_path):
    from storydiffusion.motion.data import VideoDataError

    with pytest.raises(VideoDataError) as missing:
        train_predictor(tmp_path / "nowhere", tmp_path / "a", _small(steps=1))
    assert str(missing.value).startswith("Video folder") and "encoder" not in str(missing.value)
    with pytest.raises(SettingsError, match="^the options do not fit the encoder tiny: token selection 'all' needs"):
        train_predictor(few_videos, tmp_path / "b", _small(steps=1, tokens=3, token_selection="all"))


@pytest.mark.slow
def test_cli_help_and_tiny_run(few_videos, tmp_path, capsys):
    from storydiffusion.motion import train

    help_text = train.build_parser().format_help()
    assert "--resume" in help_text and "--mixed-precision" in help_text
    assert "--video-loss-weight" not in help_text  # the paper's video loss is not implemented
    out = tmp_path / "cli"
    flags = ["--tiny-encoder", "--frames", "6", "--tokens", "5", "--layers", "1", "--hidden", "32", "--heads", "2"]
    flags += ["--steps", "5", "--batch-size", "4", "--save-every", "5", "--no-progress", "--cpu"]
    run = subprocess.run(  # the module runs as a command (the one process this test starts)
        [sys.executable, "-m", "storydiffusion.motion.train", "--videos", str(few_videos), "--out", str(out), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "model.safetensors").is_file() and (out / "checkpoint-5" / "optimizer.safetensors").is_file()
    assert SemanticMotionPredictor.from_pretrained(out).config.layers == 1
    assert train.main(["--videos", str(few_videos), "--out", str(out), "--tiny-encoder", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


TINY_FLAGS = ["--tiny-encoder", "--frames", "4", "--tokens", "2", "--layers", "1", "--hidden", "16", "--heads", "2"]
TINY_FLAGS += ["--steps", "1", "--batch-size", "1", "--no-progress", "--cpu"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--heads", "0"], ["--heads must be 1..128, got 0"]),
        (["--lr", "nan"], ["--lr must be", "got nan"]),
        (["--weight-decay", "nan"], ["--weight-decay must be"]),
        (["--tokens", "0"], ["--tokens must be 1..1024, got 0"]),
        (["--tokens", "1"], ["--tokens must be at least 2 with --token-selection cls+pooled"]),
        (["--hidden", "-16"], ["--hidden must be 1..8192, got -16"]),
        (["--steps", "99999999999999999999999"], ["--steps must be 1..100000000"]),
        (["--warmup-steps", "-5"], ["--warmup-steps must be"]),
        (["--seed", "-1"], ["--seed must be"]),
    ],
)
def test_a_bad_training_option_is_one_line_naming_its_flag_before_any_work(flags, words, tmp_path, capsys, monkeypatch):
    from storydiffusion.motion import train

    monkeypatch.setattr(train, "_load_encoder", lambda *a: pytest.fail("the encoder was loaded"))
    out = tmp_path / "out"
    assert train.main(["--videos", str(tmp_path), "--out", str(out), *TINY_FLAGS, *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert all(word in err for word in words), err
    assert not out.exists()


def test_training_never_writes_over_a_users_files_or_into_a_file(tmp_path, capsys, monkeypatch):
    from storydiffusion.motion import train

    monkeypatch.setattr(train, "_load_encoder", lambda *a: pytest.fail("the encoder was loaded"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "config"}', encoding="utf-8")
    (mine / "model.safetensors").write_bytes(b"mine")
    before = _files(mine)
    assert train.main(["--videos", str(tmp_path), "--out", str(mine), *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "holds files this tool did not write (config.json, model.safetensors)" in err and _files(mine) == before
    (tmp_path / "notes.yaml").write_text("mine", encoding="utf-8")
    assert train.main(["--videos", str(tmp_path), "--out", str(tmp_path / "notes.yaml"), *TINY_FLAGS]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "notes.yaml").read_text() == "mine"


def test_a_damaged_or_finished_checkpoint_is_refused_by_resume(few_videos, tmp_path, capsys):
    from storydiffusion.motion import train

    out = tmp_path / "run"
    options = ["--videos", str(few_videos), "--out", str(out), *TINY_FLAGS[:-6], "--batch-size", "2", "--cpu"]
    assert train.main([*options, "--steps", "2", "--save-every", "1", "--no-progress"]) == 0
    assert train.main([*options, "--steps", "2", "--resume", "--no-progress"]) == 2
    assert "already at step 2; give more steps" in capsys.readouterr().err
    state = out / "checkpoint-2" / "trainer_state.json"
    state.write_bytes(state.read_bytes()[:40])  # cut short
    assert train.main([*options, "--steps", "3", "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-2 is damaged" in err and "delete that folder" in err and "Traceback" not in err


def test_ctrl_c_during_training_is_one_line_and_the_resume_hint(tmp_path, capsys, monkeypatch):
    from storydiffusion.motion import train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_predictor", interrupted)
    assert train.main(["--videos", str(tmp_path), "--out", str(tmp_path / "o"), *TINY_FLAGS]) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ") and "--resume" in err and err.count("\n") == 1


def test_sigterm_during_training_stops_it_like_ctrl_c_with_the_kill_exit_code(tmp_path, capsys, monkeypatch):
    """A cluster's time limit sends SIGTERM: the same one-line note, and 143 as a shell reports the kill."""
    import os
    import signal

    from storydiffusion.motion import train

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler main installed raises here, in the main thread
        raise AssertionError("SIGTERM did not stop training")

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(train, "train_predictor", terminated)
    try:
        assert train.main(["--videos", str(tmp_path), "--out", str(tmp_path / "o"), *TINY_FLAGS]) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    err = capsys.readouterr().err
    assert err.startswith("interrupted: ") and "--resume" in err and err.count("\n") == 1
