"""The Pluto flowgraphs (real gr-iio and libiio) against ``sdr-tosc emulate pluto --count 2`` in its own process:
pluto_tx.grc -> emulated air -> pluto_rx.grc with SNR feedback between them, and zmq_pluto_bridge.grc under
``sdr-tosc tx/rx --gnuradio``. The emulated Plutos run in real time, so each test takes some seconds."""

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

pytest.importorskip("gnuradio.iio", reason="gr-iio not installed (Debian: apt install gnuradio)")

from _radio_fixtures import emulated_plutos  # noqa: E402

from sdr_tosc.gnuradio import GRC_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PPM = (-4.0, 6.0)  # 10 ppm apart: 24.4 kHz at 2.44 GHz
FC = 2.44e9
pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdr_tosc(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdr_tosc.cli", *args]


def last_json_line(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert lines, text[-2000:]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> Path:
    grcc = shutil.which("grcc")
    if grcc is None:
        pytest.skip("grcc not found (Debian: apt install gnuradio)")
    out = tmp_path_factory.mktemp("grc")
    res = subprocess.run([sys.executable, grcc, "-o", str(out)]
                         + [str(ROOT / "flowgraphs" / f"{n}.grc") for n in ("pluto_tx", "pluto_rx", "zmq_pluto_bridge")],
                         capture_output=True, text=True, timeout=180, env={**os.environ, "GRC_BLOCKS_PATH": str(GRC_DIR)})
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def plutos(tmp_path_factory):
    info = tmp_path_factory.mktemp("emu") / "plutos.json"
    with emulated_plutos(info, "--count", "2", "--ppm", ",".join(f"{p:g}" for p in PPM), "--snr-db", "30",
                         "--seed", "3", stdout=subprocess.DEVNULL) as (doc, _):
        yield doc["uris"]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_pluto_tx_and_rx_flowgraphs_on_emulated_plutos(scripts, plutos):
    """Two flowgraphs, two emulated Plutos 10 ppm apart; the RX flowgraph's SNR reports reach the TX one."""
    fb = f"tcp://127.0.0.1:{free_port()}"
    rx = subprocess.Popen([sys.executable, str(scripts / "pluto_rx.py"), "--uri", plutos[1], "--freq", str(FC),
                           "--gain", "30", "--images", "48", "--timeout-s", "20", "--feedback", fb,
                           "--tap-address", f"tcp://127.0.0.1:{free_port()}"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tx = None
    try:
        time.sleep(3)  # the receiver streams before the first burst
        # three rounds: a burst lost to an overflow of the receiving flowgraph (a busy host) comes again
        tx = subprocess.Popen([sys.executable, str(scripts / "pluto_tx.py"), "--uri", plutos[0], "--freq", str(FC),
                               "--attenuation", "0", "--images", "48", "--repeat", "3", "--feedback-bind", fb],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = rx.communicate(timeout=120)
        assert rx.returncode == 0, err[-3000:]
        tx.communicate(timeout=60)
        assert tx.returncode == 0
    finally:
        stop(rx)
        if tx is not None:
            stop(tx)
    s = last_json_line(out)
    assert s["images"] == 48 and s["received"] >= 48 * 0.99
    assert s["accuracy"] >= 0.85
    cfo = (PPM[0] - PPM[1]) * 1e-6 * FC  # the receiver's crystal is fast: the signal lands below its LO
    assert abs(abs(s["cfo_hz_mean"]) - abs(cfo)) <= 2000.0, s["cfo_hz_mean"]
    assert s["snr_db_mean"] > 5.0  # 30 dB for full scale at 0 dB attenuation, less the burst back-off and ADC noise


def test_zmq_pluto_bridge_under_tx_and_rx_gnuradio(scripts, plutos, tmp_path):
    """sdr-tosc tx --gnuradio -> bridge -> Pluto TX -> (TX-to-RX isolation) -> Pluto RX -> bridge -> rx --gnuradio."""
    p_in, p_out, p_fb = free_port(), free_port(), free_port()
    br = subprocess.Popen([sys.executable, str(scripts / "zmq_pluto_bridge.py"), "--uri", plutos[0], "--freq", str(FC),
                           "--in-address", f"tcp://127.0.0.1:{p_in}", "--out-address", f"tcp://127.0.0.1:{p_out}",
                           "--attenuation", "10", "--gain", "20"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rx = tx = None
    try:
        rx = subprocess.Popen(sdr_tosc("rx", "--radio", "zmq", "--gnuradio", "--uri", f"tcp://127.0.0.1:{p_out}",
                                       "--images", "32", "--timeout-s", "20", "--no-progress", "--json", str(tmp_path / "rx.json"),
                                       "--feedback", f"tcp://127.0.0.1:{p_fb}"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)
        tx = subprocess.run(sdr_tosc("tx", "--radio", "zmq", "--gnuradio", "--uri", f"tcp://127.0.0.1:{p_in}",
                                     "--images", "32", "--repeat", "3", "--feedback-bind", f"tcp://127.0.0.1:{p_fb}"),
                            capture_output=True, text=True, timeout=120)
        assert tx.returncode == 0, tx.stderr[-3000:]
        out, err = rx.communicate(timeout=120)
        assert rx.returncode == 0, err[-3000:]
    finally:
        for p in (rx, br):
            if p is not None:
                stop(p)
    s = json.loads((tmp_path / "rx.json").read_text())["summary"]
    assert s["received"] >= 32 * 0.99
    assert s["accuracy"] >= 0.85
