"""The web studio in a real browser: Debian's Chromium driven by Playwright, offline demo model."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHARACTERS = "[Mia] a girl with curly black hair and a red dress\n[Leo] a boy with blond hair and round glasses"
STORY = "\n".join(
    [
        "[Mia] flies a kite on a hill # A windy day. @Mia: Look!",
        "[Leo] reads under a tree # Leo preferred books.",
        "[Mia] and [Leo] hold the kite string together # @Leo: Pull! @Mia: Harder!",
    ]
)

playwright_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    log = open(log_path, "w")
    server = subprocess.Popen(
        [sys.executable, "app.py", "--offline-demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"the app did not start:\n{log_path.read_text()}")
            time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def page(studio_url):
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
        tab = context.new_page()
        tab.goto(studio_url)
        tab.wait_for_selector("#generate")
        yield tab
        browser.close()


def test_generate_a_two_character_story_and_download_the_pdf(page, tmp_path):
    page.fill("#characters textarea", CHARACTERS)
    page.fill("#story textarea", STORY)
    page.fill("#title textarea, #title input", "Kite Day")
    page.click("#generate")
    page.wait_for_selector("#pages img", timeout=240_000)
    page.wait_for_selector("#pdf a", timeout=60_000)
    assert page.locator("#panels img").count() >= 3
    assert "Offline demo" in page.inner_text("#model-notice")
    assert re.search(r"Done: 3 of 3 panels", page.inner_text("#status"))

    with page.expect_download() as download_info:
        page.click("#pdf a")
    pdf_path = tmp_path / "comic.pdf"
    download_info.value.save_as(pdf_path)
    data = pdf_path.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 1

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "studio.png"), full_page=True)


def test_regenerate_a_selected_panel_and_retypeset_without_starting_over(page):
    page.get_by_text("Change one panel or the lettering").click()
    page.locator("#panels img").nth(1).click()
    page.wait_for_function("document.querySelector('#panel-number input').value === '2'", timeout=10_000)
    page.click("#regenerate")
    page.get_by_text("Panel 2 redrawn.").wait_for(timeout=120_000)
    page.keyboard.press("Escape")
    page.click("#retypeset")
    page.get_by_text("Pages typeset with the classic layout.").wait_for(timeout=60_000)
    assert "Traceback" not in page.inner_text("body")


def test_animate_tab_makes_a_video_between_two_panels(page):
    page.get_by_role("tab", name="Animate").click()
    page.fill("#from-panel input", "1")
    page.fill("#to-panel input", "3")
    page.click("#animate")
    page.get_by_text(re.compile(r"Panels 1 → 3: 16 frames")).wait_for(timeout=180_000)
    assert "linear interpolation" in page.inner_text("#animation-note")
    page.wait_for_selector("#video video", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "studio-animate.png"), full_page=True)
    page.get_by_role("tab", name="Story").click()


def test_an_empty_story_shows_a_readable_error(page):
    page.fill("#story textarea", "")
    page.click("#generate")
    message = page.get_by_text(re.compile("no panels"))
    message.first.wait_for(timeout=30_000)
    body = page.inner_text("body")
    assert "write one panel per line" in body
    assert "Traceback" not in body
    page.screenshot(path=str(ARTIFACTS / "studio-error.png"), full_page=True)
