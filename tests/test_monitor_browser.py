"""The monitor page in a real browser (headless Chromium via selenium) while a demo runs.

Needs Debian's ``chromium`` and ``chromium-driver`` (scripts/setup.sh installs them) and selenium; skipped
cleanly when any is missing. The screenshot is written to ``$SDR_TOSC_TEST_ARTIFACTS`` when set, else to the
test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium + chromium-driver (apt)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
              "--window-size=1500,1050"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    drv.set_script_timeout(60)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def _js(drv, expr: str):  # noqa: ANN001, ANN202
    return drv.execute_script(f"return {expr};")


def _until(cond, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def test_page_follows_a_running_demo_and_agrees_with_its_final_json(browser, tmp_path):
    from sdr_tosc.monitor import MonitorProcess

    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    out = tmp_path / "demo.json"
    artefacts = Path(os.environ.get("SDR_TOSC_TEST_ARTIFACTS", tmp_path))
    artefacts.mkdir(parents=True, exist_ok=True)
    with MonitorProcess(endpoint) as mon:
        browser.get(mon.url)
        _until(lambda: _js(browser, "window.monitorSnapshots && window.monitorSnapshots() > 0"), 20, "first snapshot")
        demo = subprocess.Popen(
            # small bursts (8 images) keep the demo running for several seconds: with the default 128-image
            # bursts 3000 images take ~2 s and the simulator could be gone before the page's control arrives
            [sys.executable, "-m", "sdr_tosc.cli", "demo", "--images", "3000", "--snr-db", "12", "--no-progress",
             "--batch-size", "8", "--images-per-burst", "8",
             "--events", endpoint, "--events-wait-s", "30", "--json", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            # the page's controls reach the channel simulator (checked in the demo's truth at the end)
            _until(lambda: _js(browser, "window.monitorLast.channel !== null"), 30, "the simulator's settings")
            answers = []
            for _ in range(3):  # a loaded machine may keep the simulator from answering in time: retry
                box = browser.find_element("id", "c_snr")
                box.clear()
                box.send_keys("6")
                browser.find_element("id", "c_apply").click()
                _until(lambda: (t := browser.find_element("id", "c_ans").text) == "applied" or t.startswith("refused"),
                       30, "the channel's answer")
                answers.append(browser.find_element("id", "c_ans").text)
                if answers[-1] == "applied":
                    break
            assert answers[-1] == "applied", (answers, demo.poll())
            _until(lambda: _js(browser, "window.monitorLast.channel.snr_db") == 6, 30,
                   f"the page's SNR applied (page said: {browser.find_element('id', 'c_ans').text})")
            _until(lambda: _js(browser, "window.monitorLast.frames") > 0, 90, "frames")
            if demo.poll() is None:
                browser.save_screenshot(str(artefacts / "monitor-during-demo.png"))
            _, err = demo.communicate(timeout=180)
            assert demo.returncode == 0, err[-2000:]
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.communicate()
        result = json.loads(out.read_text())
        summary = result.get("summary", result.get("result", {}).get("summary"))
        last = _until(lambda: _js(browser, "window.monitorLast.end !== null && window.monitorLast"), 20, "the end")
        browser.save_screenshot(str(artefacts / "monitor-after-demo.png"))
    seen = _js(browser, "window.monitorFramesSeen")
    assert len([f for f in seen if 0 < f < summary["images"]]) >= 2, seen  # it drew the run as it went
    assert _js(browser, "document.getElementById('f_acc').data[0].x.length") > 1
    # the simulator took the page's SNR: the demo's own per-frame truth shows bursts at 6 dB
    assert any(abs(f.get("snr_true_db", 99) - 6.0) < 0.5 for f in result["frames"])
    assert last["frames"] == summary["received"]
    assert last["correct"] == summary["correct"]
    assert last["sent"] == summary["images"]
    assert last["accuracy"] == pytest.approx(summary["accuracy"])
    assert last["frame_loss"] == pytest.approx(summary["frame_loss"])
    lat = result.get("latency_ms_p50") or result["result"]["latency_ms_p50"]
    assert last["latency_ms"]["p50"]["end_to_end"] == pytest.approx(lat["end_to_end"], rel=0.02)
    # what the page drew: the headline, the constellation with its transmitted reference, images, SNR truth
    assert browser.find_element("id", "acc").text == f"{100 * summary['accuracy']:.2f} %"
    assert len(_js(browser, "document.getElementById('f_const').data")) == 2
    assert _js(browser, "document.getElementById('f_snr').data[1].x.length") > 0
    assert _js(browser, "document.querySelectorAll('#images canvas').length") > 0
    assert (artefacts / "monitor-after-demo.png").stat().st_size > 10_000
