"""How app.py serves the studio: who may load which models, and the limits of a shared server."""

import sys

import pytest

from storydiffusion import studio_server
from storydiffusion.model_pool import OFFLINE_MODEL
from storydiffusion.studio_server import (
    GPU_SECONDS_RANGE,
    MCP_MISSING_MESSAGE,
    SPACES_ENV,
    ServerOptions,
    gpu_seconds,
    gpu_seconds_for,
    is_loopback,
    server_options,
)


@pytest.fixture(autouse=True)
def not_on_spaces(monkeypatch):
    monkeypatch.delenv(SPACES_ENV, raising=False)


@pytest.mark.parametrize(
    ("argv", "custom"),
    [
        ([], True),  # one person's tool on 127.0.0.1
        (["--host", "localhost"], True),
        (["--host", "::1"], True),
        (["--host", "0.0.0.0"], False),  # reachable by others
        (["--host", "192.168.1.20"], False),
        (["--share"], False),  # a public link
        (["--share", "--allow-custom-models"], True),  # the operator says so
        (["--no-allow-custom-models"], False),
    ],
)
def test_custom_models_are_allowed_by_default_only_where_no_one_else_can_reach_the_page(argv, custom):
    assert server_options(["--offline-demo", *argv]).allow_custom_models is custom


def test_on_hugging_face_spaces_the_server_is_shared(monkeypatch):
    monkeypatch.setenv(SPACES_ENV, "someone/storydiffusion")
    options = server_options([])
    assert options.shared and not options.allow_custom_models


def test_the_offline_demo_runs_the_tiny_model_on_the_cpu():
    options = server_options(["--offline-demo", "--device", "cuda"])
    assert (options.model, options.device) == (OFFLINE_MODEL, "cpu")


@pytest.mark.parametrize("flag", ["--max-queue", "--max-upload-mb"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_limits_below_one_are_refused_with_exit_2(flag, value, capsys):
    with pytest.raises(SystemExit) as stopped:
        server_options([flag, value])
    assert stopped.value.code == 2 and flag in capsys.readouterr().err


def test_uploads_are_limited_and_a_project_may_unpack_to_twice_the_upload_limit():
    options = ServerOptions(model=OFFLINE_MODEL, max_upload_mb=100)
    assert options.launch_options()["max_file_size"] == "100mb"
    assert options.launch_options()["show_error"] is False
    assert options.project_limits().max_total_bytes == 200 * 2**20


def test_the_mcp_server_is_off_by_default_and_on_with_its_flag(monkeypatch):
    monkeypatch.setattr(studio_server, "mcp_installed", lambda: True)
    off, on = server_options(["--offline-demo"]), server_options(["--offline-demo", "--mcp"])
    assert (off.mcp, on.mcp) == (False, True)
    assert "mcp_server" not in off.launch_options() and on.launch_options()["mcp_server"] is True


def test_the_mcp_flag_without_the_mcp_package_says_what_to_install_with_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if the extra were not installed
    assert not studio_server.mcp_installed()
    with pytest.raises(SystemExit) as stopped:
        server_options(["--offline-demo", "--mcp"])
    assert stopped.value.code == 2 and MCP_MISSING_MESSAGE in capsys.readouterr().err
    assert MCP_MISSING_MESSAGE == "--mcp needs the MCP extra: pip install 'storydiffusion[mcp]'"


@pytest.mark.parametrize("argv", [["--share"], ["--host", "0.0.0.0"]])
def test_the_mcp_server_is_refused_on_a_shared_server(argv, monkeypatch, capsys):
    """Its tools answer with files by their path on the server: for assistants on the same machine only."""
    monkeypatch.setattr(studio_server, "mcp_installed", lambda: True)
    with pytest.raises(SystemExit) as stopped:
        server_options(["--offline-demo", "--mcp", *argv])
    assert stopped.value.code == 2 and "--mcp serves assistants on this machine only" in capsys.readouterr().err


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("127.1.2.3") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org") and not is_loopback("")


def test_zerogpu_time_follows_the_work_and_stays_within_bounds():
    def generate(state, title, characters, story_text, style, model, layout, negative, steps, guidance, width, height):
        """The studio's generate handler's parameters, as spaces.GPU passes them on."""

    def regenerate(state, number, prompt, model, layout, story_box):
        """The regenerate handler's parameters."""

    seconds = gpu_seconds_for(generate)
    small = seconds(None, "T", "[Bob] a man", "[Bob] walks\n[Bob] sits", "comic", "m", "classic", "", 30, 5, 768, 768)
    many = "\n".join(["[Bob] walks"] * 12)
    large = seconds(None, "T", "[Bob] a man", many, "comic", "m", "classic", "", 50, 5, 1024, 1024)
    assert GPU_SECONDS_RANGE[0] <= small < large <= GPU_SECONDS_RANGE[1]
    assert seconds(None, "T", "", "x", "comic", "m", "classic", "", "abc", None, [1], True) >= GPU_SECONDS_RANGE[0]
    assert gpu_seconds(10_000, 1000, 4096, 4096) == GPU_SECONDS_RANGE[1]
    assert gpu_seconds_for(regenerate)(None, 2, "", "m", "classic", "") < large


@pytest.mark.parametrize("model", ["tiny", "./gone/model.safetensors"])
def test_a_model_that_is_nowhere_stops_the_server_before_it_starts(model, capsys):
    with pytest.raises(SystemExit) as stopped:
        server_options(["--model", model])
    message = capsys.readouterr().err
    assert stopped.value.code == 2 and "--model: " in message and repr(model) in message and "tiny-sdxl" in message


def test_a_listed_model_or_a_hub_id_starts_the_server():
    for model in ("tiny-sd15", "stabilityai/sdxl-turbo"):
        assert server_options(["--model", model]).model == model
