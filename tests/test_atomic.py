"""Atomic writes: a target is its old complete self or its new complete self, never half of either."""

from __future__ import annotations

import pytest

from storydiffusion.atomic import TEMPORARY_MARK, atomic_path, atomic_write_bytes, temporary_name, write_json


def leftovers(folder):
    return [p.name for p in folder.rglob("*") if TEMPORARY_MARK in p.name]


def test_temporary_name_is_hidden_beside_the_target_and_keeps_the_suffix(tmp_path):
    assert temporary_name(tmp_path / "clip.mp4") == tmp_path / ".clip.tmp.mp4"


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_byte_identical(tmp_path):
    target = tmp_path / "story.json"
    write_json(target, {"kept": True})
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half a fi")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_a_folder_is_replaced_only_when_complete(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(folder) as temporary:
        temporary.mkdir()
        (temporary / "new.txt").write_text("new")
        raise KeyboardInterrupt
    assert [p.name for p in folder.iterdir()] == ["old.txt"]
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        (temporary / "new.txt").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_stale_temporary_from_an_earlier_crash_is_not_an_obstacle(tmp_path):
    target = tmp_path / "page_01.png"
    temporary_name(target).write_bytes(b"left by a crash")
    atomic_write_bytes(target, b"png")
    assert target.read_bytes() == b"png" and leftovers(tmp_path) == []


def test_a_signal_waits_until_a_file_and_its_record_are_both_written(tmp_path):
    """SIGTERM raised inside the block is delivered only after it: both files exist when it lands."""
    import os
    import signal

    from storydiffusion.atomic import interrupts_deferred

    landed = []
    previous = signal.signal(signal.SIGTERM, lambda *_: landed.append((tmp_path / "b").exists()))
    try:
        with interrupts_deferred():
            (tmp_path / "a").write_text("panel")
            os.kill(os.getpid(), signal.SIGTERM)
            assert landed == []  # still waiting
            (tmp_path / "b").write_text("record")
        assert landed == [True]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_that_lands_on_another_thread_also_waits(tmp_path):
    """torch runs worker threads; the kernel may hand SIGTERM to one of them instead of the main thread."""
    import signal
    import threading
    import time

    from storydiffusion.atomic import interrupts_deferred

    landed = []
    previous = signal.signal(signal.SIGTERM, lambda *_: landed.append((tmp_path / "b").exists()))
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        with interrupts_deferred():
            (tmp_path / "a").write_text("panel")
            signal.pthread_kill(worker.ident, signal.SIGTERM)
            sum(range(100_000))  # the main thread runs Python handlers between bytecodes
            assert landed == []
            (tmp_path / "b").write_text("record")
        for _ in range(2000):  # the main thread runs a signal that landed elsewhere at its next check
            if landed:
                break
            time.sleep(0.001)
        assert landed == [True]
    finally:
        release.set()
        worker.join()
        signal.signal(signal.SIGTERM, previous)
