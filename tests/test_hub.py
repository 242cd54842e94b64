"""Quick answers on whether a model can come from the hub or its cache."""

import http.server
import socket
import threading

import pytest

from storydiffusion import hub
from storydiffusion.hub import hub_is_reachable, hub_repo, is_in_hub_cache


def test_hub_repo_of_registry_names_ids_and_local_paths(tmp_path):
    assert hub_repo("sdxl-base") == "stabilityai/stable-diffusion-xl-base-1.0"
    assert hub_repo("tiny-sdxl") is None
    assert hub_repo("someone/some-model") == "someone/some-model"
    assert hub_repo(str(tmp_path)) is None
    assert hub_repo("./missing/model.safetensors") is None
    assert hub_repo("not-a-model") is None


def test_offline_mode_is_unreachable_without_asking(monkeypatch):
    monkeypatch.setattr(hub.hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub.hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    assert hub_is_reachable() is False


@pytest.fixture
def answering_server():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_any_http_answer_counts_as_reachable_and_a_closed_port_does_not(monkeypatch, answering_server):
    monkeypatch.setattr(hub.hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub.hf_constants, "ENDPOINT", answering_server)
    assert hub_is_reachable() is True
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(hub.hf_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub_is_reachable() is False


def test_the_cache_is_read_from_its_folder(tmp_path, monkeypatch):
    repo = tmp_path / "models--someone--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "model_index.json").write_text("{}")
    monkeypatch.setattr(hub.hf_constants, "HF_HUB_CACHE", str(tmp_path))
    assert is_in_hub_cache("someone/cached") is True
    assert is_in_hub_cache("someone/missing") is False
