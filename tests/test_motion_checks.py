"""The animate checks read SETTING_RANGES: one range and one message per setting, wherever it is typed."""

import pytest

from storydiffusion.errors import StoryDiffusionError
from storydiffusion.motion.animate import check_request
from storydiffusion.motion.checks import AnimationError, check_animate_model, check_frames, check_video_size
from storydiffusion.settings import SETTING_RANGES, SettingRange


@pytest.mark.parametrize(
    "name, flag, bad",
    [
        ("frames", "--frames", dict(frames=1)),
        ("frames", "--frames", dict(frames=33)),
        ("fps", "--fps", dict(fps=0)),
        ("fps", "--fps", dict(fps=61)),
        ("animation_steps", "--steps", dict(steps=0)),
        ("animation_steps", "--steps", dict(steps=201)),
        ("guidance", "--guidance", dict(guidance=-1.0)),
        ("guidance", "--guidance", dict(guidance=50.5)),
        ("strength", "--strength", dict(strength=0.0)),
        ("strength", "--strength", dict(strength=1.01)),
    ],
)
def test_out_of_range_settings_name_the_flag_and_the_table_range(name, flag, bad):
    request = dict(frames=16, fps=8, steps=25, guidance=7.5, strength=0.9) | bad
    with pytest.raises(AnimationError) as caught:
        check_request(request.pop("frames"), request.pop("fps"), **request)
    message = str(caught.value)
    assert message.startswith(f"{flag} must be {SETTING_RANGES[name].describe()}, got ")
    assert isinstance(caught.value, StoryDiffusionError)  # the CLI turns it into exit code 2


def test_values_at_the_ends_of_the_ranges_pass():
    check_request(2, 1, steps=1, guidance=0.0, strength=1.0)
    check_request(32, 60, steps=200, guidance=50.0, strength=0.01)
    check_request(16, 8)  # steps, guidance and strength left to their defaults are not checked


def test_ranges_come_from_the_settings_table(monkeypatch):
    monkeypatch.setitem(SETTING_RANGES, "frames", SettingRange(2, 8, integer=True))
    check_request(8, 8)
    with pytest.raises(AnimationError, match=r"--frames must be 2\.\.8, got 9"):
        check_request(9, 8)


def test_the_motion_adapter_limit_is_checked_too():
    check_frames(16, max_frames=16)
    with pytest.raises(AnimationError, match="more than the motion adapter handles \\(16\\); use at most 16"):
        check_frames(17, max_frames=16)


def test_video_size_must_be_a_multiple_of_8():
    check_video_size(64, 512)
    with pytest.raises(AnimationError, match="video height must be a multiple of 8"):
        check_video_size(60, 64)
    with pytest.raises(AnimationError, match="video width"):
        check_video_size(64, 100)


@pytest.mark.parametrize("model", ["tinyy", "./gone/sd15", "sd15.safetensors", "a/b/c"])
def test_an_animate_model_that_is_nowhere_is_refused_naming_the_flag(model):
    with pytest.raises(AnimationError, match=r"^--model .* is not default or tiny"):
        check_animate_model(model)


def test_animate_model_names_that_may_load_pass(tmp_path):
    for model in (None, "default", "tiny", "runwayml/stable-diffusion-v1-5", str(tmp_path)):
        check_animate_model(model)


def test_the_animate_command_refuses_a_misspelt_model_before_reading_the_run(tmp_path, capsys):
    from storydiffusion.cli import main

    assert main(["animate", str(tmp_path / "no-run"), "--from", "1", "--to", "2", "--model", "tinyy"]) == 2
    assert "--model 'tinyy' is not default or tiny" in capsys.readouterr().err


def test_a_predictor_folder_of_pickles_is_refused_as_such_before_any_model_loads(tmp_path):
    from storydiffusion.motion.checkpoints import read_predictor_config

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(AnimationError, match=r"no model\.safetensors but model\.bin: pickle checkpoints are never"):
        read_predictor_config(tmp_path)
