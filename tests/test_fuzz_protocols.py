"""Fuzz the wire, control and feedback protocols (hypothesis; bounded and seeded, a few seconds).

Every input must either be accepted within the documented limits or refused with a ValueError / an error
reply; nothing else may escape, and the channel keeps working afterwards. The long run over real sockets
(>= 10 000 messages per socket) is ``benchmarks/bench_fuzz.py``.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdr_tosc.channel.config import RUNTIME_FIELDS, ChannelConfig
from sdr_tosc.channel.server import ChannelServer
from sdr_tosc.link.feedback import SNR_DB_RANGE, FeedbackReport
from sdr_tosc.radio import zmq as wire

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

floats_any = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                       st.sampled_from([0.0, 1e6, 1e10, 1e12, 3e38, -3e38, 1e300, -1e300, 2.0 ** 63]))
u64 = st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from([0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]))


@st.composite
def framed_messages(draw):
    """A framed TX message with every header field drawn from its whole range, often malformed."""
    n = draw(st.integers(0, 64))
    kind = draw(st.sampled_from(["normal", "special", "mixed"]))
    if kind == "normal":
        vals = draw(st.lists(st.floats(-2, 2, width=32), min_size=2 * n, max_size=2 * n))
    elif kind == "special":
        vals = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e6, 0.0]),
                             min_size=2 * n, max_size=2 * n))
    else:
        vals = draw(st.lists(st.floats(width=32), min_size=2 * n, max_size=2 * n))
    payload = np.asarray(vals, np.float32).tobytes()
    hdr = struct.pack(
        "<4sHHQQddfI",
        draw(st.sampled_from([b"SDRQ", b"SDRQ", b"SDRQ", b"XXXX"])),
        draw(st.sampled_from([1, 1, 1, 0, 2, 65535])),
        draw(st.integers(0, 65535)),
        draw(u64), draw(u64),
        draw(floats_any), draw(floats_any),
        draw(st.one_of(st.floats(width=32, allow_nan=True), st.sampled_from([0.0, 3e38, -3e38, 100.0, -200.0]))),
        draw(st.one_of(st.just(n), st.integers(0, (1 << 32) - 1))),
    )
    cut = draw(st.one_of(st.none(), st.integers(0, 48 + len(payload))))
    msg = hdr + payload
    return msg if cut is None else msg[:cut]


@pytest.fixture(scope="module")
def server():
    s = ChannelServer(ChannelConfig(snr_db=20.0, seed=3), "tcp://127.0.0.1:0", "tcp://127.0.0.1:0",
                      "tcp://127.0.0.1:0")
    yield s
    s.close()


@FUZZ
@given(msg=st.one_of(framed_messages(), st.binary(max_size=200)))
def test_decode_message_accepts_only_what_the_limits_allow(msg):
    try:
        hdr, iq = wire.decode_message(msg)
    except ValueError:
        return
    assert hdr.count == iq.size <= wire.MAX_MESSAGE_SAMPLES
    assert hdr.flags & ~wire.FLAGS_KNOWN == 0 and hdr.seq < 1 << 63 and hdr.timestamp < 1 << 63
    lo, hi = wire.TX_GAIN_DB_RANGE
    assert math.isfinite(hdr.sample_rate_hz) and math.isfinite(hdr.center_freq_hz) and lo <= hdr.tx_gain_db <= hi


@FUZZ
@given(msgs=st.lists(st.one_of(framed_messages(), st.binary(max_size=120)), min_size=1, max_size=8))
def test_channel_survives_any_tx_message(server, msgs):
    core = server.core
    for m in msgs:
        placed = server.accept_tx(m)
        if placed:
            _hdr, iq = wire.decode_message(m)
            assert np.all(np.isfinite(iq.view(np.float32)))
    y, _ts = core.read(4096)  # the receiver's view stays finite and the timeline bounded
    assert np.all(np.isfinite(y.view(np.float32)))
    assert core.timeline.sig.size <= 1 << 25
    good = wire.encode_message(np.full(256, 0.5, np.complex64), wire.Header(wire.FLAG_SOB, 1, 0, 1e6, 2.4e9, 0.0, 256))
    assert server.accept_tx(good.tobytes())


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), floats_any, st.text(max_size=20)),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=12)


@st.composite
def control_requests(draw):
    cmd = draw(st.one_of(st.sampled_from(["ping", "get", "set", "stats", "truth", "set", "truth"]), json_values))
    fields = draw(st.dictionaries(st.one_of(st.sampled_from(list(RUNTIME_FIELDS) + ["since", "max", "seed"]),
                                            st.text(max_size=8)), json_values, max_size=4))
    req = {"cmd": cmd, **fields} if draw(st.booleans()) else draw(json_values)
    frames = [json.dumps(req).encode()]
    if draw(st.integers(0, 9)) == 0:
        frames.append(b"{}")
    if draw(st.integers(0, 9)) == 0:
        frames = [draw(st.binary(max_size=64))]
    return frames


@FUZZ
@given(frames=control_requests())
def test_control_always_replies_and_keeps_a_valid_config(server, frames):
    reply = json.loads(server.control_reply(frames))
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        assert isinstance(reply["error"], str) and reply["error"]
    server.core.config.validate()  # whatever was accepted is within every range
    server._running = True  # a fuzzed "shutdown" only flips the flag of this in-process server
    y, _ = server.core.read(2048)
    assert np.all(np.isfinite(y.view(np.float32)))


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda d: json.dumps(d).encode(), json_values),
    st.builds(lambda v, s, snr, c, t: json.dumps({"v": v, "seq": s, "snr_db": snr, "cfo_hz": c, "t": t}).encode(),
              json_values, json_values, st.one_of(floats_any, json_values), floats_any, floats_any)))
def test_feedback_reports_are_in_range_or_refused(data):
    try:
        rep = FeedbackReport.from_bytes(data)
    except ValueError:
        return
    lo, hi = SNR_DB_RANGE
    assert isinstance(rep.seq, int) and 0 <= rep.seq < 1 << 63 and lo <= rep.snr_db <= hi
    assert math.isfinite(rep.cfo_hz) and math.isfinite(rep.time_s) and rep.time_s >= 0


@FUZZ
@given(body=st.binary(min_size=0, max_size=16))
def test_sample_requests(body):
    try:
        n = wire.decode_request(body)
    except ValueError:
        assert len(body) not in (4, 8)
        return
    assert 0 <= n < 1 << 64
