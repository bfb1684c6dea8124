"""The probe cases of issue 13 as regression tests: one bad message, flag or file never brings a process down.

Real channel process, real ZMQ sockets: each malformed message is dropped, counted, and the link still
passes a valid burst afterwards.
"""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
import zmq

from sdr_tosc.channel import ChannelSimulator
from sdr_tosc.channel.config import ChannelConfig
from sdr_tosc.cli import main
from sdr_tosc.link.feedback import FeedbackReceiver, FeedbackReport
from sdr_tosc.radio import open_radio
from sdr_tosc.radio import zmq as wire

pytestmark = pytest.mark.timeout(90)
FS = 1e6


def framed(iq, *, flags=wire.FLAG_SOB | wire.FLAG_EOB, seq=0, ts=0, fs=FS, fc=2.4e9, gain=0.0, count=None,
           magic=b"SDRQ", version=1) -> bytes:
    iq = np.asarray(iq, np.complex64)
    hdr = struct.pack("<4sHHQQddfI", magic, version, flags, seq, ts, fs, fc, gain,
                      iq.size if count is None else count)
    return hdr + iq.tobytes()


def good_burst(n=2000, seed=3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.5 * np.exp(2j * np.pi * rng.random(n))).astype(np.complex64)


#: (name, message) for the TX socket: every one must be dropped, counted, never forwarded.
BAD_TX = [
    ("tx_gain_db 3e38", framed(good_burst(100), gain=3e38)),
    ("tx_gain_db NaN", framed(good_burst(100), gain=float("nan"))),
    ("huge timestamp", framed(good_burst(100), flags=wire.FLAG_SOB | wire.FLAG_TIMED, ts=1 << 40)),
    ("ts 2**63", framed(good_burst(100), flags=wire.FLAG_SOB | wire.FLAG_TIMED, ts=1 << 63)),
    ("NaN samples", framed(np.full(2000, np.nan, np.complex64))),
    ("inf samples", framed(np.full(2000, np.inf, np.complex64))),
    ("1e30 samples", framed(np.full(2000, 1e30, np.complex64))),
    ("short", b"SDRQ\x01\x00"),
    ("bad magic", framed(good_burst(10), magic=b"XXXX")),
    ("bad version", framed(good_burst(10), version=9)),
    ("count mismatch", framed(good_burst(10), count=11)),
    ("unknown flags", framed(good_burst(10), flags=0x80)),
    ("inf sample rate", framed(good_burst(10), fs=float("inf"))),
    ("negative centre", framed(good_burst(10), fc=-1.0)),
]


@pytest.fixture(scope="module")
def sim():
    with ChannelSimulator(snr_db=20, seed=2, sample_rate_hz=FS) as ch:
        yield ch


def _control(ep: str, *frames: bytes) -> dict:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(ep)
    try:
        s.send_multipart(list(frames))
        return json.loads(s.recv())
    finally:
        s.close(0)


def _burst_arrives(sim) -> None:
    """A valid burst sent after the garbage lands on the timeline with the configured SNR."""
    with open_radio("zmq", tx_endpoint=sim.in_endpoint, rx_endpoint=sim.out_endpoint, sample_rate_hz=FS) as r:
        before = len(sim.truth(max_bursts=100_000))
        n_in = sim.stats()["samples_in"]
        r.tx(good_burst())
        sim.wait_received(n_in + 2000)
        r.rx(8000)
        recs = sim.truth(since=before)
    assert recs and recs[-1]["snr_db"] == pytest.approx(20.0, abs=1e-6) and not recs[-1]["dropped"]


def test_malformed_tx_messages_are_dropped_and_counted(sim):
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(sim.in_endpoint)
    bad0 = sim.stats().get("bad_messages", 0)
    in0 = sim.stats()["samples_in"]
    for _name, msg in BAD_TX:
        push.send(msg)
    push.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sim.stats()["bad_messages"] < bad0 + len(BAD_TX):
        time.sleep(0.05)
    st = sim.stats()
    assert st["bad_messages"] == bad0 + len(BAD_TX), st
    assert st["samples_in"] == in0  # nothing of them reached the timeline
    assert sim.running and {"bad_samples", "timestamp_too_far", "bad_header_field"} <= set(st["drops"])
    _burst_arrives(sim)


@pytest.mark.parametrize("frames,match", [
    ([b'{"cmd":"truth","since":1e999}'], "since"),
    ([b'{"cmd":"truth","max":-3}'], "max"),
    ([b'{"cmd":"ping"}', b'{"cmd":"ping"}'], "one frame"),
    ([b'{"cmd":"set","tx_gain_db":1e300}'], "tx_gain_db"),
    ([b'{"cmd":"set","gap_samples":1e15}'], "gap_samples"),
    ([b'{"cmd":"set","taps":[[1e308,1e308]]}'], "taps"),
    ([b'{"cmd":"set","snr_db":NaN}'], "snr_db"),
    ([b'{"cmd":"set","multipath":[1]}'], "multipath"),
    ([b"\xff\xfe"], "utf-8"),
    ([b"[" * 60000], "JSON|recursion|nested|Expecting"),
    ([b'{"cmd":5}'], "cmd"),
    ([b'{"cmd":"launch"}'], "unknown control command"),
])
def test_malformed_control_requests_get_an_error_reply(sim, frames, match):
    rep = _control(sim.control_endpoint, *frames)
    assert rep["ok"] is False and pytest.approx(0) == 0
    import re

    assert re.search(match, rep["error"], re.I), rep
    assert sim.running and sim.get()["tx_gain_db"] == 0.0 and sim.get()["gap_samples"] == 1000


def test_oversized_control_request_is_refused_unread(sim):
    with pytest.raises(zmq.Again):  # libzmq drops the peer: no reply, no allocation in the channel
        _control(sim.control_endpoint, b" " * (1 << 17))
    assert sim.running and sim.stats()["uptime_s"] > 0


def test_link_passes_frames_after_control_garbage(sim):
    _burst_arrives(sim)


@pytest.mark.parametrize("flags", [["--tx-gain-db", "7000"], ["--path-loss-db", "-7000"],
                                   ["--gap-samples", "100000000000"], ["--duration-s", "-1"],
                                   ["--snr-db", "nan"], ["--in", "tcp://127.0.0.1:70000"]])
def test_channel_flags_refused_before_start(flags, capsys):
    assert main(["channel", *flags]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("argv", [
    ["tx", "--repeat", "-1"], ["rx", "--timeout-s", "nan"], ["tx", "--feedback-bind", "garbage"],
    ["rx", "--feedback", "bogus"], ["tx", "--feedback-bind", "tcp://127.0.0.1:70000"],
    ["measure", "--bin-db", "0"], ["rx", "--json", "/nonexistent-dir/x.json"],
])
def test_cli_probe_cases_give_one_line_errors(argv, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sdr-tosc {argv[0]}: error:"), err


def test_huge_range_is_refused_quickly(capsys):
    t0 = time.monotonic()
    assert main(["measure", "--sweep-snr-db", "0:1e9:1"]) == 2
    assert time.monotonic() - t0 < 5 and "at most 1000" in capsys.readouterr().err


def test_failing_rx_leaves_existing_json(tmp_path):
    out = tmp_path / "rx.json"
    out.write_text('{"precious": 1}')
    # a channel that never sees a transmitter: rx times out with no frame
    with ChannelSimulator(snr_db=20, seed=1) as ch:
        rc = main(["rx", "--radio", "zmq", "--uri", ch.out_endpoint, "--images", "3", "--timeout-s", "0.5",
                   "--no-feedback", "--no-progress", "--json", str(out)])
    assert rc == 1 and json.loads(out.read_text()) == {"precious": 1}


def test_tx_with_nothing_listening_fails(capsys):
    rc = main(["tx", "--radio", "zmq", "--uri", "tcp://127.0.0.1:5599", "--images", "2",
               "--feedback-bind", "tcp://127.0.0.1:0", "--radio-opt", "timeout_s=0.5"])
    assert rc == 1 and "no peer accepted samples" in capsys.readouterr().err


@pytest.mark.parametrize("payload", [
    b'{"v":1,"seq":1e999,"snr_db":3,"t":1}', b'{"v":1,"seq":1,"snr_db":1e308,"t":1}',
    b'{"v":1,"seq":1,"snr_db":NaN,"t":1}', b'{"v":1,"seq":-1,"snr_db":3,"t":1}', b'[1,2]', b'\xff',
    b'{"v":true,"seq":1,"snr_db":3,"t":1}', b'{"v":1,"seq":1,"snr_db":"3","t":1}', b"{" * 5000,
])
def test_bad_feedback_is_dropped_and_the_smoothed_snr_unchanged(payload):
    with FeedbackReceiver("tcp://127.0.0.1:0", initial_snr_db=7.0) as fb:
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 1000)
        s.connect(fb.endpoint)
        s.send(payload)
        s.close()
        g = ctx.socket(zmq.PUSH)  # a fresh peer: libzmq disconnects one that sent an oversized message
        g.setsockopt(zmq.LINGER, 1000)
        g.connect(fb.endpoint)
        time.sleep(0.05)
        g.send(FeedbackReport(5, 12.0, 0.0, time.time()).to_bytes())
        g.close()
        deadline = time.monotonic() + 5
        while (fb.received < 1 or fb.malformed < (len(payload) <= 1024)) and time.monotonic() < deadline:
            fb.poll(100)
        assert fb.received == 1 and fb.snr_db() == pytest.approx(12.0)
        assert fb.malformed == (0 if len(payload) > 1024 else 1)  # > 1 KiB: libzmq refuses it unread


def test_channel_settings_ranges():
    for bad in (dict(tx_gain_db=7000), dict(path_loss_db=-7000), dict(gap_samples=10**11),
                dict(taps=[[1e308, 1e308]]), dict(taps=[0, 0]), dict(delay_samples=1e12)):
        with pytest.raises(ValueError):
            ChannelConfig().replace(**bad)
