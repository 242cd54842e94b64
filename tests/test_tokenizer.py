"""The CLIP tokenizer rebuilt offline: the same ids as open_clip's, a clear error without open_clip."""

import pytest

from storydiffusion.errors import ModelError
from storydiffusion.tokenizer import build_clip_tokenizer

SENTENCES = [
    "a photo of a cat",
    "A man with a red hat walks through the rainy city at night, cinematic lighting.",
    "The girl, 12 years old; smiles!! (comic style) #panel-3",
    "Dr. Watson's dog can't stop barking at the moon",
]


def test_tokenizer_special_ids_and_size():
    tok = build_clip_tokenizer()
    assert tok.bos_token_id == 49406
    assert tok.eos_token_id == 49407
    assert len(tok) == 49408
    assert tok.model_max_length == 77
    assert tok.pad_token_id == 49407
    tok2 = build_clip_tokenizer(pad_token="!")
    assert tok2.pad_token_id == tok2.convert_tokens_to_ids("!") == 0


def test_tokenizer_matches_open_clip():
    from open_clip.tokenizer import SimpleTokenizer

    reference = SimpleTokenizer()
    tok = build_clip_tokenizer()
    for sentence in SENTENCES:
        ids = tok(sentence).input_ids
        assert ids[0] == 49406 and ids[-1] == 49407
        assert ids[1:-1] == reference.encode(sentence), sentence
    padded = tok(SENTENCES[0], padding="max_length", max_length=77, truncation=True).input_ids
    assert len(padded) == 77


def test_tokenizer_without_open_clip_is_a_model_error(monkeypatch):
    import importlib.util

    from storydiffusion import tokenizer as tokenizer_module

    real = importlib.util.find_spec
    monkeypatch.setattr(
        tokenizer_module.importlib.util, "find_spec", lambda name, *a: None if name == "open_clip" else real(name, *a)
    )
    with pytest.raises(ModelError, match="open_clip_torch"):
        build_clip_tokenizer()
