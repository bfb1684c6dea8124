"""The shipped flowgraphs (flowgraphs/*.grc): every one compiles with grcc, the headless ones run as their own
processes: semantic_loopback against `sdr-tosc demo`, and `sdr-tosc tx --gnuradio` -> channel_model.grc ->
`sdr-tosc rx --gnuradio`."""

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

pytest.importorskip("gnuradio.gr", reason="GNU Radio not installed (Debian: apt install gnuradio)")

from sdr_tosc.gnuradio import GRC_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOWGRAPHS = sorted((ROOT / "flowgraphs").glob("*.grc"))
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sdr_tosc(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdr_tosc.cli", *args]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """All flowgraphs compiled by grcc, run with this Python (it imports sdr_tosc for the import blocks)."""
    grcc = shutil.which("grcc")
    if grcc is None:
        pytest.skip("grcc not found (Debian: apt install gnuradio)")
    out = tmp_path_factory.mktemp("grc")
    env = {**os.environ, "GRC_BLOCKS_PATH": str(GRC_DIR)}
    res = subprocess.run([sys.executable, grcc, "-o", str(out), *map(str, FLOWGRAPHS)], capture_output=True,
                         text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def test_every_flowgraph_compiles(compiled):
    names = {p.stem for p in FLOWGRAPHS}
    assert {"semantic_loopback", "channel_model", "pluto_tx", "pluto_rx", "usrp_tx", "usrp_rx", "zmq_pluto_bridge",
            "zmq_usrp_bridge", "semantic_monitor"} <= names
    for name in names:
        assert (compiled / f"{name}.py").exists(), name
    # the settings a user changes are command-line flags of the generated scripts
    helps = {}
    for n in ("semantic_loopback", "pluto_rx", "usrp_tx"):
        res = subprocess.run([sys.executable, str(compiled / f"{n}.py"), "--help"], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr[-2000:]
        helps[n] = res.stdout
    for flag in ("--snr-db", "--cfo-hz", "--taps", "--images", "--samp-rate"):
        assert flag in helps["semantic_loopback"]
    for flag in ("--uri", "--freq", "--gain", "--feedback"):
        assert flag in helps["pluto_rx"]
    for flag in ("--args", "--freq", "--gain", "--feedback-bind"):
        assert flag in helps["usrp_tx"]


def test_flowgraphs_set_only_parameters_their_blocks_have():
    """grcc ignores a parameter a block does not define (a typo would silently keep the default)."""
    import yaml
    from gnuradio import gr

    system = Path(gr.prefix()) / "share" / "gnuradio" / "grc" / "blocks"
    if not system.is_dir():
        pytest.skip(f"GNU Radio's block files are not at {system}")
    dirs = [system, GRC_DIR]
    defined = {}
    for d in dirs:
        for f in d.glob("*.block.yml"):
            doc = yaml.safe_load(f.read_text())
            defined[doc["id"]] = {p["id"] for p in doc.get("parameters", [])}
    common = {"alias", "comment", "affinity", "maxoutbuf", "minoutbuf"}
    for grc in FLOWGRAPHS:
        for block in yaml.safe_load(grc.read_text())["blocks"]:
            if block["id"] in ("parameter", "variable", "import"):
                continue
            assert block["id"] in defined, (grc.name, block["id"])
            unknown = set(block["parameters"]) - defined[block["id"]] - common
            assert not unknown, (grc.name, block["name"], sorted(unknown))


def last_json_line(text: str) -> dict:
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert lines, text[-2000:]
    return json.loads(lines[-1])


def test_semantic_loopback_matches_the_demo_at_10_db_and_2_khz(compiled, tmp_path):
    """200 images through TX block -> channel_model -> RX block, against `sdr-tosc demo` on the same images."""
    res = subprocess.run([sys.executable, str(compiled / "semantic_loopback.py"), "--snr-db", "10", "--cfo-hz", "2000",
                          "--images", "200", "--seed", "3"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    gr_run = last_json_line(res.stdout)
    demo = subprocess.run(sdr_tosc("demo", "--images", "200", "--snr-db", "10", "--cfo-hz", "2000", "--seed", "3",
                                   "--no-progress", "--json", str(tmp_path / "demo.json")),
                          capture_output=True, text=True, timeout=180)
    assert demo.returncode == 0, demo.stderr[-3000:]
    ref = json.loads((tmp_path / "demo.json").read_text())["summary"]
    assert gr_run["images"] == 200
    assert gr_run["received"] >= 198, (gr_run, ref)  # >= 99 %
    assert abs(gr_run["accuracy"] - ref["accuracy"]) <= 0.02, (gr_run, ref)
    assert gr_run["snr_set_db"] == 10.0 and gr_run["noise_voltage"] == pytest.approx(0.1)
    assert abs(gr_run["snr_db_mean"] - 10.0) <= 1.0
    assert abs(gr_run["cfo_hz_mean"] - 2000.0) <= 50.0


def qt_offscreen() -> bool:
    try:
        import PyQt5  # noqa: F401
        from gnuradio import qtgui  # noqa: F401
    except ImportError:
        return False
    return True


def test_tx_through_channel_model_grc_to_rx(compiled, tmp_path):
    """`sdr-tosc tx --gnuradio` -> channel_model.grc (noise 12 dB, 3 kHz) -> `sdr-tosc rx --gnuradio`.

    The transmitter starts first and ends before the receiver connects: what it queued still arrives. The Qt
    monitor (offscreen) decodes the same stream from the channel's PUB tap."""
    p_in, p_out, p_tap, p_fb = free_port(), free_port(), free_port(), free_port()
    tx_ep, rx_ep = f"tcp://127.0.0.1:{p_in}", f"tcp://127.0.0.1:{p_out}"
    mon = None
    if qt_offscreen():
        mon = subprocess.Popen([sys.executable, str(compiled / "semantic_monitor.py"), "--tap-address",
                                f"tcp://127.0.0.1:{p_tap}", "--images", "64"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
        time.sleep(6)  # subscribed before the receiver lets samples flow
    tx = subprocess.Popen(sdr_tosc("tx", "--radio", "zmq", "--gnuradio", "--uri", tx_ep, "--images", "64",
                                   "--feedback-bind", f"tcp://127.0.0.1:{p_fb}"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ch = subprocess.Popen([sys.executable, str(compiled / "channel_model.py"), "--in-address", tx_ep,
                           "--out-address", rx_ep, "--tap-address", f"tcp://127.0.0.1:{p_tap}", "--snr-db", "12",
                           "--cfo-hz", "3000", "--seed", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    try:
        tx_out, tx_err = tx.communicate(timeout=90)
        assert tx.returncode == 0, tx_err[-3000:]
        assert "sent 64 images" in tx_out
        rx = subprocess.run(sdr_tosc("rx", "--radio", "zmq", "--gnuradio", "--uri", rx_ep, "--images", "64",
                                     "--timeout-s", "5", "--no-progress", "--feedback", f"tcp://127.0.0.1:{p_fb}",
                                     "--json", str(tmp_path / "rx.json")),
                            capture_output=True, text=True, timeout=120)
        assert rx.returncode == 0, rx.stderr[-3000:]
    finally:
        mon_out = ""
        if mon is not None:
            mon.terminate()  # the monitor prints its summary when closed
            mon_out = mon.communicate(timeout=30)[0]
        ch.terminate()
        ch.wait(20)
        if tx.poll() is None:
            tx.kill()
            tx.wait(10)
    s = json.loads((tmp_path / "rx.json").read_text())["summary"]
    assert s["received"] >= 64 * 0.99
    assert abs(s["snr_db_mean"] - 12.0) <= 1.0
    assert abs(s["cfo_hz_mean"] - 3000.0) <= 50.0
    assert s["accuracy"] >= 0.85
    if mon is not None:
        m = last_json_line(mon_out)
        assert m["received"] >= 64 * 0.99 and abs(m["snr_db_mean"] - s["snr_db_mean"]) < 0.01


def test_gnuradio_flag_needs_the_zmq_radio():
    res = subprocess.run(sdr_tosc("tx", "--radio", "pluto", "--gnuradio", "--images", "1"), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    assert "--gnuradio needs --radio zmq" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_flowgraph_settings_end_with_one_line(compiled):
    for args, words in ((["--taps", "1,abc"], "taps '1,abc'"), (["--snr-db", "500"], "snr_db"),
                        (["--images", "100000"], "test set has 10000 images")):
        res = subprocess.run([sys.executable, str(compiled / "semantic_loopback.py"), *args], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode != 0
        assert "semantic_loopback: error:" in res.stderr and words in res.stderr, res.stderr[-2000:]
        assert "Traceback" not in res.stderr
