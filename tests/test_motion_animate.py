"""Animating a run folder: files written, bad panels and settings refused, the `animate` command."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from storydiffusion.atomic import write_json
from storydiffusion.cli import main
from storydiffusion.motion.animate import MissingPanelError, PanelNumberError, animate_run
from storydiffusion.motion.checks import AnimationError
from storydiffusion.motion.video import TransitionPipeline
from storydiffusion.rundir import MANIFEST_FORMAT, panel_filename
from storydiffusion.story import story_from_text

FAST = dict(steps=2, guidance=1.0)


def pattern(seed: int, size=(64, 64)) -> Image.Image:
    """A smooth coloured pattern (smooth so the tiny VAE and GIF palette treat it well)."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / max(size)
    channels = [np.sin(x * rng.uniform(2, 8) + y * rng.uniform(2, 8) + rng.uniform(0, 6)) for _ in range(3)]
    return Image.fromarray(((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8))


@pytest.fixture(scope="module")
def pipe() -> TransitionPipeline:
    return TransitionPipeline.tiny(seed=0)


def fake_run(folder, count: int = 3, missing: tuple[int, ...] = ()):
    """A run folder as `generate` writes it: story.json manifest and panels/panel_NNN.png."""
    story = story_from_text("[Bob] a man in a red coat", "\n".join(f"[Bob] scene {i + 1}" for i in range(count)))
    (folder / "panels").mkdir(parents=True)
    entries = []
    for i in range(count):
        if i + 1 not in missing:
            pattern(10 + i).save(folder / "panels" / panel_filename(i))
        entries.append(
            {
                "panel": i + 1,
                "file": f"panels/{panel_filename(i)}",
                "seed": i,
                "prompt": story.panel_prompt(i),
                "negative_prompt": "",
            }
        )
    write_json(folder / "story.json", {"format": MANIFEST_FORMAT, "story": story.to_dict(), "panels": entries})
    return folder


def test_animate_run_writes_mp4_gif_and_info(tmp_path, pipe):
    run = fake_run(tmp_path / "out")
    result = animate_run(run, 1, 2, frames=4, fps=4, pipeline=pipe, **FAST)
    assert result.mp4 == run / "video" / "01-02.mp4" and result.gif == run / "video" / "01-02.gif"
    reader = imageio.get_reader(str(result.mp4), format="FFMPEG")
    try:
        assert sum(1 for _ in reader) == 4
    finally:
        reader.close()
    with Image.open(result.gif) as gif:
        assert gif.n_frames == 4
    info = json.loads((run / "video" / "01-02.json").read_text(encoding="utf-8"))
    assert info["from"] == 1 and info["to"] == 2 and info["embeddings"] == "linear interpolation"
    assert "scene 1" in info["prompt"] and "scene 2" in info["prompt"]
    assert not list(run.rglob("*.tmp*"))


def test_animate_run_refuses_bad_panels(tmp_path, pipe):
    run = fake_run(tmp_path / "out", count=3, missing=(3,))
    with pytest.raises(PanelNumberError, match="panels 1 to 3"):
        animate_run(run, 2, 7, pipeline=pipe)
    with pytest.raises(PanelNumberError):
        animate_run(run, 0, 1, pipeline=pipe)
    with pytest.raises(PanelNumberError, match="two different"):
        animate_run(run, 2, 2, pipeline=pipe)
    with pytest.raises(MissingPanelError, match="panel 3"):
        animate_run(run, 2, 3, pipeline=pipe)
    with pytest.raises(AnimationError, match=r"--frames must be 2\.\.32, got 1"):
        animate_run(run, 1, 2, frames=1, pipeline=pipe)
    with pytest.raises(AnimationError, match="--strength"):
        animate_run(run, 1, 2, strength=1.5, pipeline=pipe)
    with pytest.raises(AnimationError, match="story.json"):
        animate_run(tmp_path, 1, 2, pipeline=pipe)


def test_cli_animate_tiny_and_bad_input(tmp_path, capsys):
    run = fake_run(tmp_path / "out")
    code = main(
        [
            "animate",
            str(run),
            "--from",
            "2",
            "--to",
            "3",
            "--frames",
            "4",
            "--fps",
            "4",
            "--model",
            "tiny",
            "--steps",
            "2",
            "--guidance",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    assert (run / "video" / "02-03.mp4").is_file() and (run / "video" / "02-03.gif").is_file()
    assert "linear interpolation" in capsys.readouterr().out
    assert main(["animate", str(run), "--from", "3", "--to", "9", "--model", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: panel 9 does not exist") and "\n" not in err
    assert main(["animate", str(run), "--from", "1", "--to", "2", "--frames", "1", "--model", "tiny", "--quiet"]) == 2
    assert "--frames must be 2..32, got 1" in capsys.readouterr().err
    for flags, words in ((["--device", "gpu9"], "Unknown device 'gpu9'"), (["--dtype", "int3"], "Unknown dtype")):
        assert main(["animate", str(run), "--from", "1", "--to", "2", "--model", "tiny", *flags]) == 2
        err = capsys.readouterr().err.strip()  # the tiny model checks them like every other
        assert words in err and "\n" not in err and "step" not in err  # one line: no empty progress bar before it


def test_an_animate_model_that_is_not_in_the_cache_offline_is_named_as_such(tmp_path, capsys):
    """The libraries called it a repository without config.json; offline, the reason is the missing cache."""
    run = fake_run(tmp_path / "out")
    assert main(["animate", str(run), "--from", "1", "--to", "2", "--model", "someone/not-cached", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Could not load the SD 1.5 model 'someone/not-cached' from the Hugging Face hub")
    assert "not in the Hugging Face cache, and downloads are off" in err and "\n" not in err
    assert not (run / "video").exists()
