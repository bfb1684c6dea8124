"""Raw ZMQ mode against real GNU Radio flowgraphs (gr-zeromq), and the shipped .grc compiles with grcc."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gnuradio.gr", reason="GNU Radio not installed (Debian: apt install gnuradio)")
from gnuradio import blocks, zeromq  # noqa: E402

from sdr_tosc.channel import ChannelSimulator  # noqa: E402
from sdr_tosc.radio import open_radio  # noqa: E402

pytestmark = pytest.mark.timeout(90)
GRC = Path(__file__).resolve().parents[1] / "flowgraphs" / "zmq_raw_loopback.grc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tone(n: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.exp(2j * np.pi * 0.0123 * np.arange(n))).astype(np.complex64)


def test_gnuradio_push_sink_to_channel_to_gnuradio_req_source():
    """GNU Radio -> our channel (raw, --in-connect) -> GNU Radio req_source (REQ -> our ROUTER)."""
    x = tone(20_000)
    port = free_port()
    tx = gr.top_block()
    push = zeromq.push_sink(gr.sizeof_gr_complex, 1, f"tcp://127.0.0.1:{port}", 100, False, -1)
    tx.connect(blocks.vector_source_c(x.tolist(), False), push)
    tx.start()
    try:
        with ChannelSimulator(raw=True, in_endpoint=f"tcp://127.0.0.1:{port}", in_connect=True, snr_db=40,
                              gap_samples=0, gap_jitter_samples=0, seed=3) as ch:
            ch.wait_received(x.size, timeout_s=20)  # handshake before the receiver starts pulling
            rx = gr.top_block()
            req = zeromq.req_source(gr.sizeof_gr_complex, 1, ch.out_endpoint, 100, False, -1)
            sink = blocks.vector_sink_c()
            rx.connect(req, blocks.head(gr.sizeof_gr_complex, 30_000), sink)
            rx.run()  # head stops it after 30000 samples
            y = np.array(sink.data(), dtype=np.complex64)
            assert y.size == 30_000
            assert ch.stats()["samples_out"] >= 30_000
    finally:
        tx.stop()
        tx.wait()
    err = y[: x.size] - x
    snr = 10 * np.log10(np.mean(np.abs(x) ** 2) / np.mean(np.abs(err) ** 2))
    assert snr == pytest.approx(40.0, abs=1.0)  # the burst, intact, at the simulated SNR
    assert np.mean(np.abs(y[x.size + 100 :]) ** 2) < 1e-3  # then only the noise floor


def test_our_raw_radio_through_a_gnuradio_relay_built_in_python():
    out_port = free_port()
    with open_radio("zmq", tx_endpoint="tcp://127.0.0.1:0", bind=True, mode="raw", sample_rate_hz=1e6) as txr:
        tb = gr.top_block()
        src = zeromq.pull_source(gr.sizeof_gr_complex, 1, txr.tx_endpoint, 100, False, -1)
        snk = zeromq.push_sink(gr.sizeof_gr_complex, 1, f"tcp://127.0.0.1:{out_port}", 100, False, -1)
        tb.connect(src, blocks.multiply_const_cc(0.5), snk)
        tb.start()
        try:
            with open_radio("zmq", rx_endpoint=f"tcp://127.0.0.1:{out_port}", mode="raw", rx_pattern="pull",
                            sample_rate_hz=1e6, timeout_s=10) as rxr:
                x = tone(10_000, 0.9)
                txr.tx(x)
                y = rxr.rx(10_000)
        finally:
            tb.stop()
            tb.wait()
    np.testing.assert_array_equal(y, x * np.float32(0.5))  # bit-exact: raw complex64 both ways


def test_grcc_compiles_the_shipped_flowgraph_and_it_relays_our_samples(tmp_path):
    if shutil.which("grcc") is None:
        pytest.skip("grcc not found (Debian: apt install gnuradio); cannot compile flowgraphs/*.grc")
    res = subprocess.run(["grcc", "-o", str(tmp_path), str(GRC)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    script = tmp_path / "zmq_raw_loopback.py"
    assert script.exists()
    out_port = free_port()
    with open_radio("zmq", tx_endpoint="tcp://127.0.0.1:0", bind=True, mode="raw", sample_rate_hz=1e6) as txr:
        env = dict(os.environ)
        proc = subprocess.Popen([sys.executable, str(script), "-i", txr.tx_endpoint,
                                 "-o", f"tcp://127.0.0.1:{out_port}", "-g", "0.25"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            with open_radio("zmq", rx_endpoint=f"tcp://127.0.0.1:{out_port}", mode="raw", rx_pattern="pull",
                            sample_rate_hz=1e6, timeout_s=30) as rxr:
                x = tone(4096, 0.8)
                txr.tx(x)
                y = rxr.rx(4096)
            np.testing.assert_allclose(y, x * 0.25, atol=1e-7)
        finally:
            proc.terminate()
            t = time.monotonic()
            proc.wait(20)
        assert proc.returncode in (0, -15), proc.stderr.read()
        assert time.monotonic() - t < 20
