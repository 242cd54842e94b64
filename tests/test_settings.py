"""Settings (storydiffusion/settings.py): SETTING_RANGES is the one table of ranges, and validate reads it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from storydiffusion.errors import SettingsError
from storydiffusion.motion.train import TRAINED_NUMBERS, TrainingOptions
from storydiffusion.settings import (
    CONSISTENCY_MODES,
    MAX_SEED,
    MAX_TEXT_CHARS,
    SETTING_RANGES,
    GenerationSettings,
    SettingRange,
)

# Ranged fields of GenerationSettings; the other ranges belong to transitions (animate).
STORY_RANGED = (
    "steps",
    "guidance",
    "height",
    "width",
    "seed",
    "sampling_rate",
    "id_images",
    "window",
    "first_consistent_step",
    "random_skip_early",
    "random_skip_late",
    "max_panels",
    "subject_threshold",
)
ANIMATE_RANGED = ("frames", "fps", "strength", "animation_steps")
LOADING_RANGED = ("lora_scale",)  # checked by the CLI before a model loads
PAGE_RANGED = ("dpi",)  # compose's --dpi and a template's page.dpi
STEERING_RANGED = ("reference_scale", "control_scale")  # a character's photo, a panel's control image
TRAINING_RANGED = tuple(f"train_{name}" for name in TRAINED_NUMBERS)  # every number motion.train takes
OPTIONAL = ("steps", "guidance", "height", "width", "subject_threshold")  # None: the model's default, Otsu's


def one_step(rng: SettingRange) -> float:
    """The smallest move that matters: the multiple for integers, the slider step otherwise."""
    return rng.multiple if rng.integer else rng.step


def lowest(rng: SettingRange) -> float:
    low = int(rng.low) if rng.integer else rng.low
    return low if rng.low_inclusive else low + one_step(rng)


def highest(rng: SettingRange) -> float:
    high = int(rng.high) if rng.integer else rng.high
    return high if rng.high_inclusive else high - one_step(rng)


def outside(rng: SettingRange) -> list[float]:
    low = int(rng.low) if rng.integer else rng.low
    high = int(rng.high) if rng.integer else rng.high
    values = [low - one_step(rng), high + one_step(rng)]
    if not rng.low_inclusive:
        values.append(low)
    if not rng.high_inclusive:
        values.append(high)
    return values


def check(name: str, value) -> None:
    """Validate ``value`` for ``name`` the way the program does: through GenerationSettings when it is one."""
    if name in STORY_RANGED:
        dataclasses.replace(GenerationSettings(), **{name: value}).validate()
    else:
        SETTING_RANGES[name].check(name, value)


def refused(name: str, value) -> str:
    with pytest.raises(SettingsError) as info:
        check(name, value)
    return str(info.value)


# ------------------------------------------------------------------------------------ the table


def test_every_ranged_generation_setting_is_a_field():
    fields = {f.name for f in dataclasses.fields(GenerationSettings)}
    assert {name for name in SETTING_RANGES if name in fields} == set(STORY_RANGED)
    assert set(SETTING_RANGES) == (
        set(STORY_RANGED)
        | set(ANIMATE_RANGED)
        | set(LOADING_RANGED)
        | set(PAGE_RANGED)
        | set(STEERING_RANGED)
        | set(TRAINING_RANGED)
    )


def test_default_settings_are_valid():
    GenerationSettings().validate()


@pytest.mark.parametrize("name", list(SETTING_RANGES))
def test_lowest_and_highest_allowed_values_pass(name):
    rng = SETTING_RANGES[name]
    check(name, lowest(rng))
    check(name, highest(rng))


@pytest.mark.parametrize("name", list(SETTING_RANGES))
def test_one_step_outside_is_refused_naming_the_setting_and_its_range(name):
    rng = SETTING_RANGES[name]
    for value in outside(rng):
        message = refused(name, value)
        assert message == f"{name} must be {rng.describe()}, got {value!r}"


@pytest.mark.parametrize("name", [n for n in SETTING_RANGES if SETTING_RANGES[n].integer])
def test_integer_settings_refuse_fractions(name):
    value = lowest(SETTING_RANGES[name]) + 0.5
    assert refused(name, value).startswith(f"{name} must be ")
    assert refused(name, float(lowest(SETTING_RANGES[name]))).startswith(f"{name} must be ")


@pytest.mark.parametrize("name", list(SETTING_RANGES))
def test_booleans_are_not_numbers(name):
    assert refused(name, True).startswith(f"{name} must be ")
    assert refused(name, False).startswith(f"{name} must be ")


@pytest.mark.parametrize("name", list(SETTING_RANGES))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(name, value):
    assert refused(name, value).startswith(f"{name} must be ")


@pytest.mark.parametrize("name", ["height", "width"])
def test_image_sizes_are_multiples_of_8(name):
    check(name, 512)
    check(name, 520)
    message = refused(name, 516)
    assert message == f"{name} must be a multiple of 8 between 64 and 4096, got 516"


def test_seed_reaches_2_63_minus_1():
    check("seed", MAX_SEED)
    assert refused("seed", MAX_SEED + 1) == f"seed must be 0..9223372036854775807, got {MAX_SEED + 1}"


@pytest.mark.parametrize("name", OPTIONAL)
def test_model_defaults_may_be_left_open(name):
    check(name, None)


@pytest.mark.parametrize("name", [n for n in STORY_RANGED if n not in OPTIONAL])
def test_other_settings_may_not_be_none(name):
    assert refused(name, None) == f"{name} must be {SETTING_RANGES[name].describe()}, got None"


def test_sampling_rate_per_factor_is_checked_entry_by_entry():
    GenerationSettings(sampling_rate={1: 0.0, 2: 1.0}).validate()
    with pytest.raises(SettingsError, match=r"sampling_rate must be between 0 and 1, got 1\.5"):
        GenerationSettings(sampling_rate={1: 0.3, 2: 1.5}).validate()


def test_mode_must_be_known():
    for mode in CONSISTENCY_MODES:
        GenerationSettings(mode=mode).validate()
    with pytest.raises(SettingsError) as info:
        GenerationSettings(mode="sideways").validate()
    assert str(info.value) == "mode must be one of identity, window, off, got 'sideways'"


def test_validate_names_the_first_bad_setting():
    with pytest.raises(SettingsError, match=r"^steps must be"):
        GenerationSettings(steps=0, window=0).validate()


# ---------------------------------------------------------------------------------- describe, step


@pytest.mark.parametrize(
    "name, text",
    [
        ("steps", "1..1000"),
        ("seed", "0..9223372036854775807"),
        ("max_panels", "1..10000"),
        ("height", "a multiple of 8 between 64 and 4096"),
        ("guidance", "between 0 and 50"),
        ("sampling_rate", "between 0 and 1"),
        ("fps", "between 1 and 60"),
        ("random_skip_early", "[0, 1)"),
        ("strength", "(0, 1]"),
    ],
)
def test_describe(name, text):
    assert SETTING_RANGES[name].describe() == text


def test_describe_keeps_fractional_bounds():
    assert SettingRange(0.25, 2.5).describe() == "between 0.25 and 2.5"


@pytest.mark.parametrize("name, step", [("steps", 1), ("height", 64), ("guidance", 0.5), ("sampling_rate", 0.05)])
def test_slider_step(name, step):
    assert SETTING_RANGES[name].step == step


# ---------------------------------------------------------------------------- from_dict, merged


def test_from_dict_refuses_unknown_keys_naming_the_known_ones():
    with pytest.raises(SettingsError) as info:
        GenerationSettings.from_dict({"stepz": 3, "steps": 3, "colour": 1})
    message = str(info.value)
    assert message.startswith("unknown setting(s) colour, stepz; known settings: ")
    for field in dataclasses.fields(GenerationSettings):
        assert field.name in message


def test_from_dict_reads_sampling_rate_keys_written_as_text():
    settings = GenerationSettings.from_dict({"sampling_rate": {"1": 0.3, "2": 1}})
    assert settings.sampling_rate == {1: 0.3, 2: 1.0}
    assert all(isinstance(k, int) for k in settings.sampling_rate)


def test_to_dict_from_dict_round_trip():
    settings = GenerationSettings(steps=20, guidance=6.5, sampling_rate={1: 0.3}, mode="window", style="comic")
    assert GenerationSettings.from_dict(settings.to_dict()) == settings


def test_merged_ignores_none_and_leaves_the_original_alone():
    base = GenerationSettings(steps=20, guidance=5.0)
    merged = base.merged(steps=None, guidance=7.5, seed=3)
    assert (merged.steps, merged.guidance, merged.seed) == (20, 7.5, 3)
    assert (base.guidance, base.seed) == (5.0, 0)


# --------------------------------------------------------------------------------- rate_for_factor


def test_rate_for_factor_with_one_rate():
    settings = GenerationSettings(sampling_rate=0.4)
    assert [settings.rate_for_factor(f) for f in (1, 2, 4)] == [0.4, 0.4, 0.4]


def test_rate_for_factor_with_a_dict():
    settings = GenerationSettings(sampling_rate={1: 0.3, 2: 0.6})
    assert settings.rate_for_factor(1) == 0.3
    assert settings.rate_for_factor(2) == 0.6
    assert settings.rate_for_factor(4) == 0.5  # a factor the dict does not name


def test_rate_for_factor_dict_key_0_is_the_default_for_unnamed_factors():
    settings = GenerationSettings(sampling_rate={0: 0.2, 1: 0.3})
    assert settings.rate_for_factor(1) == 0.3
    assert settings.rate_for_factor(4) == 0.2
    assert isinstance(settings.rate_for_factor(4), float)


def test_from_dict_keeps_sampling_rate_values_for_validation_and_names_bad_keys():
    with pytest.raises(SettingsError, match="sampling_rate must be between 0 and 1, got True"):
        GenerationSettings.from_dict({"sampling_rate": {"1": True}}).validate()
    with pytest.raises(SettingsError, match="sampling_rate keys must be whole numbers.*'x'"):
        GenerationSettings.from_dict({"sampling_rate": {"x": 0.5}})


# ------------------------------------------------------------------------ key paths of file values


@pytest.mark.parametrize(
    "data, start, value",
    [
        ({"guidance": "abc"}, "settings.guidance must be between 0 and 50", "got 'abc' (text is not a number)"),
        ({"guidance": True}, "settings.guidance must be", "got True (true/false is not a number)"),
        ({"guidance": math.nan}, "settings.guidance must be", "got nan"),
        ({"steps": 1.5}, "settings.steps must be 1..1000", "got 1.5 (not a whole number)"),
        ({"steps": [3]}, "settings.steps must be", "got [3] (a list is not a number)"),
        ({"seed": "7"}, "settings.seed must be 0..9223372036854775807", "got '7' (text is not a number)"),
        ({"sampling_rate": {"12": 2}}, "settings.sampling_rate.12 must be between 0 and 1", "got 2"),
        ({"sampling_rate": {"-1": 0.5}}, "settings.sampling_rate keys must be whole numbers", "got '-1'"),
        ({"mode": ["window"]}, "settings.mode must be one of identity, window, off", "got ['window']"),
        ({"style": 5}, "settings.style must be the name of a style", "got 5"),
        ({"scheduler": {}}, "settings.scheduler must be the name of a scheduler", "got {}"),
        ({"negative_prompt": ["ugly"]}, "settings.negative_prompt must be text", "(['ugly'])"),
    ],
)
def test_from_dict_names_the_key_path_in_the_file_and_the_value(data, start, value):
    with pytest.raises(SettingsError) as info:
        GenerationSettings.from_dict(data, where="settings")
    assert str(info.value).startswith(start) and str(info.value).endswith(value), str(info.value)


def test_from_dict_validates_and_refuses_what_is_not_a_mapping():
    with pytest.raises(SettingsError, match=r"^settings\.steps must be 1\.\.1000, got 0$"):
        GenerationSettings.from_dict({"steps": 0}, where="settings")
    with pytest.raises(SettingsError, match=r"^settings must be a mapping of setting names to values, not a list"):
        GenerationSettings.from_dict([], where="settings")
    with pytest.raises(SettingsError, match=r"^settings: unknown setting\(s\) 1, stepz; known settings: "):
        GenerationSettings.from_dict({"stepz": 1, 1: 2}, where="settings")


def test_an_empty_where_names_top_level_keys_alone():
    with pytest.raises(SettingsError, match=r"^window must be 1\.\.64, got 0$"):
        GenerationSettings.from_dict({"window": 0}, where="")


def test_text_settings_have_a_length_limit():
    GenerationSettings(negative_prompt="x" * MAX_TEXT_CHARS).validate()
    with pytest.raises(SettingsError, match=r"^negative_prompt is 20,001 characters long; at most 20,000"):
        GenerationSettings(negative_prompt="x" * (MAX_TEXT_CHARS + 1)).validate()


def test_huge_values_are_cut_short_in_messages():
    with pytest.raises(SettingsError) as info:
        GenerationSettings.from_dict({"guidance": "9" * 100_000}, where="settings")
    assert len(str(info.value)) < 200 and "100,000 characters" in str(info.value)


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({1: 0.3, "1": 0.6}, "gives the factor 1 twice"),
        ({"01": 0.3, 1: 0.6}, "gives the factor 1 twice"),
        ({"١": 0.5}, "keys must be whole numbers"),
        ({" 1": 0.5}, "keys must be whole numbers"),
        ({"1_0": 0.5}, "keys must be whole numbers"),
    ],
)
def test_sampling_rate_factors_are_plain_numbers_each_given_once(rates, message):
    with pytest.raises(SettingsError, match=message):
        GenerationSettings.from_dict({"sampling_rate": rates}, "settings")


def test_every_number_a_training_run_takes_has_its_range():
    numbers = {f.name for f in dataclasses.fields(TrainingOptions) if f.type in ("int", "float")}
    assert numbers == set(TRAINED_NUMBERS)
    TrainingOptions().validate()  # the defaults lie inside


def test_mode_off_written_plainly_in_yaml_is_off(tmp_path):
    from storydiffusion.story import load_story

    path = tmp_path / "s.yaml"
    path.write_text("settings:\n  mode: off\ncharacters: {Bob: a man}\npanels: ['[Bob] walks']\n", encoding="utf-8")
    assert load_story(path).settings.mode == "off"
    with pytest.raises(SettingsError, match="a word, not true or false"):
        GenerationSettings.from_dict({"mode": True})
