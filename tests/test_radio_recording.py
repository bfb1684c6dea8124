"""SigMF record/playback: round trip, atomicity, and clear errors for corrupt or truncated files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdr_tosc.radio.recording import load_recording, record, save_recording

pytest.importorskip("sigmf")


def iq(n=1000):
    rng = np.random.default_rng(0)
    return (0.3 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)


def test_round_trip_with_annotations(tmp_path):
    x = iq()
    meta = save_recording(tmp_path / "cap", x, sample_rate_hz=1e6, center_freq_hz=915e6, description="test",
                          hw="pluto", annotations=[{"start": 10, "length": 100, "label": "frame", "comment": "snr_db=12.3"}])
    assert meta.name == "cap.sigmf-meta" and (tmp_path / "cap.sigmf-data").stat().st_size == 8000
    rec = load_recording(tmp_path / "cap.sigmf-data")
    np.testing.assert_array_equal(rec.iq, x)
    assert rec.iq.dtype == np.complex64 and rec.sample_rate_hz == 1e6 and rec.center_freq_hz == 915e6
    assert rec.annotations[0]["label"] == "frame" and rec.annotations[0]["start"] == 10
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes left no temporary files


def test_corrupt_and_truncated_files_are_named(tmp_path):
    save_recording(tmp_path / "a", iq(), sample_rate_hz=1e6)
    data = tmp_path / "a.sigmf-data"
    with open(data, "ab") as fh:
        fh.write(b"\0\0\0")
    with pytest.raises(ValueError, match="truncated SigMF data .*a.sigmf-data"):
        load_recording(tmp_path / "a")
    save_recording(tmp_path / "b", iq(), sample_rate_hz=1e6)
    raw = bytearray((tmp_path / "b.sigmf-data").read_bytes())
    raw[0] ^= 0xFF
    (tmp_path / "b.sigmf-data").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt SigMF recording"):
        load_recording(tmp_path / "b.sigmf-meta")
    (tmp_path / "c.sigmf-meta").write_text("{not json")
    (tmp_path / "c.sigmf-data").write_bytes(b"")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_recording(tmp_path / "c")
    meta = json.loads((tmp_path / "a.sigmf-meta").read_text())
    meta["global"]["core:datatype"] = "ci16_le"
    (tmp_path / "d.sigmf-meta").write_text(json.dumps(meta))
    (tmp_path / "d.sigmf-data").write_bytes(b"")
    with pytest.raises(ValueError, match="ci16_le"):
        load_recording(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="nothing.sigmf-meta"):
        load_recording(tmp_path / "nothing")
    with pytest.raises(TypeError, match="complex64"):
        save_recording(tmp_path / "e", np.zeros(4), sample_rate_hz=1e6)
    with pytest.raises(ValueError, match="outside the 1000 recorded samples"):
        save_recording(tmp_path / "f", iq(), sample_rate_hz=1e6, annotations=[{"start": 990, "length": 20}])


def test_record_from_a_radio_through_the_channel(tmp_path):
    from sdr_tosc.channel import ChannelSimulator
    from sdr_tosc.radio import open_radio

    with ChannelSimulator(snr_db=20) as ch, open_radio("zmq", rx_endpoint=ch.out_endpoint, sample_rate_hz=1e6) as r:
        meta = record(r, 5000, tmp_path / "air", description="what the radio saw")
    rec = load_recording(meta)
    assert rec.iq.size == 5000 and "zmq" in rec.metadata["global"]["core:hw"]
