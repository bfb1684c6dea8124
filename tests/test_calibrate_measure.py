"""Calibration and measurement campaigns, on synthetic numbers and through the loopback simulator."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from sdr_tosc import calibrate as cal
from sdr_tosc.cli import main
from sdr_tosc.measure import bin_by_snr, wilson_interval


def _pt(g, snr, ok=10):
    return cal.PointResult(g, 10, ok, snr, 0.1, snr, 100.0, -20.0)


def test_fit_uses_linear_region_only():
    pts = [_pt(-40, float("nan"), 0), _pt(-30, 0.2), _pt(-20, 10.1), _pt(-10, 19.9), _pt(0, 24.0), _pt(10, 24.5)]
    fit = cal.fit_gain_curve(pts)
    assert fit["slope_db_per_db"] == pytest.approx(1.0, abs=0.05)
    assert fit["tx_gain_range_db"] == [-30.0, -10.0]  # the compressed top and the silent bottom are left out
    entry = {"fit": fit}
    assert cal.gain_for_snr(entry, 15.0) == pytest.approx(-15.0, abs=0.5)
    assert cal.gain_for_snr(entry, 100.0) == -10.0  # clipped to what was measured
    with pytest.raises(ValueError, match="at least 2"):
        cal.fit_gain_curve([_pt(0, 10.0)])


def test_estimators_on_synthetic_iq():
    rng = np.random.default_rng(0)
    s = cal.qpsk_payload(rng, 4000)
    assert np.allclose(np.abs(s), 1.0)
    noisy = s + np.sqrt(0.01 / 2) * (rng.standard_normal(s.size) + 1j * rng.standard_normal(s.size))
    assert cal.data_aided_snr_db(s, noisy) == pytest.approx(20.0, abs=0.3)
    assert cal.cfo_ppm(915.0, 915e6) == pytest.approx(1.0)
    assert cal.power_dbfs(np.full(10, 0.1, np.complex64)) == pytest.approx(-20.0, abs=1e-4)
    with pytest.raises(ValueError):
        cal.data_aided_snr_db(s, s[:-1])


def test_calibration_file_round_trip_and_errors(tmp_path):
    p = tmp_path / "dev.json"
    cal.save_entry(p, {"kind": "zmq"}, 915e6, {"fit": {"slope_db_per_db": 1, "intercept_db": 0, "tx_gain_range_db": [0, 1]}})
    cal.save_entry(p, {"kind": "zmq"}, 2.4e9, {"fit": None})
    doc = cal.load_calibration(p)
    assert set(doc["entries"]) == {"915000000", "2400000000"}
    assert cal.lookup(doc, 900e6)["fit"]["slope_db_per_db"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an sdr-tosc calibration"):
        cal.load_calibration(bad)
    bad.write_text('{"format": "sdr-tosc-calibration", "ver')
    with pytest.raises(ValueError, match="corrupt or truncated"):
        cal.load_calibration(bad)


def test_wilson_and_binning():
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    frames = [{"received": True, "snr_db": s, "pred": 1, "label": int(s > 5)} for s in (0.4, 0.9, 9.8, 10.3)]
    frames.append({"received": False, "label": 1})
    b = bin_by_snr(frames, bin_db=5.0)
    assert [r["snr_db"] for r in b] == [0.0, 10.0]
    assert [r["accuracy"] for r in b] == [0.0, 1.0]
    assert [r["frames"] for r in b] == [2, 2]


@pytest.mark.timeout(180)
def test_calibrate_cli_on_loopback_recovers_the_link_budget(tmp_path, capsys):
    out = tmp_path / "cal"
    js = tmp_path / "cal.json"
    rc = main(["calibrate", "--sweep-tx-gain-db", "-15:0:5", "--frames", "6", "--snr-db", "20", "--cfo-hz", "1200",
               "--out", str(out), "--json", str(js)])
    assert rc == 0, capsys.readouterr()
    res = json.loads(js.read_text())
    assert res["fit"]["slope_db_per_db"] == pytest.approx(1.0, abs=0.1)
    assert res["fit"]["intercept_db"] == pytest.approx(20.0, abs=1.0)
    assert res["cfo"]["hz"] == pytest.approx(1200.0, abs=60.0)
    for p in res["points"]:
        assert p["frames_ok"] == p["frames_sent"]
        assert p["snr_data_aided_db"] == pytest.approx(p["snr_db_mean"], abs=1.5)  # estimator vs known payload
    files = list(out.glob("*.json"))
    assert len(files) == 1 and cal.load_calibration(files[0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from sdr_tosc.semantic.student import create_model, save_checkpoint

    p = tmp_path_factory.mktemp("ckpt") / "student.safetensors"
    save_checkpoint(create_model("fmnist-cnn"), p)
    return p


@pytest.mark.timeout(180)
def test_measure_cli_sweeps_snr(tmp_path, checkpoint, capsys):
    js, png = tmp_path / "m.json", tmp_path / "m.png"
    rc = main(["measure", "--checkpoint", str(checkpoint), "--sweep-snr-db", "5,25", "--images", "16",
               "--batch-size", "4", "--no-progress", "--json", str(js), "--plot", str(png)])
    assert rc == 0, capsys.readouterr()
    res = json.loads(js.read_text())
    assert [p["snr_db_set"] for p in res["points"]] == [5.0, 25.0]
    for p in res["points"]:
        assert p["snr_true_db_mean"] == pytest.approx(p["value"], abs=0.01)
        assert p["snr_db_mean"] == pytest.approx(p["value"], abs=1.0)
    last = {p: [f for f in res["frames"] if f["point"] == p][-1] for p in (0, 1)}
    assert last[0]["n_symbols"] > last[1]["n_symbols"]  # fed-back SNR: fewer symbols at 25 dB than at 5 dB
    assert res["binned"] and png.stat().st_size > 10_000
    assert (tmp_path / "m.config.toml").exists()


def test_measure_cli_needs_one_sweep(checkpoint, capsys):
    assert main(["measure", "--checkpoint", str(checkpoint)]) == 1
    assert "exactly one" in capsys.readouterr().err
    assert main(["measure", "--sweep-snr-db", "5:0:1"]) == 2  # a range written wrong
    assert "--sweep-snr-db" in capsys.readouterr().err


@pytest.mark.timeout(180)
def test_demo_cli(tmp_path, checkpoint, capsys):
    js = tmp_path / "demo.json"
    rc = main(["demo", "--checkpoint", str(checkpoint), "--images", "16", "--snr-db", "15", "--no-progress",
               "--json", str(js), "--plot", str(tmp_path / "demo.png")])
    out = capsys.readouterr().out
    assert rc == 0 and "accuracy" in out
    res = json.loads(js.read_text())
    assert res["summary"]["images"] == 16 and res["summary"]["frame_loss"] == 0.0
    assert abs(res["snr_estimate_bias_db"]) < 1.0
    assert (tmp_path / "demo.png").stat().st_size > 10_000


@pytest.mark.timeout(180)
def test_tx_and_rx_verbs_through_a_channel_process(tmp_path, checkpoint):
    from sdr_tosc.channel import ChannelSimulator

    rx_json = tmp_path / "rx.json"
    with ChannelSimulator(snr_db=15.0, cfo_hz=-2500.0, seed=3) as ch:
        rc = {}
        fb = "tcp://127.0.0.1:0"
        import socket

        with socket.socket() as s:  # a free port for the feedback link
            s.bind(("127.0.0.1", 0))
            fb = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        t = threading.Thread(target=lambda: rc.setdefault("rx", main(
            ["rx", "--checkpoint", str(checkpoint), "--uri", ch.out_endpoint, "--images", "24", "--feedback", fb,
             "--timeout-s", "20", "--no-progress", "--json", str(rx_json), "--record", str(tmp_path / "cap")])))
        t.start()
        rc["tx"] = main(["tx", "--checkpoint", str(checkpoint), "--uri", ch.in_endpoint, "--images", "24",
                         "--feedback-bind", fb, "--batch-size", "8"])
        t.join(60)
    assert rc == {"tx": 0, "rx": 0}
    res = json.loads(rx_json.read_text())
    assert res["summary"]["received"] == 24
    assert res["summary"]["snr_db_mean"] == pytest.approx(15.0, abs=1.0)
    assert res["summary"]["cfo_hz_mean"] == pytest.approx(-2500.0, abs=100.0)
    from sdr_tosc.radio.recording import load_recording

    rec = load_recording(tmp_path / "cap")
    assert len(rec.annotations) == 24  # every decoded frame is marked in the SigMF recording
    a = rec.annotations[0]
    seg = rec.iq[a["start"]:a["start"] + a["length"]]
    noise = np.median(np.abs(rec.iq) ** 2)  # bursts fill well under half of the timeline
    assert np.mean(np.abs(seg) ** 2) > 10 * noise  # 15 dB SNR: the annotation sits on the burst


def test_rx_reports_absent_pluto(checkpoint, capsys):
    rc = main(["rx", "--checkpoint", str(checkpoint), "--radio", "pluto", "--uri", "ip:127.0.0.1:9",
               "--images", "1", "--timeout-s", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "127.0.0.1" in err


def test_point_flags_and_fit_leave_out_clipped_and_compressed_points():
    assert cal.point_flags(30.0, 29.0, -3.0) == ()
    assert cal.point_flags(30.0, 20.0, -3.0) == ("compressed",)  # data-aided far below the preamble estimate
    assert cal.point_flags(30.0, 29.5, 0.0) == ("clipped",)
    pts = [_pt(-30, 10.0), _pt(-20, 20.1), _pt(-10, 29.9),
           cal.PointResult(0, 10, 10, 40.2, 0.1, 21.0, 0.0, -3.0, 0.0, ("clipped", "compressed"))]
    fit = cal.fit_gain_curve(pts)
    assert fit["tx_gain_range_db"] == [-30.0, -10.0] and fit["points_used"] == 3
    with pytest.raises(ValueError, match=r"clipped or compressed \(TX gains 0\)"):
        cal.fit_gain_curve([_pt(-30, 10.0), pts[-1]])


def test_wait_budget_follows_the_kernel_queue():
    class Pluto:
        sample_rate_hz, kernel_buffers, rx_buffer_samples = 1e6, 4, 32768

    assert cal.rx_wait_samples(Pluto()) == 4 * 32768 + 100_000  # 131 ms of queue + 100 ms of TX latency
    Pluto.sample_rate_hz = 4e6
    assert cal.rx_wait_samples(Pluto(), margin_s=0.0) == 131072


@pytest.mark.timeout(120)
def test_calibrate_sequence_numbers_are_unique_over_the_sweep(monkeypatch):
    """Frames of one gain step must not be counted at the next (they reused 0..N-1 at every step)."""
    from sdr_tosc.modem import Modem

    seen = []
    real = cal.FrameHeader

    def spy(*a, **k):
        h = real(*a, **k)
        seen.append(h.seq)
        return h

    monkeypatch.setattr(cal, "FrameHeader", spy)

    class Loop:  # a perfect cable: what is sent comes back after a gap
        kind, sample_rate_hz, center_freq_hz, rx_gain_db = "loop", 1e6, 2.44e9, 0.0

        def __init__(self):
            self.buf = np.zeros(0, np.complex64)
            self.tx_gain_db = 0.0

        def tx(self, iq):
            self.buf = np.concatenate([self.buf, np.zeros(2000, np.complex64), iq])

        def rx(self, n):
            out = np.zeros(n, np.complex64)
            k = min(n, self.buf.size)
            out[:k] = self.buf[:k]
            self.buf = self.buf[k:]
            return out + (1e-3 * np.random.default_rng(n).standard_normal(n)).astype(np.complex64)

        def settings(self):
            return {"kind": "loop"}

    r = Loop()
    entry = cal.calibrate(r, r, [-10.0, 0.0], modem=Modem(), frames_per_point=3, pack_gap_samples=300)
    assert seen == [0, 1, 2, 3, 4, 5]
    assert [p["frames_ok"] for p in entry["points"]] == [3, 3]


@pytest.mark.timeout(180)
def test_demo_over_pluto_backend_against_an_emulated_pluto(tmp_path, checkpoint):
    """The whole link through real pyadi-iio + libiio talking to one emulated Pluto (TX heard through its
    40 dB antenna isolation); the SNR is the emulated link budget's."""
    pytest.importorskip("adi")
    from sdr_tosc.radio.emulator import EmulatedPlutos, link_snr_db

    js = tmp_path / "demo.json"
    with EmulatedPlutos(1, isolation_db=40.0, seed=1) as emu:
        rc = main(["demo", "--checkpoint", str(checkpoint), "--radio", "pluto", "--uri", emu.uri, "--images", "24",
                   "--tx-gain-db", "-10", "--rx-gain-db", "20", "--no-progress", "--json", str(js)])
    assert rc == 0
    res = json.loads(js.read_text())
    assert res["summary"]["frame_loss"] == 0.0
    # burst -10 dBFS, TX -10 dB, 40 dB isolation, noise at RX gain 20: ~38 dB; a wrong 2**15/2**11 scaling on
    # either side would move this by 6-24 dB
    assert res["summary"]["snr_db_mean"] == pytest.approx(link_snr_db(-10.0, -10.0, 40.0, 20.0, 1e6), abs=2.0)


