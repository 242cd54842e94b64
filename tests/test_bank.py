"""The identity bank on its own: what it keeps, what it forgets, how it says it does not fit, its file."""

import pytest
import torch

from storydiffusion.bank import BANK_FORMAT, IdentityBank
from storydiffusion.errors import BankError


def tokens(value: float, sampled: int = 3, channels: int = 4) -> torch.Tensor:
    return torch.full((2, sampled, channels), value)


def filled_bank() -> IdentityBank:
    bank = IdentityBank({"steps": 4, "seed": 1})
    for source in (1, 2):
        for step in (0, 1):
            bank.put(source, step, 0, tokens(source + step / 10))
    bank.characters = {"Bob": [1], "Alice": [2]}
    return bank


def test_put_and_get_return_the_same_tokens():
    bank = filled_bank()
    assert torch.equal(bank.get(2, 1, 0, torch.device("cpu")), tokens(2.1))
    assert len(bank) == 4 and bank.sources() == {1, 2}
    assert bank.nbytes() == 4 * 2 * 3 * 4 * 4 and bank.nbytes(1) == bank.nbytes() // 2
    with pytest.raises(BankError, match="image 3 at step 0, layer 0"):
        bank.get(3, 0, 0, torch.device("cpu"))


def test_drop_forgets_the_sources_and_the_characters_left_without_images():
    bank = filled_bank()
    bank.drop([1])
    assert bank.sources() == {2} and bank.characters == {"Alice": [2]}


def test_check_compatible_names_every_setting_that_differs():
    bank = filled_bank()
    bank.check_compatible({"steps": 4, "seed": 1})
    with pytest.raises(BankError, match=r"seed: bank 1, now 2; steps: bank 4, now 5"):
        bank.check_compatible({"steps": 5, "seed": 2})


def test_a_setting_a_signature_leaves_out_is_named_by_its_default():
    """A uniform run's signature has no consistency key (banks saved before subject mode fit): the message
    said "bank 'subject', now None"."""
    bank = filled_bank()
    bank.signature.update(consistency="subject", subject_threshold=0.4)
    with pytest.raises(
        BankError, match=r"consistency: bank 'subject', now 'uniform'.*subject_threshold: bank 0.4, now not used"
    ):
        bank.check_compatible({"steps": 4, "seed": 1})


def test_save_and_load_keep_tokens_signature_and_characters(tmp_path):
    bank = filled_bank()
    bank.save(tmp_path / "bank.safetensors")
    loaded = IdentityBank.load(tmp_path / "bank.safetensors")
    assert loaded.signature == bank.signature and loaded.characters == bank.characters
    assert loaded.sources() == bank.sources() and len(loaded) == len(bank)
    assert torch.equal(loaded.get(1, 1, 0, torch.device("cpu")), tokens(1.1))


def test_bank_load_refuses_other_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(BankError, match="not a StoryDiffusion identity bank"):
        IdentityBank.load(tmp_path / "weights.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(BankError, match="could not read"):
        IdentityBank.load(tmp_path / "junk.safetensors")


def save_raw(path, tensors, signature='{"steps": 4}', characters='{"Bob": [1]}'):
    """A file in the bank format whatever its contents: how a hostile or foreign bank looks."""
    from safetensors.torch import save_file

    metadata = {"format": BANK_FORMAT, "signature": signature, "characters": characters}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_a_float16_bank_loads_and_casts_to_the_dtype_asked_for(tmp_path):
    bank = filled_bank().cast(torch.float16)
    bank.save(tmp_path / "half.safetensors")
    assert IdentityBank.load(tmp_path / "half.safetensors").get(1, 1, 0, torch.device("cpu")).dtype == torch.float16
    loaded = IdentityBank.load(tmp_path / "half.safetensors", dtype=torch.float32)
    tokens_read = loaded.get(1, 1, 0, torch.device("cpu"))
    assert tokens_read.dtype == torch.float32 and torch.allclose(tokens_read, tokens(1.1), atol=1e-3)


@pytest.mark.parametrize(
    "tensors, expected",
    [
        ({"1.0.0": torch.ones(2, 3, 4, dtype=torch.int32)}, "int32, not floating-point"),
        ({"1.0.0": torch.ones(2, 3, 4, dtype=torch.bool)}, "bool, not floating-point"),
        ({"1.0.0": torch.ones(3, 4)}, "shape (3, 4)"),
        ({"1.0.0": torch.ones(5, 3, 4)}, "shape (5, 3, 4)"),
        ({"1.0.0": torch.full((2, 3, 4), float("nan"))}, "NaN or infinite"),
        ({"1.0": torch.ones(2, 3, 4)}, "not named source.step.layer"),
        ({"a.b.c": torch.ones(2, 3, 4)}, "not named source.step.layer"),
        ({"1.0.0": torch.ones(2, 3, 4), "1.1.0": torch.ones(2, 5, 4)}, "layer 0 holds tokens of shapes"),
        ({"1.0.0": torch.ones(2, 3, 4), "2.1.0": torch.ones(2, 3, 4)}, "same steps and layers"),
        ({"2.0.0": torch.ones(2, 3, 4)}, "'Bob' names identity images the bank does not hold"),
    ],
    ids=["int", "bool", "2d", "halves", "nan", "short-key", "text-key", "shapes", "holes", "orphan-character"],
)
def test_a_bank_that_cannot_be_read_as_it_is_is_refused_naming_the_file(tmp_path, tensors, expected):
    path = save_raw(tmp_path / "odd.safetensors", tensors)
    with pytest.raises(BankError) as info:
        IdentityBank.load(path)
    assert str(path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize(
    "signature, characters, expected",
    [
        ("[1, 2]", "{}", "signature is not a mapping"),
        ("{not json", "{}", "not a usable identity bank"),
        ("{}", '{"Bob": "1"}', "characters are not lists"),
        ('{"cfg": true}', '{"Bob": [1]}', "guidance halves"),
    ],
)
def test_a_bank_with_broken_records_is_refused_naming_the_file(tmp_path, signature, characters, expected):
    tensors = {"1.0.0": torch.ones(1, 3, 4)}
    path = save_raw(tmp_path / "odd.safetensors", tensors, signature=signature, characters=characters)
    with pytest.raises(BankError, match="odd.safetensors") as info:
        IdentityBank.load(path)
    assert expected in str(info.value)


def test_only_identity_mode_takes_a_filled_bank(tmp_path):
    filled_bank().check_mode("identity")
    IdentityBank().check_mode("window")  # an empty bank is a container the run fills
    with pytest.raises(BankError, match="--bank.*--mode window would empty it"):
        filled_bank().check_mode("window")
    with pytest.raises(BankError, match="--mode off does not read it"):
        filled_bank().check_mode("off")


def test_check_characters_refuses_strangers_and_missing_characters():
    bank = filled_bank()
    bank.check_characters(["Bob", "Alice", "Carol"], needed=["Bob"])
    with pytest.raises(BankError, match="holds Alice, not a character of this story"):
        bank.check_characters(["Bob"])
    with pytest.raises(BankError, match="no identity images of Carol"):
        bank.check_characters(["Bob", "Alice", "Carol"], needed=["Bob", "Carol"])


FILLED_LAYOUT = {(0, 0): (2, 3, 4), (1, 0): (2, 3, 4)}  # what filled_bank holds for each image


@pytest.mark.parametrize(
    "layout, expected",
    [
        ({(0, 0): (2, 3, 4), (1, 0): (2, 3, 8)}, "image 1 at step 1, layer 0 of shape (2, 3, 4); this model"),
        ({(0, 0): (2, 6, 4), (1, 0): (2, 6, 4)}, "give (2, 6, 4)"),
        ({(0, 0): (1, 3, 4), (1, 0): (1, 3, 4)}, "give (1, 3, 4)"),
        ({(0, 0): (2, 3, 4)}, "image 1 at step 1, layer 0, where this model and these settings sample none"),
        ({**FILLED_LAYOUT, (1, 1): (2, 3, 4)}, "has no tokens of image 1 at step 1, layer 1"),
    ],
    ids=["channels", "sampled", "halves", "extra-step", "missing-layer"],
)
def test_check_shapes_refuses_tokens_the_run_would_not_write(layout, expected):
    bank = filled_bank()
    bank.check_shapes(FILLED_LAYOUT)
    with pytest.raises(BankError, match="the identity bank") as info:
        bank.check_shapes(layout)
    assert expected in str(info.value) and "regenerate it" in str(info.value)


def test_check_shapes_names_the_file_a_bank_was_loaded_from(tmp_path):
    filled_bank().save(tmp_path / "mine.safetensors")
    loaded = IdentityBank.load(tmp_path / "mine.safetensors")
    with pytest.raises(BankError, match=f"identity bank {tmp_path / 'mine.safetensors'} holds"):
        loaded.check_shapes({(0, 0): (2, 3, 5), (1, 0): (2, 3, 5)})
