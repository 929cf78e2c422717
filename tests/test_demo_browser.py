"""The web demo in a real browser: `magicpose demo` on the tiny config, driven by Playwright in headless Chromium.

The browser is the OS's (`apt-get install chromium`; scripts/setup_browser.sh, which scripts/test.sh runs), found as
`$MAGICPOSE_CHROMIUM` or `command -v chromium`; nothing downloads a browser build. Without one the test skips, and
FAILS under CI (CI=true). `MAGICPOSE_DEMO_SCREENSHOT=PATH` also copies the screenshot of the finished page there
(how docs/images/demo.png was made).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magicpose.media import count_frames, list_images, write_video

from .conftest import REPO, TINY_CONFIG

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

REFERENCE = REPO / "example_data/image/out-of-domain/astronaut.png"
POSES = 3  # pose maps in the uploaded video = frames the demo must make
STARTUP_S = 90


def chromium() -> str:
    found = os.environ.get("MAGICPOSE_CHROMIUM") or shutil.which("chromium")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("no chromium under CI: scripts/test.sh runs scripts/setup_browser.sh")
        pytest.skip("no chromium (bash scripts/setup_browser.sh, or set MAGICPOSE_CHROMIUM)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """`magicpose demo` on the tiny config, in its own process, on a free port; its log is shown on failure."""
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    config = TINY_CONFIG.relative_to(REPO)  # as a person types it (the page shows it); the server runs in REPO
    command = [sys.executable, "-m", "magicpose", "demo", "--config", str(config), "--port", str(port),
               "--out", str(tmp_path / "out"), "--device", "cpu", "--threads", "1"]
    started = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"the demo server exited with {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.perf_counter() - started > STARTUP_S:
                pytest.fail(f"the demo server did not answer in {STARTUP_S} s:\n{log.read_text()}")
            time.sleep(0.25)
        yield url, time.perf_counter() - started, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pose_video(path: Path) -> Path:
    """The first POSES maps of the shipped pose sequence 001, at 64 px, as an mp4."""
    maps = [np.asarray(Image.open(p).convert("RGB").resize((64, 64))) for p in list_images(
        REPO / "example_data/pose_sequence/001")[:POSES]]
    write_video(path, maps, fps=8)
    return path


def upload(page, field: str, path: Path) -> None:
    """Put a file into a gr.File field, first clearing what it holds (a full gr.File shows no file input)."""
    clear = page.locator(f"#{field} button[aria-label=Clear]")
    if clear.count():
        clear.first.click()
    page.locator(f"#{field} input[type=file]").set_input_files(str(path))
    page.locator(f"#{field} td.filename", has_text=path.stem).wait_for()


def played_duration(page, selector: str) -> float:
    """The `<video>`'s duration once the browser has read its metadata (NaN if it cannot play it)."""
    return page.evaluate("""async (selector) => {
        const video = document.querySelector(selector);
        if (!(video.readyState >= 1)) {
            await new Promise(done => {
                video.addEventListener('loadedmetadata', done, {once: true});
                video.addEventListener('error', done, {once: true});
                setTimeout(done, 10000);
            });
        }
        return video.error ? -1 : video.duration;
    }""", selector)


def served_frames(page, selector: str, target: Path) -> int:
    """Frames of the mp4 the page shows, fetched from the server as the browser does."""
    source = page.locator(selector).get_attribute("src")
    response = page.request.get(source)
    assert response.ok, source
    target.write_bytes(response.body())
    return count_frames(target)


def generate(page, previous_status: str) -> tuple[float, str]:
    """Press Generate and wait for a new result in the page: (seconds from the click, its status line). The status
    names the run's folder, new for every run (the video's URL is not: Gradio names served files by content)."""
    started = time.perf_counter()
    page.click("#animate-generate")
    page.wait_for_function("""(previous) => {
        const status = document.querySelector(`#animate-status [data-testid=markdown]`);
        const video = document.querySelector('#animate-video video');
        return video && video.getAttribute('src') && status && status.innerText.trim()
            && status.innerText !== previous;
    }""", arg=previous_status, timeout=60_000)
    seconds = time.perf_counter() - started
    return seconds, page.locator("#animate-status [data-testid=markdown]").inner_text()


def test_the_demo_in_a_browser(server, tmp_path, capsys):
    url, startup, log = server
    poses = pose_video(tmp_path / "dance poses.mp4")
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not an image\n")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            upload(page, "reference-upload", REFERENCE)
            upload(page, "poses-upload", poses)
            page.locator("#reference-preview img").wait_for()  # the reference as read
            steps = page.locator("#steps input[type=number]")
            steps.fill("2")
            steps.press("Enter")
            page.get_by_text("Generate").first.wait_for()

            seconds, status = generate(page, "")
            assert f"{POSES} frames at 64 px, 2 steps" in status, status
            assert played_duration(page, "#animate-video video") > 0
            assert served_frames(page, "#animate-video video", tmp_path / "animation.mp4") == POSES
            assert played_duration(page, "#animate-grid video") > 0
            assert served_frames(page, "#animate-grid video", tmp_path / "grid.mp4") == POSES
            downloads = page.locator("#animate-downloads td.filename").all_inner_texts()
            assert [name.replace(" ", "").replace("\n", "") for name in downloads] == ["frames.zip", "run.json"]
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            if os.environ.get("MAGICPOSE_DEMO_SCREENSHOT"):
                shutil.copyfile(tmp_path / "demo.png", os.environ["MAGICPOSE_DEMO_SCREENSHOT"])

            # a text file as the reference: one line in the page, naming it; the server keeps serving
            upload(page, "reference-upload", notes)
            page.click("#animate-generate")
            message = "Reference image: notes.txt: cannot read as an image"
            page.get_by_text(message).first.wait_for(timeout=30_000)
            assert "Traceback" not in page.content()

            upload(page, "reference-upload", REFERENCE)
            again, second = generate(page, status)
            assert second != status and f"{POSES} frames at 64 px, 2 steps" in second
            assert played_duration(page, "#animate-video video") > 0
            assert served_frames(page, "#animate-video video", tmp_path / "again.mp4") == POSES
            page.screenshot(path=str(tmp_path / "demo-again.png"), full_page=True)
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
    with capsys.disabled():
        print(f"\n[demo browser test] server start {startup:.1f} s; one tiny-config generation through the page "
              f"({POSES} frames, 64 px, 2 steps), click to video: {seconds:.1f} s (again: {again:.1f} s); "
              f"server: {status}")
