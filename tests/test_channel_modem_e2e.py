"""End to end: modem frames -> TX radio -> channel simulator process -> RX radio -> modem.

The receiver searches a continuous noisy timeline for the frames; the channel's truth report gives what
it applied, so the modem's estimates are checked against the truth, not against themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

modem = pytest.importorskip("sdr_tosc.modem", reason="modem not available")
if not hasattr(modem, "Modem"):
    pytest.skip("sdr_tosc.modem.Modem not available yet", allow_module_level=True)

from sdr_tosc.channel import ChannelSimulator  # noqa: E402
from sdr_tosc.radio import open_radio  # noqa: E402

pytestmark = pytest.mark.timeout(90)
FS = 1e6


def test_frames_through_the_simulator_match_the_truth():
    m = modem.Modem(modem.ModemConfig(sample_rate_hz=FS))
    rng = np.random.default_rng(0)
    payloads = [((rng.choice([-1, 1], 200) + 1j * rng.choice([-1, 1], 200)) / np.sqrt(2)).astype(np.complex64)
                for _ in range(4)]
    with ChannelSimulator(snr_db=18, cfo_hz=3000, multipath="two_ray", delay_samples=2.5, seed=11,
                          sample_rate_hz=FS, gap_samples=2000, gap_jitter_samples=3000) as ch, \
            open_radio("zmq", tx_endpoint=ch.in_endpoint, sample_rate_hz=FS) as tx, \
            open_radio("zmq", rx_endpoint=ch.out_endpoint, sample_rate_hz=FS) as rx:
        bursts = [m.modulate(p, modem.FrameHeader(seq=i)) for i, p in enumerate(payloads)]
        for b in bursts:
            tx.tx(b)
        ch.wait_received(sum(b.size for b in bursts), timeout_s=30)
        total = sum(b.size for b in bursts) + 4 * 5000 + 2000
        iq = rx.rx(total)
        t0 = rx.rx_timestamp
        truth = ch.truth()
    frames = [f for f in m.demodulate(iq) if f.header_ok]
    assert [f.header.seq for f in frames] == [0, 1, 2, 3]
    for f, t, p in zip(frames, truth, payloads, strict=True):
        assert f.start == pytest.approx(t["arrival"] - t0, abs=3)  # found where the channel put it
        assert f.cfo_hz == pytest.approx(3000, abs=150)
        assert f.snr_db == pytest.approx(t["snr_db"], abs=2.5)  # estimate vs the channel's truth
        assert np.mean(np.sign(f.symbols.real) == np.sign(p.real)) > 0.99
