"""StreamReceiver: frames cut by buffer boundaries are found once, with absolute positions."""

from __future__ import annotations

import numpy as np
import pytest

from sdr_tosc.channel.impairments import awgn, place_bursts
from sdr_tosc.modem import FrameHeader, Modem, ModemConfig, StreamReceiver


@pytest.mark.parametrize("block", [1000, 3333, 50_000])
def test_stream_receiver_reports_each_frame_once(block):
    modem = Modem(ModemConfig(max_payload_symbols=2048))
    rng = np.random.default_rng(block)
    bursts, offsets, pos = [], [], 500
    for i in range(12):
        n = int(rng.integers(1, 2048))
        bursts.append(modem.modulate(np.ones(n, np.complex64) * np.exp(1j * i), FrameHeader(seq=i)))
        offsets.append(pos)
        pos += bursts[-1].size + int(rng.integers(0, 3000))
    stream = awgn(place_bursts(bursts, pos + 700, offsets), 15.0, rng)
    rx = StreamReceiver(modem)
    frames = []
    for a in range(0, stream.size, block):
        frames += rx.push(stream[a : a + block])
    ok = [f for f in frames if f.header_ok]
    assert [f.header.seq for f in ok] == list(range(12))
    assert all(abs(f.start - o) <= 1 for f, o in zip(ok, offsets, strict=True))
    assert all(f.end - f.start == b.size for f, b in zip(ok, bursts, strict=True))
    assert rx.samples_seen == stream.size


def test_stream_receiver_rejects_bad_input():
    rx = StreamReceiver(Modem())
    with pytest.raises(TypeError):
        rx.push(np.zeros(10, np.int16))
    with pytest.raises(TypeError):
        StreamReceiver("modem")  # type: ignore[arg-type]
    assert rx.push(np.zeros(0, np.complex64)) == []
