"""The identity bank on its own: what it keeps, what it forgets, how it says it does not fit, its file."""

import pytest
import torch

from storydiffusion.bank import IdentityBank
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
