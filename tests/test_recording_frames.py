"""rx --record's FrameRecorder: the samples around frames (pre/post-roll), one SigMF capture per run of frames,
per-frame fields in the sdr_tosc namespace, validated with the sigmf library."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from sdr_tosc.radio.recording import FrameRecorder, load_recording, occupied_band_hz

FS = 1e6


def stream(n: int) -> np.ndarray:
    """Samples whose value tells their index (to check what was kept)."""
    return (np.arange(n) / n).astype(np.complex64)


def test_keeps_windows_around_frames_as_capture_segments(tmp_path):
    x = stream(200_000)
    r = FrameRecorder(FS, pre_roll=100, post_roll=200, history_samples=30_000)
    frames = [(50_000, 1000, 0), (51_100, 1000, 1), (120_000, 500, 2)]  # the first two windows overlap
    pushed = 0
    for c in range(0, x.size, 8192):
        r.push(x[c:c + 8192])
        pushed = c + 8192
        for start, length, seq in frames:
            if start + length <= pushed < start + length + 8192:  # marked once its samples have arrived
                r.mark(start, length, label=f"seq {seq}", fields={"seq": seq, "snr_db": 20.0 + seq})
    meta = r.save(tmp_path / "cap", center_freq_hz=2.44e9, hw="virtual usrp, serial V1, rx_gain_db=40",
                  global_fields={"serial": "V1", "rx_gain_db": 40.0}, band_hz=(-4e5, 4e5))
    rec = load_recording(meta)
    assert [c["global_index"] for c in rec.captures] == [49_900, 119_900]
    assert rec.iq.size == (52_100 + 200 - 49_900) + (500 + 300)
    np.testing.assert_array_equal(rec.iq[: 52_300 - 49_900], x[49_900:52_300])
    np.testing.assert_array_equal(rec.iq[rec.captures[1]["start"]:], x[119_900:120_700])
    t0, t1 = (dt.datetime.fromisoformat(c["datetime"].replace("Z", "+00:00")) for c in rec.captures)
    assert (t1 - t0).total_seconds() == pytest.approx(0.07, abs=1e-5)  # 70 000 samples apart at 1 Msps
    by_seq = {a["fields"]["seq"]: a for a in rec.annotations}
    for start, _length, seq in frames:
        a = by_seq[seq]
        seg = next(c for c in reversed(rec.captures) if c["start"] <= a["start"])
        assert seg["global_index"] + a["start"] - seg["start"] == start  # maps back to the stream index
        assert a["fields"]["snr_db"] == 20.0 + seq and a["label"] == f"seq {seq}"
        assert (a["freq_lower_hz"], a["freq_upper_hz"]) == (2.44e9 - 4e5, 2.44e9 + 4e5)
    g = rec.metadata["global"]
    assert g["sdr_tosc:serial"] == "V1" and g["sdr_tosc:pre_roll_samples"] == 100
    assert g["core:hw"].startswith("virtual usrp")

    from sigmf import sigmffile

    sigmffile.fromfile(str(meta)).validate()  # schema + checksum, by the sigmf library


def test_limits_and_nothing_to_save(tmp_path):
    r = FrameRecorder(FS, pre_roll=10, post_roll=10, history_samples=1000, max_samples=500)
    assert r.save(tmp_path / "none", center_freq_hz=None) is None
    x = stream(10_000)
    r.push(x[:5000])
    r.mark(1000, 400)
    r.mark(3000, 400)  # would pass max_samples
    r.push(x[5000:])
    meta = r.save(tmp_path / "cut", center_freq_hz=None)
    rec = load_recording(meta)
    assert r.truncated and rec.iq.size == 420 and len(rec.annotations) == 1
    with pytest.raises(ValueError, match="pre_roll"):
        FrameRecorder(FS, pre_roll=-1)


def test_occupied_band_of_a_modem_burst():
    from sdr_tosc.modem import FrameHeader, Modem, ModemConfig

    m = Modem(ModemConfig(sample_rate_hz=FS))
    rng = np.random.default_rng(0)
    burst = m.modulate(((rng.standard_normal(64) + 1j * rng.standard_normal(64)) / 2).astype(np.complex64),
                       FrameHeader(seq=1))
    lo, hi = occupied_band_hz(burst, FS)
    assert -FS / 2 < lo < -FS / 4 and FS / 4 < hi < FS / 2  # OFDM over most of the band, guards left free
