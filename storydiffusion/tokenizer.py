"""The genuine CLIP BPE tokenizer, rebuilt offline from the vocabulary file that open_clip_torch ships.

Tiny test pipelines and offline demos need a real CLIP tokenizer (so that prompts tokenize exactly
as they would with Stable Diffusion), but the Hugging Face hub cannot be reached. open_clip_torch
bundles ``bpe_simple_vocab_16e6.txt.gz``, from which the standard ``vocab.json``/``merges.txt`` pair
is derived here.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError

if TYPE_CHECKING:  # pragma: no cover - for type hints only
    from transformers import CLIPTokenizer

_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (what open_clip and OpenAI's code do).
_N_MERGES = 49152 - 256 - 2
_SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table (the 256 base symbols)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def find_bpe_vocab_file() -> Path:
    """Path of the BPE merges file bundled with open_clip_torch, found without importing open_clip.

    Importing open_clip pulls in torchvision/timm; locating the package is enough.
    """
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The offline CLIP tokenizer needs the package open_clip_torch (it ships the BPE vocabulary): "
            "install it with `pip install open_clip_torch`."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _BPE_FILE
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"open_clip_torch is installed but {_BPE_FILE} was not found next to it; reinstall it with "
        "`pip install --force-reinstall open_clip_torch`."
    )


def build_clip_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """A ``transformers.CLIPTokenizer`` identical to the one of Stable Diffusion, built without network.

    ``pad_token`` is "<|endoftext|>" for SD 1.5 and SDXL's first tokenizer, "!" for SDXL's second.
    Returns a fresh tokenizer on each call (no caching).
    """
    from transformers import CLIPTokenizer

    bpe_path = find_bpe_vocab_file()
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _N_MERGES + 1]]
    base = list(_bytes_to_unicode().values())
    vocab_list = base + [symbol + "</w>" for symbol in base]
    vocab_list += ["".join(merge) for merge in merges]
    vocab_list += list(_SPECIAL_TOKENS)
    vocab = {token: index for index, token in enumerate(vocab_list)}

    with tempfile.TemporaryDirectory(prefix="clip-tokenizer-") as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        merges_file = Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        merges_file.write_text(
            "#version: 0.2\n" + "\n".join(" ".join(merge) for merge in merges) + "\n", encoding="utf-8"
        )
        tokenizer = CLIPTokenizer(
            str(vocab_file),
            str(merges_file),
            pad_token=pad_token,
            model_max_length=77,
        )
    return tokenizer
