"""How much drawing one request may ask of a shared studio: the operator's limits, their defaults, their words."""

from __future__ import annotations

import pytest

from storydiffusion.errors import SettingsError
from storydiffusion.model_pool import OFFLINE_MODEL, ModelPool
from storydiffusion.settings import GenerationSettings
from storydiffusion.story import story_from_text
from storydiffusion.studio_server import LOCAL_UPLOAD_MB, SHARED_UPLOAD_MB, server_options
from storydiffusion.work_limits import SHARED_SERVER_LIMITS, WorkLimits, WorkTooLarge

DRAWN = GenerationSettings(steps=30, width=1024, height=1024)


def test_the_operators_own_machine_has_no_limits_and_a_shared_server_the_defaults():
    local = server_options(["--offline-demo"])
    assert local.limits is None and local.max_upload_mb == LOCAL_UPLOAD_MB
    shared = server_options(["--offline-demo", "--host", "0.0.0.0"])
    assert shared.limits == SHARED_SERVER_LIMITS and shared.max_upload_mb == SHARED_UPLOAD_MB
    assert shared.launch_options()["max_file_size"] == f"{SHARED_UPLOAD_MB}mb"
    assert shared.pool_options()["limits"] == SHARED_SERVER_LIMITS


def test_the_operators_flags_set_limits_anywhere():
    shared = server_options(["--offline-demo", "--share", "--max-steps", "40", "--max-upload-mb", "64"])
    assert shared.limits == WorkLimits(max_panels=100, max_steps=40, max_side=2048) and shared.max_upload_mb == 64
    local = server_options(["--offline-demo", "--max-panels", "12"])  # on 127.0.0.1 only what is asked
    assert local.limits.max_panels == 12 and local.limits.max_steps == 1000 and local.limits.max_side == 4096


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--max-side", "1001", "--max-side must be a multiple of 8"),
        ("--max-steps", "5000", "--max-steps must be 1..1000"),
        ("--max-panels", "0", "--max-panels must be at least 1"),
    ],
)
def test_a_limit_the_library_could_not_draw_is_a_usage_error(flag, value, says, capsys):
    with pytest.raises(SystemExit) as stopped:
        server_options(["--offline-demo", flag, value])
    assert stopped.value.code == 2 and says in capsys.readouterr().err


def test_each_limit_is_named_by_the_widget_past_it():
    limits = WorkLimits(max_panels=2, max_steps=20, max_side=512)
    with pytest.raises(WorkTooLarge, match=r"^Steps: 30 is more than this shared studio allows .* \(at most 20\)"):
        limits.check(DRAWN)
    with pytest.raises(WorkTooLarge, match=r"^Height: 1,024 is more than .* \(at most 512\)"):
        limits.check(GenerationSettings(steps=10, width=512, height=1024))
    story = story_from_text("[Mia] a girl", "[Mia] runs\n[Mia] sits\n[Mia] waves")
    with pytest.raises(WorkTooLarge, match=r"^Story: 3 panels is more than .* \(at most 2\): split it"):
        limits.check(GenerationSettings(steps=10, width=512, height=512), story)
    with pytest.raises(WorkTooLarge, match=r"drawn with them\): press Generate to draw the story again with less"):
        limits.check(DRAWN, redraw=True)  # a loaded project's settings, met when one panel is redrawn
    limits.check(GenerationSettings())  # the model's defaults (no numbers): nothing to refuse


def test_a_pool_without_limits_takes_what_the_library_takes():
    free = ModelPool(OFFLINE_MODEL)
    free.check_work(GenerationSettings(steps=1000, width=4096, height=4096))
    assert free.highest("steps") == 1000 and free.highest("width") == 4096
    limited = ModelPool(OFFLINE_MODEL, limits=WorkLimits(max_steps=25))
    assert limited.highest("steps") == 25 and limited.highest("guidance") == free.highest("guidance")
    with pytest.raises(WorkTooLarge):
        limited.check_work(DRAWN)


def test_limits_are_checked_when_made():
    with pytest.raises(SettingsError, match="max_steps"):
        WorkLimits(max_steps=0)


def test_a_range_refusal_of_a_bounded_widget_adds_the_servers_own_limit():
    limits = WorkLimits(max_steps=20, max_side=256)
    assert (
        limits.noted("Steps must be 1..1000, got -1")
        == "Steps must be 1..1000, got -1 (this shared studio allows at most 20)"
    )
    assert limits.noted("Height: 'x' is not a number").endswith("(this shared studio allows at most 256)")
    assert limits.noted("Guidance must be 0..50, got -1") == "Guidance must be 0..50, got -1"
