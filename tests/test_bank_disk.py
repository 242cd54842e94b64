"""The identity bank's disk tier: host memory bounded by --bank-memory, the same bytes read back, no files left."""

import gc
import json
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from storydiffusion.bank import IdentityBank
from storydiffusion.bank_disk import DiskTier
from storydiffusion.cli import main

CPU = torch.device("cpu")
ENTRY_BYTES = 2 * 3 * 4 * 4  # one (source, step, layer) of ``tokens``: the chunk a put adds
FAST = ["--model", "tiny-sdxl", "--steps", "2", "--height", "64", "--width", "64", "--quiet", "--device", "cpu"]


def tokens(value: float) -> torch.Tensor:
    return torch.randn((2, 3, 4), generator=torch.Generator().manual_seed(int(value * 100)))


def fill(bank: IdentityBank, sources=(1, 2), steps=(0, 1, 2), layers=(0, 1)) -> IdentityBank:
    for source in sources:
        for step in steps:
            for layer in layers:
                bank.put(source, step, layer, tokens(source + step / 10 + layer / 100))
    bank.characters = {"Bob": [1], "Alice": [2]}
    return bank


def spilled_bank(folder: Path, budget: int = 3 * ENTRY_BYTES) -> IdentityBank:
    return fill(IdentityBank({"steps": 3}).limit_host_memory(budget, folder))


def spill_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.safetensors"))


def bank_file_contents(path: Path) -> tuple[dict, dict[str, bytes]]:
    """Metadata and each tensor's bytes: safetensors writes the metadata in no fixed order, so files of
    equal contents may differ byte for byte."""
    with safe_open(str(path), framework="pt") as handle:
        tensors = {
            key: handle.get_tensor(key).contiguous().view(torch.uint8).numpy().tobytes() for key in handle.keys()
        }
        return handle.metadata(), tensors


def test_host_memory_stays_within_the_budget_plus_one_chunk_while_the_bank_grows(tmp_path):
    budget = 3 * ENTRY_BYTES
    bank = IdentityBank({"steps": 3}).limit_host_memory(budget, tmp_path)
    for count, step in enumerate(range(6), start=1):
        bank.put(1, step, 0, tokens(step))
        assert bank.host_nbytes() <= budget + ENTRY_BYTES
        assert bank.nbytes() == count * ENTRY_BYTES and len(bank) == count
    assert bank.nbytes() > budget and spill_files(tmp_path)


def test_spilled_tokens_read_back_byte_identical(tmp_path):
    in_memory, on_disk = fill(IdentityBank({"steps": 3})), spilled_bank(tmp_path)
    assert len(on_disk) == len(in_memory) and on_disk.sources() == in_memory.sources()
    assert on_disk.nbytes() == in_memory.nbytes() and on_disk.nbytes(1) == in_memory.nbytes(1)
    for key in [(1, 0, 0), (1, 2, 1), (2, 1, 0), (2, 2, 1)]:
        assert torch.equal(on_disk.get(*key, CPU), in_memory.get(*key, CPU))
    on_disk.check_shapes({(step, layer): (2, 3, 4) for step in range(3) for layer in range(2)})


def test_a_bank_without_a_budget_never_touches_the_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bank = fill(IdentityBank({"steps": 3}))
    assert bank.host_nbytes() == bank.nbytes() and not list(tmp_path.iterdir())


def test_close_and_garbage_collection_remove_the_spill_files(tmp_path):
    bank = spilled_bank(tmp_path)
    assert spill_files(tmp_path)
    bank.close()
    assert not list(tmp_path.iterdir())
    bank = spilled_bank(tmp_path)
    assert spill_files(tmp_path)
    del bank
    gc.collect()
    assert not list(tmp_path.iterdir())


def test_dropping_sources_deletes_the_files_no_longer_needed(tmp_path):
    bank = spilled_bank(tmp_path, budget=6 * ENTRY_BYTES - 1)  # one file per source image
    before = spill_files(tmp_path)
    bank.drop([1])
    assert bank.sources() == {2} and len(spill_files(tmp_path)) < len(before)
    assert torch.equal(bank.get(2, 2, 1, CPU), tokens(2 + 0.2 + 0.01))


def test_cast_reaches_the_spilled_tokens(tmp_path):
    bank = spilled_bank(tmp_path).cast(torch.float16)
    assert bank.get(1, 0, 0, CPU).dtype == torch.float16


def test_moving_a_spilled_bank_to_the_device_brings_its_tokens_back_and_removes_the_files(tmp_path):
    bank = spilled_bank(tmp_path).move_to("meta")  # a device without memory, standing in for a GPU
    assert len(bank) == 12 and bank.sources() == {1, 2} and not list(tmp_path.iterdir())
    assert bank.get(2, 2, 1, torch.device("meta")).shape == (2, 3, 4)


def test_save_of_a_spilled_bank_writes_the_same_identity_bank_file(tmp_path):
    fill(IdentityBank({"steps": 3})).save(tmp_path / "memory.safetensors")
    spilled = spilled_bank(tmp_path / "spill")
    spilled.save(tmp_path / "disk.safetensors")
    assert bank_file_contents(tmp_path / "disk.safetensors") == bank_file_contents(tmp_path / "memory.safetensors")
    loaded = IdentityBank.load(tmp_path / "disk.safetensors")
    assert loaded.characters == spilled.characters and torch.equal(loaded.get(2, 1, 1, CPU), spilled.get(2, 1, 1, CPU))


@pytest.mark.parametrize("value", ["lots", "0", "-1GB"])
def test_a_bad_bank_memory_exits_2_naming_the_flag(tmp_path, capsys, value):
    story = tmp_path / "s.yaml"
    story.write_text('characters:\n  Bob: a man\npanels:\n  - "[Bob] walks"\n', encoding="utf-8")
    assert main(["generate", str(story), "--out", str(tmp_path / "o"), *FAST, "--bank-memory", value]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "--bank-memory" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bank_memory_and_bank_on_device_together_exit_2(tmp_path, capsys):
    story = tmp_path / "s.yaml"
    story.write_text('characters:\n  Bob: a man\npanels:\n  - "[Bob] walks"\n', encoding="utf-8")
    args = ["generate", str(story), "--out", str(tmp_path / "o"), *FAST, "--bank-memory", "1GB", "--bank-on-device"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "--bank-memory" in error and "--bank-on-device" in error and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same story drawn with the whole bank in memory and with a 1 KB --bank-memory (spilling)."""
    root = tmp_path_factory.mktemp("runs")
    story = root / "s.yaml"
    panels = ["[Bob] walks", "[Bob] eats", "[Bob] sits"]
    story.write_text(
        "characters:\n  Bob: a man in a red coat\npanels:\n" + "".join(f"  - {json.dumps(p)}\n" for p in panels),
        encoding="utf-8",
    )
    spills: list[int] = []
    write = DiskTier.write
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(root / "tmp"))
        patch.setattr(DiskTier, "write", lambda tier, tensors: (spills.append(len(tensors)), write(tier, tensors))[1])
        (root / "tmp").mkdir()
        common = [*FAST, "--id-images", "2", "--save-bank"]
        assert main(["generate", str(story), "--out", str(root / "memory"), *common]) == 0
        assert not spills
        assert main(["generate", str(story), "--out", str(root / "disk"), *common, "--bank-memory", "1KB"]) == 0
    return root, spills


@pytest.mark.slow
def test_a_run_with_a_tiny_bank_memory_draws_byte_identical_panels(two_runs):
    root, spills = two_runs
    assert spills, "the bank never spilled to disk"
    names = sorted(path.name for path in (root / "memory" / "panels").iterdir())
    assert names == sorted(path.name for path in (root / "disk" / "panels").iterdir()) and len(names) == 3
    for name in names:
        assert (root / "disk" / "panels" / name).read_bytes() == (root / "memory" / "panels" / name).read_bytes()
    bank = "identity_bank.safetensors"
    assert bank_file_contents(root / "disk" / bank) == bank_file_contents(root / "memory" / bank)


@pytest.mark.slow
def test_a_run_that_spilled_leaves_no_temporary_files(two_runs):
    root, _ = two_runs
    assert not list((root / "tmp").iterdir())
    listing = sorted(str(path.relative_to(root / "disk")) for path in (root / "disk").rglob("*"))
    assert listing == sorted(str(path.relative_to(root / "memory")) for path in (root / "memory").rglob("*"))
