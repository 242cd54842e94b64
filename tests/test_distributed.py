"""One story over several processes (torchrun, gloo on the CPU): the same bytes as one process, one writer,
and a killed process leaves a folder the next run finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from storydiffusion.distributed import ProcessShare, command_line_share, draw_shared
from storydiffusion.errors import SettingsError
from storydiffusion.launcher import devices_value
from storydiffusion.panel_transport import pack_panels, unpack_panels
from storydiffusion.results import PanelImage
from storydiffusion.rundir import unrecorded_files

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
STORY = """\
characters:
  Bob: a man in a red coat
  Ann: a woman in a blue coat
panels:
  - "[Bob] walks # Morning."
  - "[Ann] reads"
  - "[Bob] eats"
  - "[Ann] sings"
  - "[Bob] sleeps"
  - "[Bob] and [Ann] talk"
  - "[Ann] runs"
  - "[Bob] waves"
  - "[Ann] waves back"
settings: {steps: 2, id_images: 2, window: 1, height: 64, width: 64}
"""
FAST = ["--model", "tiny-sdxl", "--device", "cpu", "--quiet"]


def storydiffusion(*args: str, processes: int = 1, **popen) -> subprocess.Popen:
    """``storydiffusion ARGS`` in one process, or under torch.distributed.run with ``processes``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    command = [sys.executable, *launcher, "-m", "storydiffusion", *args]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def finished(process: subprocess.Popen, timeout: int = 300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output.decode(errors="replace")


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("distributed") / "story.yaml"
    path.write_text(STORY, encoding="utf-8")
    return path


def generate_here(*args: str) -> None:
    """``storydiffusion generate ARGS`` in this process, whose imports are paid for already (a launch costs
    seconds of them), on one thread as the launched processes (OMP_NUM_THREADS=1)."""
    from storydiffusion.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["generate", *args, *FAST]) == 0
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_process(story) -> Path:
    out = story.parent / "one"
    generate_here(str(story), "--out", str(out))
    return out


def panel_bytes(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((out / "panels").glob("*.png"))}


def manifest(out: Path) -> dict:
    record = json.loads((out / "story.json").read_text(encoding="utf-8"))
    return {key: value for key, value in record.items() if key not in ("created", "seconds")}


@pytest.mark.slow
def test_two_processes_write_the_same_bytes_as_one_each_writing_the_panels_it_drew(story, one_process):
    out = story.parent / "two"
    code, output, written = watched_run(story, out, "own")
    assert code == 0, output
    assert panel_bytes(out) == panel_bytes(one_process) and len(panel_bytes(out)) == 9
    assert manifest(out) == manifest(one_process)
    assert output.count("9 panels in") == 1  # one process reports, as it alone writes the manifest
    assert written[0] and written[1] and not set(written[0]) & set(written[1])  # each its own read batches
    assert "do not see the run folder" not in output


WATCHED = """\
import os, sys
import storydiffusion.distributed as distributed
from storydiffusion.cli import main
from storydiffusion.launcher import leave_process_group

mode, log, rank = sys.argv[1], sys.argv[2], int(os.environ["RANK"])
writes = distributed.save_panel


def watched(panel, folder):
    with open(f"{log}.{rank}", "a") as record:
        record.write(f"{panel.index}\\n")
    if mode == "full" and rank == 1:
        raise OSError(28, "No space left on device")
    return writes(panel, folder)


distributed.save_panel = watched
if mode == "apart" and rank == 1:
    distributed._fingerprint = lambda folder: "the same path on another machine's disk"
leave_process_group(main(sys.argv[3:]))  # as the storydiffusion command ends each of several processes
"""


def watched_run(story: Path, out: Path, mode: str) -> tuple[int, str, dict[int, list[int]]]:
    """``generate`` over two processes, each one's panel writes logged (``mode`` "full": the second one's
    disk is full; "apart": it does not see the first one's folder). (exit code, output, panels by process)."""
    script, log = story.parent / "watched.py", out.parent / f"{out.name}.log"
    script.write_text(WATCHED, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    command += [mode, str(log), "generate", str(story), "--out", str(out), *FAST]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    code, output = finished(process)
    written = {
        rank: [int(n) for n in Path(f"{log}.{rank}").read_text().split()]
        for rank in (0, 1)
        if Path(f"{log}.{rank}").exists()
    }
    return code, output, written


@pytest.mark.slow
def test_processes_that_do_not_see_the_folder_send_their_panels_to_the_first_one(story, one_process):
    out = story.parent / "apart"
    code, output, written = watched_run(story, out, "apart")
    assert code == 0, output
    assert written == {}  # every panel went through the first process's writer instead
    assert panel_bytes(out) == panel_bytes(one_process)
    assert "do not see the run folder" in output and "which wrote them" in output


@pytest.mark.slow
def test_a_process_that_cannot_write_its_panels_stops_them_all_and_the_folder_stays_valid(story, one_process):
    out = story.parent / "full"
    code, output, _ = watched_run(story, out, "full")
    assert code != 0, output  # plain torchrun says 1 for its workers' 2 (the --devices launcher passes 2 on)
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "process 1 could not write its panels" in lines[0]  # the first process reports
    assert "No space left on device" in lines[0] and unrecorded_files(out) == []
    generate_here(str(story), "--out", str(out))  # the same command, alone, finishes the run
    assert panel_bytes(out) == panel_bytes(one_process)


CANCELLED = """\
import sys
from storydiffusion.distributed import process_share, release_processes
from storydiffusion.launcher import leave_process_group
from storydiffusion.pipeline import StoryPipeline
from storydiffusion.story import load_story

share = process_share(cpu=True)
asked = []


def cancel():  # the second process is cancelled during its first read batch, at its first step
    asked.append(1)
    return share.rank == 1 and len(asked) > 2


pipeline = StoryPipeline.from_pretrained("tiny-sdxl", device="cpu")
result = pipeline.generate(load_story(sys.argv[1]), share=share, cancel=cancel)
print(f"process {share.rank}: cancelled {result.cancelled}, panels {sorted(p.index + 1 for p in result.panels)}")
release_processes(share)  # torn down here: at the interpreter's exit gloo may abort once the other has gone
leave_process_group(0)
"""


@pytest.mark.slow
def test_a_cancel_on_one_process_stops_them_all_after_the_round_keeping_the_finished_panels(story):
    script = story.parent / "cancelled.py"
    script.write_text(CANCELLED, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    process = subprocess.Popen(
        [*command, str(story)], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    code, output = finished(process)
    assert code == 0, output  # nobody waits for a process that stopped
    # The identity pass drew panels 1-4 (two images each for Bob and Ann); the first process then finished
    # the first read batch (panel 5) while the second was cancelled in its own (panel 6).
    assert "process 0: cancelled True, panels [1, 2, 3, 4, 5]" in output
    assert "process 1: cancelled True, panels []" in output


def worker_of_rank(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK ``rank`` among the launcher's children."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children")
    for pid in children.read_text().split() if children.exists() else []:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    return None


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker through /proc")
def test_a_killed_process_leaves_a_folder_the_next_run_finishes(story, one_process):
    out = story.parent / "killed"
    launcher = storydiffusion("generate", str(story), "--out", str(out), *FAST, processes=2)
    deadline = time.monotonic() + 120
    while not (out / "story.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    worker = worker_of_rank(launcher.pid, 1)
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    code, output = finished(launcher)
    assert code != 0
    record = json.loads((out / "story.json").read_text(encoding="utf-8"))
    listed = {entry["file"] for entry in record["panels"]}
    being_drawn = {f"panels/panel_{number:03d}.png" for number in record.get("drawing", [])}
    on_disk = {f"panels/{path.name}" for path in (out / "panels").glob("*")} if (out / "panels").exists() else set()
    assert listed <= on_disk <= listed | being_drawn  # every panel recorded is there, and nothing else but
    assert record["complete"] is False or len(listed) == 9
    assert unrecorded_files(out) == []  # a panel written but not yet recorded is on the list of those being drawn
    # The shortcut launches the processes itself (three this time): the run continues where it stopped.
    again, output = finished(storydiffusion("generate", str(story), "--out", str(out), *FAST, "--devices", "cpu:3"))
    assert again == 0, output
    assert panel_bytes(out) == panel_bytes(one_process)


# ------------------------------------------------------------------------------------ without launching


def test_panels_travel_between_processes_pixel_for_pixel():
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (24, 16, 3), dtype=np.uint8))
    mask = Image.fromarray((rng.random((24, 16)) > 0.5).astype(np.uint8) * 255)
    panels = [
        PanelImage(3, picture, 42, "a man walks", "", ("Bob",), True, {"Bob": mask}),
        PanelImage(5, picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 7, "b", "ugly", (), False),
    ]
    error, stopped, received = unpack_panels(pack_panels(panels))
    assert error is None and stopped is False
    assert [(p.index, p.seed, p.prompt, p.negative_prompt, p.characters, p.identity) for p in received] == [
        (3, 42, "a man walks", "", ("Bob",), True),
        (5, 7, "b", "ugly", (), False),
    ]
    for sent, got in zip(panels, received):
        assert np.array_equal(np.asarray(sent.image), np.asarray(got.image))
        assert set(sent.masks) == set(got.masks)
    assert np.array_equal(np.asarray(received[0].masks["Bob"]), np.asarray(mask))
    assert unpack_panels(pack_panels([])) == (None, False, [])
    assert unpack_panels(pack_panels([], stopped=True)) == (None, True, [])
    assert unpack_panels(pack_panels(panels, error="disk full")) == ("disk full", False, [])
    records = unpack_panels(pack_panels(panels, pictures=False))[2]  # the files are on a shared disk
    assert [(p.index, p.image, set(p.masks)) for p in records] == [(3, None, {"Bob"}), (5, None, set())]


def test_read_batches_are_dealt_round_robin():
    shares = [ProcessShare(rank, 3, CPU) for rank in range(3)]
    assert [[n for n in range(8) if share.draws(n)] for share in shares] == [[0, 3, 6], [1, 4, 7], [2, 5]]


@pytest.mark.parametrize(("text", "expected"), [("0,1,2,3", (4, "0,1,2,3")), ("cpu:2", (2, "")), (" 1 ", (1, "1"))])
def test_devices_are_gpu_numbers_or_a_cpu_count(text, expected):
    assert devices_value(text) == expected


@pytest.mark.parametrize("text", ["0,0", "cpu:0", "cpu:x", "gpu", "", "cpu:65"])
def test_bad_devices_are_refused(text):
    with pytest.raises(ValueError, match="0,1,2,3 or cpu:N"):
        devices_value(text)


def test_in_window_mode_the_first_process_draws_every_window_in_order():
    drawn = []
    plan = [SimpleNamespace(kind="window") for _ in range(3)]

    def run_for():
        return SimpleNamespace(
            settings=SimpleNamespace(mode="window"),
            plan=plan,
            remember=lambda batch: None,
            finished_panels=lambda batch, images, subject: [],
            on_panel=None,
        )

    first, other = SimpleNamespace(panels=[], warnings=[]), SimpleNamespace(panels=[], warnings=[])
    draw_shared(
        lambda number, batch, done: (drawn.append(number), ([], None))[1], run_for(), first, ProcessShare(0, 2, CPU)
    )
    draw_shared(
        lambda number, batch, done: (drawn.append(-1), ([], None))[1], run_for(), other, ProcessShare(1, 2, CPU)
    )
    assert drawn == [0, 1, 2] and "first process drew them all" in first.warnings[0] and not other.warnings


def test_only_the_first_process_reports(monkeypatch):
    import storydiffusion.distributed as distributed

    monkeypatch.setattr(distributed, "process_share", lambda cpu=False: ProcessShare(1, 2, CPU))
    args = SimpleNamespace(overwrite=True, quiet=False, device="auto")
    assert command_line_share(args).rank == 1 and args.quiet is True


@pytest.mark.slow
def test_an_overwrite_in_window_mode_over_two_processes_equals_one_process(story, one_process):
    reference, out = story.parent / "window-one", story.parent / "window-two"
    window = ["--mode", "window", "--window", "2"]
    generate_here(str(story), "--out", str(reference), *window)
    import shutil

    shutil.copytree(one_process, out)  # an earlier run, replaced only once the new one is finished
    code, output = finished(
        storydiffusion("generate", str(story), "--out", str(out), *FAST, *window, "--overwrite", processes=2)
    )
    assert code == 0, output
    assert panel_bytes(out) == panel_bytes(reference) != panel_bytes(one_process)
    assert manifest(out)["settings"]["mode"] == "window" and "first process drew them all" in output


# ------------------------------------------------------------------------------------ several stories


def test_several_stories_get_a_folder_each_and_divide_among_processes(story, one_process):
    other = story.parent / "other.yaml"
    other.write_text(STORY.replace("Morning.", "Evening."), encoding="utf-8")
    root = story.parent / "stories"
    code, output = finished(
        storydiffusion("generate", str(story), str(other), "--out-root", str(root), *FAST, processes=2)
    )
    assert code == 0, output
    assert sorted(p.name for p in root.iterdir()) == ["other", "story"]
    assert panel_bytes(root / "story") == panel_bytes(one_process)  # drawn whole by one process
    assert manifest(root / "other")["story"]["panels"][0]["caption"] == "Evening."


@pytest.mark.slow
def test_each_process_continues_the_interrupted_stories_it_draws_alone(story, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(STORY.replace("Morning.", "Evening."), encoding="utf-8")
    root, stories = tmp_path / "stories", [str(story), str(other)]
    generate_here(*stories, "--out-root", str(root))
    whole = {name: panel_bytes(root / name) for name in ("story", "other")}
    for name in ("story", "other"):  # as if each run had been stopped after its fifth panel
        record = json.loads((root / name / "story.json").read_text(encoding="utf-8"))
        for entry in record["panels"][5:]:
            (root / name / entry["file"]).unlink()
        record["panels"], record["complete"] = record["panels"][:5], False
        (root / name / "story.json").write_text(json.dumps(record), encoding="utf-8")
    code, output = finished(storydiffusion("generate", *stories, "--out-root", str(root), *FAST, "--devices", "cpu:2"))
    assert code == 0, output  # the second process continued "other" itself, checking its folder first
    assert {name: panel_bytes(root / name) for name in ("story", "other")} == whole
    (root / "other" / "story.json").write_text("{}", encoding="utf-8")  # now a folder the second one must refuse
    code, output = finished(storydiffusion("generate", *stories, "--out-root", str(root), *FAST, "--devices", "cpu:2"))
    assert code == 2 and output.count("error:") == 1 and "other" in output, output


@pytest.mark.parametrize(
    ("stories", "flags", "message"),
    [
        (["a.yaml"], [], "--out is required"),
        (["a.yaml", "b.yaml"], ["--out", "x"], "2 stories need --out-root"),
        (["a.yaml"], ["--out", "x", "--out-root", "y"], "not both"),
        (["a.yaml", "b.yaml"], ["--out-root", "y", "--panels", "1"], "--panels names things of one story"),
        (["a.yaml", "sub/a.yml"], ["--out-root", "y"], "share the folder 'a'"),
    ],
)
def test_flags_of_several_stories_are_checked_first(stories, flags, message, tmp_path, capsys, monkeypatch):
    from storydiffusion.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["generate", *stories, *flags, *FAST]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_stories_are_divided_when_there_are_enough_for_every_process():
    from storydiffusion.cli_stories import divide_stories, story_folder_name

    share = ProcessShare(1, 3, CPU)
    assert divide_stories(7, share) == ([1, 4], None)  # whole stories, each drawn alone
    assert divide_stories(2, share) == ([0, 1], share)  # fewer stories than processes: each spread over all
    assert divide_stories(2, None) == ([0, 1], None)
    assert story_folder_name("runs/kite day/story.json") == "kite_day"
    assert story_folder_name("x/Le Phare.yaml") == "Le_Phare"


# ------------------------------------------------------------------------------------ the --devices launcher


def test_gpu_numbers_are_read_through_the_schedulers_visible_devices():
    from storydiffusion.launcher import visible_devices

    assert visible_devices("0,1", "4,5", 2) == "4,5"
    assert visible_devices("1", None, 2) == "1"
    with pytest.raises(SettingsError, match="shows 2 GPU.* no GPU 2"):
        visible_devices("0,2", None, 2)


def test_a_bad_input_is_one_line_and_exit_2_before_any_process_starts(tmp_path, capsys):
    from storydiffusion.cli import main

    assert main(["generate", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o"), "--devices", "cpu:2"]) == 2
    assert capsys.readouterr().err.count("error:") == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("world", "expected"), [("1", -signal.SIGABRT), ("2", 2)])
def test_a_process_of_several_ends_with_its_code_skipping_the_teardown_that_can_abort(world, expected, tmp_path):
    """Gloo's threads have aborted a finished process in the interpreter's teardown (SIGABRT), after its one-line
    message. A process of several skips that teardown: an exit hook standing for it aborts a lone process, never
    one of several, whose exit code and message are the command's."""
    harness = (
        "import atexit, os, runpy, sys; import torch.distributed; atexit.register(os.abort); "
        "sys.argv = ['storydiffusion', 'plan', sys.argv[1]]; runpy.run_module('storydiffusion', run_name='__main__')"
    )
    env = {**os.environ, "WORLD_SIZE": world, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    missing = str(tmp_path / "missing.yaml")
    done = subprocess.run(
        [sys.executable, "-c", harness, missing], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == expected, done.stderr
    assert done.stderr.count("error:") == 1 and "missing.yaml" in done.stderr


@pytest.mark.slow
def test_a_refusal_on_the_first_process_stops_them_all_with_its_message(story, one_process, tmp_path):
    import shutil

    out = tmp_path / "finished"
    shutil.copytree(one_process, out)
    before = panel_bytes(out)
    code, output = finished(
        storydiffusion(
            "generate", str(story), "--out", str(out), *FAST, "--panels", "3", "--steps", "3", "--devices", "cpu:2"
        )
    )
    assert code == 2, output
    assert output.count("holds a run with other settings") == 1 and "Traceback" not in output, output  # said once
    assert panel_bytes(out) == before
