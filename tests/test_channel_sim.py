"""The channel simulator as a real separate process over real ZMQ sockets on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sdr_tosc.channel import ChannelSimulator
from sdr_tosc.cli import main
from sdr_tosc.radio import open_radio

FS = 1e6
pytestmark = pytest.mark.timeout(60)


def preamble(n: int = 2048, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.5 * np.exp(2j * np.pi * rng.random(n))).astype(np.complex64)


def find(y: np.ndarray, ref: np.ndarray, cfo_hz: float = 0.0) -> int:
    """Start index of ``ref`` in ``y`` (CFO-compensated cross-correlation via FFT)."""
    k = np.arange(y.size)
    yc = y * np.exp(-2j * np.pi * cfo_hz / FS * k)
    n = 1 << int(np.ceil(np.log2(y.size + ref.size)))
    c = np.fft.ifft(np.fft.fft(yc, n) * np.conj(np.fft.fft(ref, n)))[: y.size]
    return int(np.argmax(np.abs(c)))


@pytest.fixture(scope="module")
def sim():
    with ChannelSimulator(snr_db=10, cfo_hz=2000, seed=1, sample_rate_hz=FS, multipath="two_ray") as ch:
        yield ch


def test_burst_lands_where_the_truth_says_with_the_true_snr(sim):
    ref = preamble()
    with open_radio("zmq", tx_endpoint=sim.in_endpoint, rx_endpoint=sim.out_endpoint, sample_rate_hz=FS) as r:
        before = len(sim.truth())
        n_in = sim.stats()["samples_in"]
        r.tx(ref)
        sim.wait_received(n_in + ref.size)  # handshake: TX and RX are separate sockets
        y = r.rx(20_000)
        t0 = r.rx_timestamp
        rec = sim.truth(since=before)[0]
    assert rec["snr_db"] == pytest.approx(10.0, abs=1e-6) and rec["cfo_hz"] == 2000
    start = rec["start"] - t0
    assert 0 < start < y.size - ref.size
    assert find(y, ref, 2000.0) == start  # the receiver really has to search: noise before and after
    noise = np.concatenate([y[: start - 10], y[start + ref.size + 10 :]])
    sig = y[start + 5 : start + ref.size - 5]
    snr_est = 10 * np.log10((np.mean(np.abs(sig) ** 2) - np.mean(np.abs(noise) ** 2)) / np.mean(np.abs(noise) ** 2))
    assert snr_est == pytest.approx(10.0, abs=0.7)


def test_timeline_is_continuous_across_reads(sim):
    with open_radio("zmq", rx_endpoint=sim.out_endpoint, sample_rate_hz=FS, chunk_samples=700) as r:
        r.rx(1000)
        t1 = r.rx_timestamp
        r.rx(2500)
        assert r.rx_timestamp == t1 + 1000
        assert r.counters.dropped_samples == 0 and r.counters.overflows == 0 and r.counters.rx_samples == 3500


def test_control_socket_changes_snr_and_rejects_bad_settings(sim):
    with open_radio("zmq", tx_endpoint=sim.in_endpoint, rx_endpoint=sim.out_endpoint, sample_rate_hz=FS) as r:
        cfg = sim.set(snr_db=3.0, tx_gain_db=-2.0)
        assert cfg["snr_db"] == 3.0
        n0 = len(sim.truth())
        n_in = sim.stats()["samples_in"]
        r.tx(preamble())
        sim.wait_received(n_in + 2048)
        r.rx(10_000)
        assert sim.truth(since=n0)[0]["snr_db"] == pytest.approx(1.0, abs=1e-6)
        sim.set(snr_db=10.0, tx_gain_db=0.0)
    with pytest.raises(ValueError, match="cfo_hz"):
        sim.set(cfo_hz=1e9)
    with pytest.raises(ValueError, match="cannot change seed"):
        sim.set(seed=3)
    assert sim.stats()["bursts"] >= 2


def test_sigterm_and_ctrl_c_exit_cleanly():
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, "-m", "sdr_tosc.channel", "--in", "tcp://127.0.0.1:0",
                                 "--out", "tcp://127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            ready = json.loads(proc.stdout.readline())  # handshake: the first line lists bound endpoints
            assert ready["ready"] and ready["in"].startswith("tcp://127.0.0.1:") and not ready["in"].endswith(":0")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert "stopped after" in err


def test_peer_that_disappears_gives_a_clear_timeout():
    ch = ChannelSimulator(snr_db=20).start()
    r = open_radio("zmq", tx_endpoint=ch.in_endpoint, rx_endpoint=ch.out_endpoint, sample_rate_hz=FS,
                   timeout_s=0.5)
    try:
        r.rx(100)
        assert ch.stop() == 0
        t = time.monotonic()
        with pytest.raises(TimeoutError, match="no samples from tcp://127.0.0.1"):
            r.rx(100)
        with pytest.raises(TimeoutError, match="is the channel simulator running"):
            for _ in range(200):  # fills the socket buffers, then blocks -> timeout
                r.tx(np.zeros(1 << 16, np.complex64))
        assert time.monotonic() - t < 10
        with pytest.raises(RuntimeError, match="not running"):
            ch.stats()
    finally:
        r.close()
        ch.stop()


def test_raw_mode_round_trip_through_the_simulator():
    with ChannelSimulator(raw=True, snr_db=60, gap_samples=0, gap_jitter_samples=0) as ch, \
            open_radio("zmq", tx_endpoint=ch.in_endpoint, rx_endpoint=ch.out_endpoint, mode="raw",
                       sample_rate_hz=FS) as r:
        x = preamble(3000)
        r.tx(x)
        ch.wait_received(3000)
        y = r.rx(3000)
        assert r.rx_timestamp is None
        np.testing.assert_allclose(y, x, atol=5e-3)


def test_cli_verb_in_process_and_bad_endpoint(capsys):
    rc = main(["channel", "--in", "tcp://127.0.0.1:0", "--out", "tcp://127.0.0.1:0", "--snr-db", "10",
               "--cfo-hz", "2000", "--seed", "1", "--duration-s", "0.2"])
    assert rc == 0
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[0])["ready"] is True
    assert main(["channel", "--in", "udp://nowhere", "--duration-s", "0.1"]) == 1
    assert "tcp://HOST:PORT" in capsys.readouterr().err
    assert main(["channel", "--multipath", "moon", "--duration-s", "0.1"]) == 1
    assert "multipath" in capsys.readouterr().err


def test_push_out_pattern_streams_to_a_pull_radio():
    """--out-pattern push: the channel streams what arrives (for gr-zeromq pull_source); no idle noise."""
    with ChannelSimulator(out_pattern="push", snr_db=80, gap_samples=0, gap_jitter_samples=0) as ch, \
            open_radio("zmq", tx_endpoint=ch.in_endpoint, rx_endpoint=ch.out_endpoint, rx_pattern="pull",
                       sample_rate_hz=FS) as r:
        x = preamble(5000)
        r.tx(x[:2000])
        r.tx(x[2000:], start_of_burst=False)  # continues the burst without a gap
        y = r.rx(5000)
        assert r.rx_timestamp == 0
    np.testing.assert_allclose(y, x, atol=1e-3)
