"""Hostile and mismatched identity banks through the CLI: refused with exit 2 before any step runs and
before the output folder changes; a bank of another float width is cast; window mode never rewrites one."""

from __future__ import annotations

import pytest
import torch
from file_helpers import one_line_error, snapshot, write_recorded_run
from safetensors import safe_open
from safetensors.torch import save_file
from test_interrupted_runs import FAST, STORY, files

from storydiffusion.atomic import write_json
from storydiffusion.bank import BANK_FORMAT, IdentityBank
from storydiffusion.bank_layout import expected_bank_layout
from storydiffusion.cli import main
from storydiffusion.errors import BankError
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.rundir import MANIFEST_FORMAT, STAGING_DIR
from storydiffusion.story import load_story


@pytest.fixture
def setup(tmp_path):
    """The story file, and an output folder holding an earlier run and a file of the user's."""
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    out = tmp_path / "out"
    (out / "panels").mkdir(parents=True)
    (out / "panels" / "panel_001.png").write_bytes(b"an earlier panel")
    write_json(out / "story.json", {"format": MANIFEST_FORMAT, "panels": [{"file": "panels/panel_001.png"}]})
    (out / "notes.txt").write_text("the user's own notes")
    return story, out


def fitting_bank(pipeline, story_path, characters=("Bob", "Ann"), **changes) -> IdentityBank:
    """A bank with the signature and tensor shapes a FAST run of the story has (``changes`` on top): no
    drawing needed."""
    story = load_story(story_path)
    settings = pipeline.resolve_settings(story, story.settings.merged(steps=2))
    bank = IdentityBank({**pipeline.bank_signature(settings), **changes})
    layout = expected_bank_layout(pipeline.pipe, pipeline.consistent_layer_names, settings)
    for source, name in enumerate(characters):
        for (step, layer), shape in layout.items():
            bank.put(source, step, layer, torch.zeros(shape))
        bank.characters[name] = [source]
    return bank


def never_generate(monkeypatch) -> None:
    def generate(*args, **kwargs):
        raise AssertionError("generation started")

    monkeypatch.setattr(StoryPipeline, "generate", generate)


def refused(story, out, capsys, *options) -> str:
    assert main(["generate", str(story), "--out", str(out), *FAST, *options]) == 2
    return one_line_error(capsys)


@pytest.mark.parametrize(
    "changes, characters, options, expected",
    [
        ({}, ("Bob", "Ann"), ["--steps", "3"], "steps: bank 2, now 3"),
        ({}, ("Bob", "Ann"), ["--height", "128"], "height: bank 64, now 128"),
        ({"model": "another-model"}, ("Bob", "Ann"), [], "model: bank 'another-model', now 'tiny-sdxl'"),
        ({}, ("Bob", "Ann", "Carl"), [], "holds Carl, not a character of this story"),
        ({}, ("Bob",), ["--panels", "2"], "no identity images of Ann"),
    ],
    ids=["steps", "size", "model", "stranger", "missing"],
)
def test_a_bank_that_does_not_fit_is_refused_before_any_step_and_the_folder_is_untouched(
    setup, tiny_sdxl, tmp_path, monkeypatch, capsys, changes, characters, options, expected
):
    story, out = setup
    bank = tmp_path / "bank.safetensors"
    fitting_bank(tiny_sdxl, story, characters, **changes).save(bank)
    before, bank_bytes = snapshot(out), bank.read_bytes()
    never_generate(monkeypatch)
    err = refused(story, out, capsys, "--bank", str(bank), "--overwrite", *options)
    assert expected in err
    assert snapshot(out) == before and not (out / STAGING_DIR).exists() and bank.read_bytes() == bank_bytes


@pytest.mark.parametrize("mode", ["window", "off"])
def test_a_bank_with_a_mode_that_does_not_read_it_is_refused_and_never_rewritten(setup, tmp_path, capsys, mode):
    story, out = setup
    bank = tmp_path / "bank.safetensors"
    before_bank = IdentityBank({"steps": 2})
    before_bank.put(0, 0, 0, torch.ones(2, 3, 4))
    before_bank.characters["Bob"] = [0]
    before_bank.save(bank)
    before, bank_bytes = snapshot(out), bank.read_bytes()
    options = ["--mode", mode] if mode == "window" else ["--no-consistency"]
    err = refused(story, out, capsys, "--bank", str(bank), "--overwrite", "--save-bank", *options)
    assert "--bank" in err and f"--mode {mode}" in err
    assert bank.read_bytes() == bank_bytes and snapshot(out) == before


def test_window_mode_never_empties_a_filled_bank_it_is_given(tiny_sdxl, tmp_path):
    story_path = tmp_path / "story.yaml"
    story_path.write_text(STORY, encoding="utf-8")
    story = load_story(story_path)
    bank = fitting_bank(tiny_sdxl, story_path)
    tokens = dict(bank._tokens)
    with pytest.raises(BankError, match="would empty it"):
        tiny_sdxl.generate(story, story.settings.merged(steps=2, mode="window"), bank=bank)
    assert bank._tokens == tokens and bank.characters == {"Bob": [0], "Ann": [1]}


@pytest.mark.parametrize(
    "tensors, expected",
    [
        ({"0.0.0": torch.ones(2, 3, 4, dtype=torch.int64)}, "int64, not floating-point"),
        ({"0.0.0": torch.full((2, 3, 4), float("inf"))}, "NaN or infinite"),
        ({"0.0.0": torch.ones(7)}, "shape (7,)"),
    ],
    ids=["integers", "infinite", "flat"],
)
def test_a_hostile_bank_file_is_refused_naming_it_before_any_model_loads(setup, tmp_path, capsys, tensors, expected):
    story, out = setup
    bank = tmp_path / "hostile.safetensors"
    save_file(tensors, str(bank), metadata={"format": BANK_FORMAT, "signature": "{}", "characters": '{"Bob": [0]}'})
    before = snapshot(out)
    err = refused(story, out, capsys, "--bank", str(bank), "--overwrite", "--model", "nobody/no-such-model")
    assert str(bank) in err and expected in err
    assert snapshot(out) == before


@pytest.mark.slow
def test_a_float16_bank_is_cast_and_used_by_a_float32_run(tmp_path, capsys):
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    full = tmp_path / "full"
    assert main(["generate", str(story), "--out", str(full), *FAST, "--save-bank"]) == 0
    half = tmp_path / "half.safetensors"
    IdentityBank.load(full / "identity_bank.safetensors", dtype=torch.float16).save(half)
    half_bytes = half.read_bytes()
    redo = tmp_path / "redo"
    assert main(["generate", str(story), "--out", str(redo), *FAST, "--panels", "4", "--bank", str(half)]) == 0
    assert list(files(redo / "panels")) == ["panel_004.png"] and half.read_bytes() == half_bytes


@pytest.fixture(scope="module")
def real_bank(tiny_sdxl, tmp_path_factory):
    """The bank a 2-step tiny run of the story writes (its identity images only), as a file's bytes."""
    folder = tmp_path_factory.mktemp("real-bank")
    (folder / "story.yaml").write_text(STORY, encoding="utf-8")
    story = load_story(folder / "story.yaml")
    result = tiny_sdxl.generate(story, story.settings.merged(steps=2), panels=[0, 1])
    result.bank.save(folder / "bank.safetensors")
    return (folder / "bank.safetensors").read_bytes()


def test_a_bank_drawn_from_another_description_is_refused_naming_both(real_bank, tmp_path, setup, capsys):
    """A story whose character looks different (its description changed) never reads the identity tokens of
    the old look: refused before any step, the folder untouched; the library's check says the same."""
    story, out = setup
    (tmp_path / "bank.safetensors").write_bytes(real_bank)
    story.write_text(STORY.replace("a woman with a blue scarf", "a tall robot"), encoding="utf-8")
    before = snapshot(out)
    code = main(
        ["generate", str(story), "--out", str(out), *FAST, "--overwrite", "--bank", str(tmp_path / "bank.safetensors")]
    )
    assert code == 2 and snapshot(out) == before
    error = one_line_error(capsys)
    assert "drew Ann as 'a woman with a blue scarf'" in error and "describes Ann as 'a tall robot'" in error
    bank = IdentityBank.load(tmp_path / "bank.safetensors")
    assert bank.descriptions == {"Bob": "a man in a red coat", "Ann": "a woman with a blue scarf"}


def rewrite_tensors(path, edit, keys=lambda key: True) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rewrite a bank file with ``edit`` applied to the tensors ``keys`` picks and the same metadata, as
    a hand-edit would; returns one tensor's shape before and after."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    edited = {key: edit(value).contiguous() if keys(key) else value for key, value in tensors.items()}
    picked = next(key for key in tensors if keys(key))
    save_file(edited, str(path), metadata=metadata)
    return tuple(tensors[picked].shape), tuple(edited[picked].shape)


def test_the_real_bank_of_a_run_fits_that_run(real_bank, tiny_sdxl, tmp_path):
    (tmp_path / "bank.safetensors").write_bytes(real_bank)
    (tmp_path / "story.yaml").write_text(STORY, encoding="utf-8")
    story = load_story(tmp_path / "story.yaml")
    tiny_sdxl.check_bank(IdentityBank.load(tmp_path / "bank.safetensors"), story, story.settings.merged(steps=2), [1])


@pytest.mark.parametrize(
    "edit",
    [lambda v: v[:, :, :8], lambda v: v[:, :3], lambda v: torch.cat([v, v], 1), lambda v: v[:, :, :-1]],
    ids=["channels-cut", "sampled-cut", "sampled-doubled", "one-channel-less"],
)
def test_a_bank_whose_tensors_do_not_fit_the_model_is_refused_naming_layer_step_and_shapes(
    real_bank, tmp_path, monkeypatch, capsys, edit
):
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    out = write_recorded_run(tmp_path / "out")
    bank = out / "identity_bank.safetensors"
    bank.write_bytes(real_bank)
    found, wanted = rewrite_tensors(bank, edit)
    before = snapshot(out)
    never_generate(monkeypatch)
    err = refused(story, out, capsys, "--panels", "2", "--bank", str(bank), "--overwrite")
    assert f"identity bank {bank}" in err and "step" in err and "layer" in err
    assert f"of shape {wanted}; this model and these settings give {found}" in err
    assert snapshot(out) == before and not (out / STAGING_DIR).exists()


@pytest.mark.parametrize(
    "rename, expected",
    [
        (lambda s, st, la: (s, st, la + 40), "layer 40, where this model and these settings sample none"),
        (lambda s, st, la: (s, st + 7, la), "step 7, layer 0, where this model and these settings sample none"),
    ],
    ids=["foreign-layer", "foreign-step"],
)
def test_a_bank_with_tensors_at_steps_or_layers_the_run_never_samples_is_refused(
    real_bank, tmp_path, monkeypatch, capsys, rename, expected
):
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    bank = tmp_path / "bank.safetensors"
    bank.write_bytes(real_bank)
    with safe_open(str(bank), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    renamed = {}
    for key, value in tensors.items():
        source, step, layer = (int(part) for part in key.split("."))
        renamed[".".join(map(str, rename(source, step, layer) if layer == 0 else (source, step, layer)))] = value
    save_file(renamed, str(bank), metadata=metadata)
    out = write_recorded_run(tmp_path / "out")
    before, bank_bytes = snapshot(out), bank.read_bytes()
    never_generate(monkeypatch)
    err = refused(story, out, capsys, "--panels", "2", "--bank", str(bank), "--overwrite")
    assert expected in err and str(bank) in err
    assert snapshot(out) == before and bank.read_bytes() == bank_bytes and not (out / STAGING_DIR).exists()


def test_a_bank_lacking_a_layer_the_run_reads_is_refused(real_bank, tmp_path, monkeypatch, capsys):
    story = tmp_path / "story.yaml"
    story.write_text(STORY, encoding="utf-8")
    bank = tmp_path / "bank.safetensors"
    bank.write_bytes(real_bank)
    with safe_open(str(bank), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys() if not key.endswith(".3")}
    save_file(tensors, str(bank), metadata=metadata)
    out = write_recorded_run(tmp_path / "out")
    before = snapshot(out)
    never_generate(monkeypatch)
    err = refused(story, out, capsys, "--panels", "2", "--bank", str(bank), "--overwrite")
    assert "has no tokens of image 0 at step 0, layer 3" in err
    assert snapshot(out) == before
