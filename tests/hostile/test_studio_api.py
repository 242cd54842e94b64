"""The studio as a stranger on a shared server meets it: through gradio_client, against a live offline app.

Every call comes from a fresh ``Client`` that never loaded the page (so no hidden load event ran),
the way a script or another user's browser would.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from storydiffusion.model_pool import OFFLINE_MODEL, ModelPool
from storydiffusion.studio_server import ServerOptions
from storydiffusion.work_limits import WorkLimits

app = pytest.importorskip("app")
gradio_client = pytest.importorskip("gradio_client")

PUBLIC_ENDPOINTS = {
    "/pick_example",
    "/random_seed",
    "/check_story",
    "/generate",
    "/stop",
    "/edit_panel",
    "/regenerate_panel",
    "/retypeset",
    "/change_layout",
    "/change_direction",
    "/save_project",
    "/load_project",
    "/animate",
    "/photo_adapter",
}
LIMITS = WorkLimits(max_panels=6, max_steps=50, max_side=512)
STORY = {"title": "Kite", "characters": "[Mia] a girl in a red dress", "story_text": "[Mia] runs\n[Mia] sits # Rest."}
# A job's status while it runs: PROGRESS when its last update was a progress bar's.
RUNNING = ("PROCESSING", "ITERATING", "PROGRESS")
SMALL = {
    "style": "none",
    "negative": "",
    "steps": 2,
    "guidance": 5.0,
    "width": 64,
    "height": 64,
    "seed": 3,
    "sampling_rate": 0.5,
    "id_images": 1,
    "window": 2,
}
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(/[\w.-]+){2,}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_sdxl):
    """A shared-server studio (listed models only, limits on one request's drawing) on the tiny offline model."""
    options = ServerOptions(model=OFFLINE_MODEL, host="0.0.0.0", max_queue=4, limits=LIMITS)
    pool = ModelPool(OFFLINE_MODEL, loader=lambda name, **_: tiny_sdxl, **options.pool_options())
    demo = app.make_app(options, pool)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def client(url: str, downloads: Path | None = None):
    return gradio_client.Client(url, verbose=False, download_files=str(downloads) if downloads else False)


def refusal(url: str, endpoint: str, **arguments) -> str:
    """The message a fresh client gets back from a refused call."""
    with pytest.raises(Exception) as raised:
        client(url).predict(api_name=endpoint, **arguments)
    message = str(raised.value)
    assert "verbose error reporting" not in message, f"{endpoint} answered Gradio's generic error"
    assert not ABSOLUTE_PATH.search(message), f"a server path in {message!r}"
    return message


def test_every_endpoint_is_named_with_named_parameters(server):
    api = client(server).view_api(return_format="dict", print_info=False)
    named = api["named_endpoints"]
    assert set(named) == PUBLIC_ENDPOINTS and not api["unnamed_endpoints"]
    for endpoint, description in named.items():
        names = [parameter["parameter_name"] for parameter in description["parameters"]]
        assert not any(re.fullmatch(r"param_\d+", name) for name in names), f"{endpoint}: {names}"


def test_the_readme_documents_every_endpoint_by_name():
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    missing = [endpoint for endpoint in PUBLIC_ENDPOINTS if f"`{endpoint}`" not in readme]
    assert not missing, f"README.md does not document {missing}"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"steps": "abc"}, "Steps"),
        ({"guidance": None}, "Guidance"),
        ({"width": [64]}, "Width"),
        ({"seed": "seven"}, "Seed"),
        ({"seed": [7]}, "Seed"),
        ({"sampling_rate": True}, "Sampling rate"),
        ({"title": 5}, "Title"),
        ({"story_text": {"a": 1}}, "Story"),
        ({"style": ["comic"]}, "Style"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(server, changes, field):
    message = refusal(server, "/check_story", **{**STORY, **SMALL, **changes})
    assert f"{field}:" in message or f"{field} must" in message


@pytest.mark.parametrize("model", ["stabilityai/sdxl-turbo", "/etc/passwd", "/definitely/missing", "../models"])
def test_a_shared_server_offers_only_its_listed_models(server, model):
    message = refusal(server, "/generate", **STORY, **SMALL, model=model, layout="classic")
    assert "is not offered on this server; choose one of" in message and "sdxl-base" in message
    assert "--" not in message  # the operator's flags are in the README, not in what web users read


@pytest.mark.parametrize(
    ("endpoint", "arguments", "expected"),
    [
        (
            "/regenerate_panel",
            {
                "number": 1,
                "prompt": "",
                "caption": None,
                "seed": None,
                "model": OFFLINE_MODEL,
                "layout": "classic",
                "story_box": "",
            },
            "first",
        ),
        ("/retypeset", {**STORY, "layout": "classic"}, "no panels yet"),
        ("/retypeset", {**STORY, "story_text": "", "layout": "classic"}, "no panels yet"),  # not the empty box
        ("/save_project", {}, "nothing to save"),
        ("/animate", {"from_panel": 1, "to_panel": 2, "frames": 4, "fps": 8}, "generate the story first"),
        (
            "/regenerate_panel",
            {
                "number": "x",
                "prompt": "",
                "caption": None,
                "seed": None,
                "model": OFFLINE_MODEL,
                "layout": "classic",
                "story_box": "",
            },
            "Panel:",
        ),
        ("/change_layout", {"layout": "no-such"}, "Layout:"),
        ("/edit_panel", {"number": "two"}, "Panel:"),
        ("/edit_panel", {"number": 10**20}, "Panel: 100000000000000000000 is not a panel number"),
        ("/edit_panel", {"number": 0}, "Panel: 0 is not a panel number"),
        (
            "/regenerate_panel",
            {
                "number": 1,
                "prompt": "",
                "caption": None,
                "seed": -4,
                "model": OFFLINE_MODEL,
                "layout": "classic",
                "story_box": "",
            },
            "Panel seed must be",
        ),
        ("/save_project", {"include_bank": "yes"}, "Include the identity bank:"),
        ("/pick_example", {"name": "no such example"}, "Examples:"),
        ("/load_project", {"path": None, "model": OFFLINE_MODEL, "layout": "classic"}, "Project: choose a file"),
        ("/animate", {"from_panel": 1, "to_panel": 2, "frames": "many", "fps": 8}, "Frames:"),
    ],
)
def test_stateful_endpoints_answer_a_fresh_client_with_a_message(server, endpoint, arguments, expected):
    assert expected in refusal(server, endpoint, **arguments)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": 60}, "Steps: 60 is more than this shared studio allows for one request (at most 50)"),
        ({"width": 1024}, "Width: 1,024 is more than this shared studio allows for one request (at most 512)"),
        ({"story_text": "[Mia] runs\n" * 7}, "Story: 7 panels is more than this shared studio draws in one request"),
        ({"steps": -1}, "Steps must be 1..1000, got -1 (this shared studio allows at most 50)"),  # not more
    ],
)
def test_a_shared_server_refuses_more_drawing_than_its_operator_allows(server, changes, message):
    arguments = {**STORY, **SMALL, **changes}
    assert message in refusal(server, "/check_story", **arguments)  # told before the request queues
    assert message in refusal(server, "/generate", **arguments, model=OFFLINE_MODEL, layout="classic")


def test_the_pages_sliders_stop_at_the_servers_limits(server):
    import httpx

    components = httpx.get(f"{server}config", timeout=30).json()["components"]
    highest = {c["props"].get("elem_id"): c["props"].get("maximum") for c in components if c.get("type") == "slider"}
    assert (highest["steps"], highest["width"], highest["height"]) == (50, 512, 512)


def test_stateless_endpoints_work_from_a_fresh_client(server):
    assert client(server).predict(api_name="/stop") == "Nothing is running."
    assert "Layout manga" in client(server).predict("manga", api_name="/change_layout")[0]
    assert 0 <= int(client(server).predict(api_name="/random_seed")) < 2**31  # the seed box is text
    assert client(server).predict(**STORY, **SMALL, api_name="/check_story").startswith("Queued: 2 panels")


def raw_answer(url: str, endpoint: str, data: list) -> str:
    """What the server answers to exactly ``data`` (no client-side handling of file records)."""
    import httpx

    event = httpx.post(f"{url}gradio_api/call{endpoint}", json={"data": data}).json()["event_id"]
    return httpx.get(f"{url}gradio_api/call{endpoint}/{event}", timeout=60).text


def maker_raw_download_path(url: str, maker) -> str:
    """Where ``maker``'s project download lies on the server (what its file URL names)."""
    raw = client(url)  # no downloads: file outputs come back as the server's paths
    raw.session_hash = maker.session_hash
    saved = raw.predict(api_name="/save_project")
    path = saved["path"] if isinstance(saved, dict) else saved
    assert Path(path).is_absolute() and Path(path).is_file()  # this test runs on the server's machine
    return path


@pytest.mark.parametrize("value", ["abc", 5, [1], "/etc/hostname", {"url": "http://x"}, {"path": "/etc/hostname"}])
def test_an_upload_of_the_wrong_type_is_refused_naming_the_field(server, value):
    message = refusal(server, "/load_project", path=value, model=OFFLINE_MODEL, layout="classic")
    assert message.startswith("Project: expected an uploaded file") and "handle_file" in message


def test_a_forged_upload_record_reveals_nothing_of_the_servers_files(server, tmp_path):
    """A record naming a server file that was never uploaded gets one answer whether the file exists or not."""
    present = tmp_path / "their-project.zip"
    present.write_bytes(b"PK\x05\x06" + bytes(18))
    meta = {"_type": "gradio.FileData"}
    answers = {
        raw_answer(server, "/load_project", [{"path": path, "meta": meta}, OFFLINE_MODEL, "classic"])
        for path in (str(present), str(tmp_path / "missing.zip"), "/etc/hostname")
    }
    assert len(answers) == 1 and "event: error" in answers.pop()
    from gradio.utils import get_upload_folder

    inside = str(Path(get_upload_folder()) / ("0" * 64) / "guess.zip")
    answer = raw_answer(server, "/load_project", [{"path": inside, "meta": meta}, OFFLINE_MODEL, "classic"])
    assert "Project: that file was not uploaded to this studio" in answer and not ABSOLUTE_PATH.search(answer)


def test_a_broken_upload_is_refused_by_its_name_only(server, tmp_path):
    fake = tmp_path / "holiday.zip"
    fake.write_bytes(b"not a zip at all")
    arguments = {"path": gradio_client.handle_file(str(fake)), "model": OFFLINE_MODEL, "layout": "classic"}
    message = refusal(server, "/load_project", **arguments)
    assert "holiday.zip" in message and "not a project file" in message


@pytest.mark.slow
def test_a_fresh_client_makes_edits_saves_and_reloads_a_story(server, tmp_path):
    """The whole flow over the API, one session per Client, without the page's load event."""
    maker = client(server, tmp_path)
    status, panels, pages, pdf, *_ = maker.predict(
        **STORY, **SMALL, model=OFFLINE_MODEL, layout="classic", api_name="/generate"
    )
    assert status.startswith("Done: 2 of 2 panels") and len(panels) == 2 and pages and pdf
    number, prompt, caption, seed, note = maker.predict(2, api_name="/edit_panel")  # what the editor shows
    assert (number, prompt, caption) == (2, "[Mia] sits", "Rest.") and seed.isdigit() and "2 steps" in note
    redrawn = maker.predict(
        number=2,
        prompt="[Mia] naps",
        caption=None,  # None keeps the caption; text replaces it
        seed=seed,
        model=OFFLINE_MODEL,
        layout="classic",
        story_box=STORY["story_text"],
        api_name="/regenerate_panel",
    )
    assert redrawn[0] == "Panel 2 redrawn." and redrawn[-2] == "[Mia] runs\n[Mia] naps # Rest." and redrawn[-1] == seed
    wrong_box = {"number": 2, "prompt": "[Mia] jumps", "caption": "Up!", "seed": "5", "layout": "classic"}
    with pytest.raises(Exception, match="Story: expected text"):  # refused before the panel is drawn again
        maker.predict(**wrong_box, model=OFFLINE_MODEL, story_box=12345, api_name="/regenerate_panel")
    assert maker.predict(2, api_name="/edit_panel")[1:4] == ("[Mia] naps", "Rest.", seed)
    edited = {**STORY, "story_text": redrawn[-2].replace("Rest.", "A nap.")}  # the box as the page now shows it
    assert "manga" in maker.predict(**edited, layout="manga", api_name="/retypeset")[0]
    saved = maker.predict(api_name="/save_project")
    assert zipfile.is_zipfile(saved)

    stranger = client(server)  # another user: none of the maker's work is theirs
    assert "nothing to save" in refusal(server, "/save_project")
    on_server = maker_raw_download_path(server, maker)  # the maker's download, as it lies in the server's cache
    forged = raw_answer(
        server, "/load_project", [{"path": on_server, "meta": {"_type": "gradio.FileData"}}, OFFLINE_MODEL, "classic"]
    )
    assert "Project: that file was not uploaded to this studio" in forged  # a download is not an upload
    loaded = stranger.predict(gradio_client.handle_file(saved), OFFLINE_MODEL, "classic", api_name="/load_project")
    title, _, _, style, model, _, steps, _, width, height, seed, *_, consistency, layout, status = loaded[:17]
    restored = (title, style, model, steps, width, height, seed, consistency, layout)
    assert restored == ("Kite", "none", OFFLINE_MODEL, 2, 64, 64, "3", "uniform", "manga")  # the seed box is text
    assert status.startswith("Loaded project 'Kite': 2 panels")  # every setting back, as it was saved

    foreign = tmp_path / "foreign.zip"  # the same project, saved by a studio that offered another model
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(foreign, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "project.json":
                data = data.replace(f'"model": "{OFFLINE_MODEL}"'.encode(), b'"model": "segmind/SSD-1B"')
            target.writestr(item, data)
    loaded = stranger.predict(
        gradio_client.handle_file(str(foreign)), OFFLINE_MODEL, "classic", api_name="/load_project"
    )
    assert "which this studio does not offer" in loaded[16]
    redraw = {"number": 1, "prompt": "", "caption": None, "seed": None, "layout": "classic", "story_box": ""}
    with pytest.raises(Exception, match="does not offer, so its panels cannot be redrawn here; press Generate"):
        stranger.predict(**redraw, model=OFFLINE_MODEL, api_name="/regenerate_panel")


@pytest.mark.slow
def test_a_full_queue_tells_the_user_the_server_is_busy(tiny_sdxl):
    options = ServerOptions(model=OFFLINE_MODEL, host="0.0.0.0", max_queue=1)
    demo = app.make_app(options, ModelPool(OFFLINE_MODEL, loader=lambda name, **_: tiny_sdxl))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    users = [client(url) for _ in range(3)]
    long_story = {**STORY, **SMALL, "steps": 40, "model": OFFLINE_MODEL, "layout": "none"}  # seconds
    jobs = []
    try:
        jobs.append(users[0].submit(**long_story, api_name="/generate"))
        while jobs[0].status().code.name not in RUNNING:
            time.sleep(0.1)
        with pytest.raises(Exception, match="(?i)queue is full"):
            for user in users[1:]:  # the one queue place is taken by the running job or the next waiting one
                jobs.append(user.submit(**long_story, api_name="/generate"))
                jobs[-1].result(timeout=0.5) if len(jobs) == 3 else time.sleep(0.5)
    finally:  # the client's calls all pass through the full queue, so the runs are waited for, not stopped
        for job in jobs:
            with contextlib.suppress(Exception):
                job.result(timeout=120)
        demo.close()


def test_a_fresh_client_draws_with_an_uploaded_photo_and_pose_and_a_server_path_is_never_read(server, tmp_path):
    from PIL import Image

    photo, pose = tmp_path / "Mia.png", tmp_path / "2-openpose.png"
    Image.new("RGB", (40, 56), "orange").save(photo)
    Image.new("RGB", (64, 64), "blue").save(pose)
    steered = {
        "consistency": "subject",
        "reference_photos": [gradio_client.handle_file(str(photo))],
        "control_images": [gradio_client.handle_file(str(pose))],
    }
    status, panels, *_ = client(server).predict(
        **STORY, **SMALL, **steered, model=OFFLINE_MODEL, layout="classic", api_name="/generate"
    )
    assert status.startswith("Done: 2 of 2 panels") and len(panels) == 2
    # A record naming a file the server has but nobody uploaded is refused, and the message names no path.
    # (sent raw: gradio_client would upload a local file it is given). Outside Gradio's upload folder
    # Gradio refuses it; inside it, a file nobody uploaded is refused by the studio, naming no path.
    from gradio.utils import get_upload_folder

    meta = {"_type": "gradio.FileData"}
    for path, expected in (
        (str(photo.resolve()), "event: error"),
        (str(Path(get_upload_folder()) / ("0" * 64) / "Mia.png"), "Reference photos: that file was not uploaded"),
    ):
        data = [*STORY.values(), *SMALL.values(), "uniform", [{"path": path, "meta": meta}], 0.6, None, 0.8]
        answer = raw_answer(server, "/check_story", data)
        assert expected in answer and not ABSOLUTE_PATH.search(answer)
    message = refusal(server, "/check_story", **STORY, **SMALL, consistency="everything")
    assert "Share between panels" in message and "'everything'" in message
    message = refusal(server, "/photo_adapter", adapter="faces" * 1000)
    assert "Photos steer by" in message and "is not one of image, face" in message and len(message) < 400


@pytest.mark.slow
def test_a_photo_steers_by_its_face_when_the_user_picks_faceid(server, tmp_path):
    from PIL import Image, ImageDraw

    photo = tmp_path / "Mia.png"
    picture = Image.new("RGB", (40, 56), "white")
    ImageDraw.Draw(picture).ellipse((6, 6, 34, 50), fill="orange")
    picture.save(photo)
    drawn = {}
    for adapter in ("image", "face"):
        user = client(server)
        if adapter == "face":  # the page's radio: the choice stays with this user's session
            user.predict("face", api_name="/photo_adapter")
        steered = {"reference_photos": [gradio_client.handle_file(str(photo))]}
        status, panels, *_ = user.predict(
            **STORY, **SMALL, **steered, model=OFFLINE_MODEL, layout="none", api_name="/generate"
        )
        assert status.startswith("Done: 2 of 2 panels"), status
        drawn[adapter] = [Path(panel["image"]["path"]).read_bytes() for panel in panels]
    assert drawn["image"][0] != drawn["face"][0]  # Mia's identity image: steered by her face, not the whole photo


def test_faceid_on_a_server_without_a_face_model_is_refused_in_the_studios_words(server, tmp_path, monkeypatch):
    from storydiffusion.pipeline import StoryPipeline
    from storydiffusion.studio_text import NO_FACE_MODEL_MESSAGE

    monkeypatch.setattr(StoryPipeline, "can_steer_by_face", lambda self: False)  # a real model, no --face-model
    Image.new("RGB", (40, 56), "orange").save(tmp_path / "Mia.png")
    user = client(server)
    user.predict("face", api_name="/photo_adapter")
    with pytest.raises(Exception) as raised:
        user.predict(
            **STORY,
            **SMALL,
            reference_photos=[gradio_client.handle_file(str(tmp_path / "Mia.png"))],
            model=OFFLINE_MODEL,
            layout="none",
            api_name="/generate",
        )
    assert NO_FACE_MODEL_MESSAGE in str(raised.value) and "--" not in str(raised.value)


def test_with_two_devices_two_users_draw_at_once_each_on_a_model_of_its_own():
    from storydiffusion.pipeline import StoryPipeline

    loaded = []

    def load(name, device="cpu", **_):
        loaded.append(device)
        return StoryPipeline.from_pretrained(name, device="cpu")

    options = ServerOptions(model=OFFLINE_MODEL, devices=("cpu", "cpu"))
    demo = app.make_app(options, ModelPool(OFFLINE_MODEL, loader=load, devices=["cpu", "cpu"]))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    story = {**STORY, **SMALL, "steps": 40, "model": OFFLINE_MODEL, "layout": "none"}
    try:
        jobs = [client(url).submit(**story, api_name="/generate") for _ in range(2)]
        deadline = time.monotonic() + 120
        running = lambda job: job.status().code.name in RUNNING  # noqa: E731
        while not all(running(job) for job in jobs) and not any(job.done() for job in jobs):
            assert time.monotonic() < deadline, [job.status().code.name for job in jobs]
            time.sleep(0.05)
        assert all(running(job) for job in jobs)  # both drawing at the same time, not one after the other
        for job in jobs:
            assert job.result(timeout=120)[0].startswith("Done: 2 of 2 panels")
        assert len(loaded) == 2  # the default device's model, then a second copy for the second device
    finally:
        demo.close()


@pytest.mark.slow
def test_pages_typeset_after_an_example_is_picked_read_as_the_page_then_says(server, tmp_path):
    """Picking the Arabic example over finished pages sets Pages read to right to left; the next pages typeset
    (another layout) read so, as the radio and the reading line say (they were typeset left to right)."""
    maker = client(server, tmp_path)
    maker.predict(**STORY, **SMALL, model=OFFLINE_MODEL, layout="classic", api_name="/generate")
    picked = maker.predict("يوم في السوق", api_name="/pick_example")
    assert "rtl" in picked
    status, *files = maker.predict("strip", api_name="/change_layout")
    cbz = next(str(file) for file in files if str(file).endswith(".cbz"))
    assert b"YesAndRightToLeft" in zipfile.ZipFile(cbz).read("ComicInfo.xml"), status
    again = maker.predict("rtl", api_name="/change_direction")[0]  # the same value: a sentence, not an update
    assert again == "Pages typeset with the strip layout, read right to left."
