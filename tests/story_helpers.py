"""Shared by the story tests: the cast they use and how they check error messages."""

from __future__ import annotations

import pytest

from storydiffusion.errors import StoryError

CHARACTERS = """\
[Bob] a tall man with red hair
[Alice] a young woman in a blue coat
"""


def error(fn, *args, **kwargs) -> StoryError:
    with pytest.raises(StoryError) as info:
        fn(*args, **kwargs)
    return info.value


def assert_message(err: StoryError, *words: str, line: int | None = None) -> None:
    text = str(err)
    if line is not None:
        assert err.line == line
        assert f"line {line}" in text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
