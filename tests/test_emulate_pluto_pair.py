"""The verbs against ``sdr-tosc emulate pluto --count 2 --ppm -18,11`` (a separate process), through real
pyadi-iio/libiio: calibrate recovers the emulated gain law, flags clipping and finds the crystal offset;
measure with that calibration hits its SNR targets without losing frames; demo and tx + rx run."""

from __future__ import annotations

import json
import math
import socket
import threading

import numpy as np
import pytest

pytest.importorskip("adi", reason="pyadi-iio not installed: pip install 'sdr-tosc[pluto]'")

from _radio_fixtures import emulated_plutos, free_endpoint, random_student, rx_process_then_tx  # noqa: E402

from sdr_tosc.cli import main  # noqa: E402

pytestmark = pytest.mark.timeout(240)
PPM = (-18.0, 11.0)
PATH_LOSS_DB = 60.0
RX_GAIN_DB = 63.0
FC = 2.44e9
#: 8 x 32768 samples (262 ms at 1 Msps) of RX kernel queue: the wait budgets grow with it, and a test host
#: shared with other jobs may deschedule the reader for longer than the default 131 ms
KERNEL_BUFFERS = 8


@pytest.fixture(scope="module")
def plutos(tmp_path_factory):
    info = tmp_path_factory.mktemp("emu") / "plutos.json"
    with emulated_plutos(info, "--count", "2", "--ppm", ",".join(f"{p:g}" for p in PPM), "--path-loss-db",
                         str(PATH_LOSS_DB), "--seed", "5") as (doc, proc):
        yield doc
    assert "stopped after" in proc.stderr.read()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_student(tmp_path_factory.mktemp("ckpt") / "student.safetensors")


@pytest.fixture(scope="module")
def calibration(plutos, tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "pair.json"
    js = out.with_name("result.json")
    u0, u1 = plutos["uris"]
    rc = main(["calibrate", "--tx-radio", "pluto", "--tx-uri", u0, "--rx-radio", "pluto", "--rx-uri", u1,
               "--rx-gain-db", str(RX_GAIN_DB), "--sweep-tx-gain-db", "-40:0:5", "--frames", "6",
               "--rx-opt", f"kernel_buffers={KERNEL_BUFFERS}", "--out", str(out), "--json", str(js)])
    return rc, out, json.loads(js.read_text())


def _burst_power_dbfs() -> float:
    from sdr_tosc.calibrate import power_dbfs, qpsk_payload
    from sdr_tosc.modem import FrameHeader, Modem

    m = Modem()
    rng = np.random.default_rng(0)
    return float(np.mean([power_dbfs(m.modulate(qpsk_payload(rng, 92), FrameHeader(seq=i, kind=3)))
                          for i in range(8)]))


def test_emulate_serves_the_pair(plutos):
    assert len(plutos["uris"]) == 2 and plutos["channel_control"].startswith("tcp://")
    assert plutos["ppm"] == list(PPM)


def test_calibrate_recovers_the_gain_law_flags_clipping_and_finds_the_crystal_offset(calibration):
    from sdr_tosc.radio.emulator import link_snr_db

    rc, _out, res = calibration
    assert rc == 0
    pre = res["preflight"]
    assert pre["rx_tx_powered"] is False  # the receive-only Pluto radiates no LO leakage
    assert pre["noise_floor_dbfs"] < -40
    sig = _burst_power_dbfs()
    pts = {p["tx_gain_db"]: p for p in res["points"]}
    lo, hi = res["fit"]["tx_gain_range_db"]
    used = [p for g, p in pts.items() if lo <= g <= hi and not p["flags"]]
    assert len(used) == res["fit"]["points_used"] >= 5
    law = np.array([link_snr_db(sig, p["tx_gain_db"], PATH_LOSS_DB, RX_GAIN_DB, 1e6) for p in used])
    meas = np.array([p["snr_db_mean"] for p in used])
    assert float(np.sqrt(np.mean((meas - law) ** 2))) < 0.5  # the emulated law, within 0.5 dB RMS
    assert res["fit"]["slope_db_per_db"] == pytest.approx(1.0, abs=0.05)
    # mean ADC level sig + g - 60 + 63 + 7 (-3 dBFS at g = 0): OFDM peaks (~7 dB above) clip from g = -5 dB on
    for g in (-5.0, 0.0):
        assert "clipped" in pts[g]["flags"] and pts[g]["rx_peak_dbfs"] >= -0.05
        assert pts[g]["snr_db_mean"] - pts[g]["snr_data_aided_db"] > 3.0  # the blind estimate cannot see it
    assert {f["tx_gain_db"] for f in res["flagged_points"]} >= {-5.0, 0.0}
    assert hi <= -10.0
    for g in (-40.0, -30.0, -20.0):
        assert not pts[g]["flags"]
    assert res["cfo"]["hz"] == pytest.approx((PPM[0] - PPM[1]) * 1e-6 * FC, abs=50.0)
    assert res["cfo"]["ppm"] == pytest.approx(PPM[0] - PPM[1], abs=0.03)
    assert abs(res["cfo"]["residual_hz"]) < 200  # after the tone trim the modem sees a small offset
    assert 39_992_000 <= res["cfo"]["tx_xo_correction_hz"] <= 40_008_000


def test_measure_with_the_calibration_hits_targets_and_loses_nothing(plutos, calibration, checkpoint, tmp_path):
    _rc, cal_file, _res = calibration
    u0, u1 = plutos["uris"]
    js = tmp_path / "m.json"
    rc = main(["measure", "--checkpoint", str(checkpoint), "--tx-radio", "pluto", "--tx-uri", u0, "--rx-radio",
               "pluto", "--rx-uri", u1, "--rx-gain-db", str(RX_GAIN_DB), "--calibration", str(cal_file),
               "--target-snr-db", "10,20", "--images", "24", "--batch-size", "8", "--no-progress", "--json", str(js),
               "--rx-opt", f"kernel_buffers={2 * KERNEL_BUFFERS}"])  # encoding a batch keeps the reader away
    assert rc == 0
    res = json.loads(js.read_text())
    for p in res["points"]:
        assert p["frame_loss"] == 0.0, p  # no frame lost to timing (queue latency, sequence numbers)
        assert p["snr_db_mean"] == pytest.approx(p["target_snr_db"], abs=1.5)


def test_demo_over_one_emulated_pluto(plutos, checkpoint, tmp_path):
    js = tmp_path / "demo.json"
    rc = main(["demo", "--checkpoint", str(checkpoint), "--radio", "pluto", "--uri", plutos["uris"][0],
               "--images", "16", "--tx-gain-db", "-20", "--rx-gain-db", "30", "--no-progress", "--json", str(js)])
    assert rc == 0
    res = json.loads(js.read_text())
    assert res["summary"]["frame_loss"] == 0.0
    # own TX through 40 dB of antenna isolation: -10 dBFS burst - 20 - 40, noise at RX gain 30 -> ~32 dB
    from sdr_tosc.radio.emulator import link_snr_db

    assert res["summary"]["snr_db_mean"] == pytest.approx(link_snr_db(_burst_power_dbfs(), -20, 40, 30, 1e6), abs=1.5)


def test_tx_and_rx_verbs_in_two_processes(plutos, checkpoint, tmp_path):
    u0, u1 = plutos["uris"]
    fb = free_endpoint()
    rx_json = tmp_path / "rx.json"
    # each radio's crystal trimmed to its true frequency (what a calibration gives), so the modem locks
    xo = [str(round(40e6 * (1 + p * 1e-6))) for p in PPM]
    # two rounds: a burst lost to a stall of this shared 2-core host (seen once in a clean CI run: 8 of 16)
    # is sent again; rx scores each image once
    rc_tx, rc_rx, out = rx_process_then_tx(
        ["--checkpoint", str(checkpoint), "--radio", "pluto", "--uri", u1, "--rx-gain-db", "50",
         "--radio-opt", f"xo_correction_hz={xo[1]}", "--images", "16", "--feedback", fb,
         # 0.5 s of kernel buffering: a CI host shared with other jobs stalls the decoder
         "--radio-opt", "kernel_buffers=16", "--timeout-s", "30", "--no-progress", "--json", str(rx_json)],
        ["--checkpoint", str(checkpoint), "--radio", "pluto", "--uri", u0, "--tx-gain-db", "-20",
         "--radio-opt", f"xo_correction_hz={xo[0]}", "--images", "16", "--batch-size", "8", "--repeat", "2",
         "--feedback-bind", fb])
    assert rc_tx == 0 and rc_rx == 0, out[-3000:]
    res = json.loads(rx_json.read_text())
    assert res["summary"]["received"] == 16
    assert abs(res["summary"]["cfo_hz_mean"]) < 500  # trimmed crystals: what is left is the trim's rounding
    # link budget: -10 dBFS burst - 20 dB - 60 dB over the noise at RX gain 50: ~26 dB
    assert math.isfinite(res["summary"]["snr_db_mean"]) and res["summary"]["snr_db_mean"] > 18


def test_emulate_rejects_bad_options(capsys):
    assert main(["emulate", "pluto", "--count", "2", "--ppm", "-18"]) == 1
    assert "one per radio" in capsys.readouterr().err
    assert main(["emulate", "pluto", "--count", "2", "--path-loss-db", "50", "--snr-db", "30"]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_emulate_in_process_stops_on_duration(tmp_path):
    js = tmp_path / "e.json"
    t = threading.Thread(target=lambda: main(["emulate", "pluto", "--count", "1", "--duration-s", "1.5", "--snr-db",
                                              "30", "--base-port", str(_free_port()), "--json", str(js)]))
    t.start()
    t.join(30)
    assert not t.is_alive()
    doc = json.loads(js.read_text())
    assert len(doc["uris"]) == 1 and doc["uris"][0].startswith("ip:127.0.0.1:")
    # --snr-db 30: the path loss at which full scale sent at 0 dB attenuation arrives 30 dB over thermal noise
    from sdr_tosc.radio.emulator import link_snr_db

    assert doc["path_loss_db"] == pytest.approx(87.5, abs=0.01)
    assert link_snr_db(0.0, 0.0, doc["path_loss_db"], 71.0, 1e6) == pytest.approx(30.0, abs=0.2)
