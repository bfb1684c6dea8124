"""File radio: a SigMF recording replayed through the Radio interface (what `--radio file --uri X` opens)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sdr_tosc.radio import open_radio
from sdr_tosc.radio.recording import save_recording
from sdr_tosc.radio.registry import backend_kinds, open_from_uri


@pytest.fixture()
def rec(tmp_path):
    x = (np.arange(10_000) * 1e-5 + 1j * np.arange(10_000) * -1e-5).astype(np.complex64)
    meta = save_recording(tmp_path / "cap", x, sample_rate_hz=1e6, center_freq_hz=2.44e9, hw="test")
    return meta, x


def test_replays_in_order_then_pads_and_ends(rec):
    meta, x = rec
    with open_from_uri("file", str(meta), "rx") as r:
        assert (r.sample_rate_hz, r.center_freq_hz) == (1e6, 2.44e9)
        got = np.concatenate([r.rx(3000) for _ in range(3)])
        np.testing.assert_array_equal(got, x[:9000])
        last = r.rx(3000)  # 1000 left: padded with zeros
        np.testing.assert_array_equal(last[:1000], x[9000:])
        assert not last[1000:].any()
        with pytest.raises(EOFError, match="end of the recording"):
            r.rx(10)
        assert r.counters.rx_samples == 12_000


def test_loop_and_realtime(rec):
    meta, x = rec
    with open_radio("file", path=meta, loop=True, realtime=True) as r:
        t0 = time.monotonic()
        y = r.rx(25_000)
        assert time.monotonic() - t0 >= 0.02  # paced to 1 Msps
        np.testing.assert_array_equal(y[10_000:20_000], x)


def test_rules_of_a_recording(rec, tmp_path):
    meta, _ = rec
    with pytest.raises(ValueError, match="recorded at 1e\\+06 Hz, not 2e\\+06 Hz"):
        open_radio("file", path=meta, sample_rate_hz=2e6)
    with pytest.raises(ValueError, match="recorded at 2.44e\\+09 Hz"):
        open_radio("file", path=meta, center_freq_hz=915e6)
    with open_radio("file", path=meta, sample_rate_hz=1e6) as r:
        with pytest.raises(RuntimeError, match="cannot transmit"):
            r.tx(np.zeros(10, np.complex64))
        with pytest.raises(ValueError, match="cannot be retuned"):
            r.center_freq_hz = 915e6
    with pytest.raises(ValueError, match="cannot transmit"):
        open_from_uri("file", str(meta), "tx")
    with pytest.raises(ValueError, match="needs --uri"):
        open_from_uri("file", None, "rx")
    with pytest.raises(FileNotFoundError, match="missing.sigmf-meta"):
        open_radio("file", path=tmp_path / "missing.sigmf-meta")
    assert "file" in backend_kinds(receive=True) and "file" not in backend_kinds(transmit=True)
