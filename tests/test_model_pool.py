"""The models the studio shares between its users: loading, falling back, and who may pick what."""

import pytest

from storydiffusion.errors import ModelError, StoryDiffusionError
from storydiffusion.model_pool import OFFLINE_MODEL, HubUnreachable, ModelNotOffered, ModelPool, shown_name


class FakeLoader:
    """Records what the pool asks for; only the offline demo model loads, anything else has no weights."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, **options):
        self.calls.append((name, options))
        if name != OFFLINE_MODEL:
            raise ModelError("no internet")
        return type("Fake", (), {"spec": type("Spec", (), {"source": "tiny"})()})()

    @property
    def names(self):
        return [name for name, _ in self.calls]


def test_model_pool_falls_back_to_the_offline_demo_with_a_notice():
    loader = FakeLoader()
    pool = ModelPool("sdxl-base", loader=loader, hub_online=lambda: True)
    first = pool.get()
    loaded = loader.names
    assert pool.get("sdxl-base") is first and loaded == ["sdxl-base", "tiny-sdxl"]
    notice = pool.notice("sdxl-base")
    assert "offline demo" in notice and "--" not in notice  # the page's words: no command line to point at
    assert "\n" not in notice and len(notice) < 200  # one short banner line
    strict = ModelPool("sdxl-base", loader=loader, fallback=False, hub_online=lambda: True)
    with pytest.raises(ModelError):
        strict.get()


def test_without_network_an_uncached_hub_model_is_not_even_tried():
    loader = FakeLoader()
    pool = ModelPool("sdxl-base", loader=loader, hub_online=lambda: False, in_cache=lambda repo: False)
    assert pool.get().spec.source == "tiny"
    assert loader.names == [OFFLINE_MODEL]
    assert "no network" in pool.notice() and "--" not in pool.notice()
    strict = ModelPool(
        "sdxl-base", loader=FakeLoader(), fallback=False, hub_online=lambda: False, in_cache=lambda repo: False
    )
    with pytest.raises(ModelError) as raised:
        strict.get()
    assert not isinstance(raised.value, HubUnreachable)  # without fallback the loader itself says why


def test_without_network_a_cached_hub_model_loads_from_the_cache_only():
    loader = FakeLoader()
    asked = []
    pool = ModelPool(
        "sdxl-base", loader=loader, hub_online=lambda: False, in_cache=lambda repo: asked.append(repo) or True
    )
    pool.get()
    assert asked == ["stabilityai/stable-diffusion-xl-base-1.0"]
    assert loader.calls[0] == ("sdxl-base", {"device": "auto", "dtype": "auto", "local_files_only": True})


def test_the_hub_is_asked_once_and_never_for_tiny_or_local_models(tmp_path):
    probes = []

    def online():
        probes.append(1)
        return True

    pool = ModelPool(OFFLINE_MODEL, loader=FakeLoader(), hub_online=online, allow_custom=True)
    pool.get()
    pool.get(str(tmp_path))  # a local folder: the loader reports what is wrong with it, no hub involved
    assert probes == []
    pool.get("sdxl-base")
    pool.get("sd15")
    assert probes == [1]


@pytest.mark.parametrize("name", ["stabilityai/sdxl-turbo", "/etc", "/root/models/x.safetensors", "../x", "~"])
def test_a_shared_server_refuses_unlisted_models_by_name_without_looking(name, tmp_path):
    loader = FakeLoader()
    pool = ModelPool(OFFLINE_MODEL, loader=loader)
    with pytest.raises(ModelNotOffered) as refused:
        pool.get(name)
    message = str(refused.value)
    assert message.startswith("Model:") and "choose one of" in message and "sdxl-base" in message
    assert "--" not in message and "/etc" not in message and "/root" not in message  # no flag; a path: its name
    assert loader.calls == []  # refused by its spelling: nothing was loaded or looked up
    assert "exist" not in message and "not found" not in message  # says nothing of the server's files


def test_an_existing_and_a_missing_server_path_get_the_same_answer(tmp_path):
    pool = ModelPool(OFFLINE_MODEL, loader=FakeLoader())
    answers = []
    for path in (tmp_path, tmp_path / "missing"):
        with pytest.raises(ModelNotOffered) as refused:
            pool.get(str(path))
        answers.append(str(refused.value).replace(path.name, "NAME"))  # a path is shown by its last part
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (5, "expected a model name .text., got int"),
        (["sdxl-base"], "got list"),
        ({"a": 1}, "got dict"),
        (True, "got bool"),
        ("x" * 10_000, "a name of 10,000 characters is too long"),  # text, so not "got str"
    ],
)
def test_a_model_that_is_not_a_name_is_refused_by_field(value, says):
    with pytest.raises(StoryDiffusionError, match=f"^Model: .*{says}"):
        ModelPool(OFFLINE_MODEL, loader=FakeLoader(), allow_custom=True).check_choice(value)


def test_listed_models_and_the_default_are_always_offered():
    pool = ModelPool("my-org/my-model", loader=FakeLoader())
    assert pool.choices()[0] == "my-org/my-model" and "sdxl-base" in pool.choices()
    assert pool.check_choice(None) == pool.check_choice("") == "my-org/my-model"
    assert pool.check_choice("sd15") == "sd15"


def test_one_users_model_notice_never_reaches_another_user():
    pool = ModelPool(OFFLINE_MODEL, loader=FakeLoader(), allow_custom=True, hub_online=lambda: True)
    pool.get()
    default_notice = pool.notice()
    pool.get("someone/private-model")  # another user's choice falls back to the demo model
    assert "someone/private-model" in pool.notice("someone/private-model")
    assert pool.notice() == default_notice and "private-model" not in default_notice


def test_a_notice_names_a_server_path_by_its_last_part_only():
    pool = ModelPool("/srv/models/secret/sdxl.safetensors", loader=FakeLoader(), hub_online=lambda: True)
    pool.get()
    assert "sdxl.safetensors" in pool.notice() and "/srv" not in pool.notice()
    assert shown_name("C:\\models\\x.safetensors") == "x.safetensors"
    assert shown_name("stabilityai/sdxl-turbo") == "stabilityai/sdxl-turbo"


def test_at_most_max_loaded_models_stay_loaded():
    loader = FakeLoader()
    pool = ModelPool("sdxl-base", loader=loader, max_loaded=1, allow_custom=True, hub_online=lambda: True)
    demo = pool.get(OFFLINE_MODEL)
    assert pool.get("sdxl-base") is demo  # falls back to the loaded demo model
    assert pool.get(OFFLINE_MODEL) is demo and loader.names == [OFFLINE_MODEL, "sdxl-base"]  # and keeps it loaded
    real = RealLoader()
    pool = ModelPool("real-a", loader=real, max_loaded=1, allow_custom=True, hub_online=lambda: True)
    drawing = pool.get("real-a")
    for typed in ("/etc/passwd", "typo-of-real-b", "/etc/passwd"):  # names a user typed, which do not load
        assert pool.get(typed).spec.source == "tiny"
    assert pool.get("real-a") is drawing  # a mistyped name never unloads the model users draw with
    assert real.names == ["real-a", "/etc/passwd", OFFLINE_MODEL, "typo-of-real-b"]  # each tried once
    pool.get("real-c")  # a second real model takes the one place
    assert pool.get("real-a") is not drawing and real.names[-2:] == ["real-c", "real-a"]


def test_names_that_could_not_be_loaded_are_remembered_up_to_a_limit():
    from storydiffusion.model_pool import MAX_NOTICES

    pool = ModelPool(OFFLINE_MODEL, loader=FakeLoader(), allow_custom=True, hub_online=lambda: True)
    for number in range(MAX_NOTICES + 50):
        pool.get(f"typed-{number}")
    assert len(pool._notices) == MAX_NOTICES and "typed-0" not in pool._notices
    assert "typed-113" in pool.notice(f"typed-{MAX_NOTICES + 49}")


class RealLoader(FakeLoader):
    """Loads names starting "real-" as real models (a pipeline each), the demo model as a tiny one."""

    def __call__(self, name, **options):
        self.calls.append((name, options))
        if name.startswith("real-"):
            return type("Real", (), {"spec": type("Spec", (), {"source": "hub"})()})()
        if name != OFFLINE_MODEL:
            raise ModelError("no such model")
        return type("Fake", (), {"spec": type("Spec", (), {"source": "tiny"})()})()


class DeviceLoader:
    """Loads a distinct fake pipeline per call, remembering the device it was asked for."""

    def __init__(self):
        self.devices = []

    def __call__(self, name, device="auto", **options):
        self.devices.append(device)
        return type("Fake", (), {"spec": type("Spec", (), {"source": "tiny"})(), "device": device})()


def test_each_run_leases_a_device_of_its_own_and_a_third_waits_for_one():
    import threading

    loader = DeviceLoader()
    pool = ModelPool(OFFLINE_MODEL, loader=loader, devices=["cuda:0", "cuda:1"], hub_online=lambda: True)
    assert pool.concurrency == 2
    twins = ModelPool(OFFLINE_MODEL, loader=DeviceLoader(), devices=["cpu", "cpu"], hub_online=lambda: True)
    with twins.lease() as one, twins.lease() as other:
        assert one is not other  # two CPU processes' worth: each run its own model, never one shared
    with pool.lease() as first, pool.lease() as second:
        assert {first.device, second.device} == {"cuda:0", "cuda:1"}
        waited = threading.Event()

        def third_run():
            with pool.lease() as third:
                waited.device = third.device
                waited.set()

        worker = threading.Thread(target=third_run)
        worker.start()
        assert not waited.wait(0.3)  # both devices are busy: the third run waits
    worker.join(5)
    assert waited.is_set() and waited.device in {"cuda:0", "cuda:1"}
    with pool.lease() as again:
        assert again is pool.get(OFFLINE_MODEL, ["cuda:0", "cuda:1"].index(again.device))  # each keeps its copy
    assert sorted(loader.devices) == ["cuda:0", "cuda:1"]


def test_a_refused_model_never_takes_a_device():
    pool = ModelPool(OFFLINE_MODEL, loader=DeviceLoader(), devices=["cpu"], hub_online=lambda: True)
    with pytest.raises(ModelNotOffered):
        with pool.lease("/etc/passwd"):
            pass
    with pool.lease() as pipeline:  # the one device is free
        assert pipeline.device == "cpu"


def test_the_studio_serves_one_run_per_device():
    from storydiffusion.studio_server import server_options

    options = server_options(["--offline-demo", "--devices", "cpu:2"])
    assert options.devices == ("cpu", "cpu") and options.pool_options()["devices"] == ["cpu", "cpu"]
    assert server_options(["--devices", "1,3"]).devices == ("cuda:1", "cuda:3")
    assert server_options([]).pool_options()["devices"] is None


def test_the_page_runs_one_story_per_device_and_one_clip_at_a_time():
    import app
    from storydiffusion.studio_server import server_options

    options = server_options(["--offline-demo", "--devices", "cpu:2"])
    demo = app.make_app(options)
    limits = {(f.api_name, f.concurrency_id, f.concurrency_limit) for f in demo.fns.values()}
    assert {("generate", "gpu", 2), ("regenerate_panel", "gpu", 2), ("animate", "video", 1)} <= limits
