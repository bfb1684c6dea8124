"""The verbs with ``--radio usrp`` against the virtual USRP (the real UsrpRadio code, a clocked device, samples
through the channel simulator process): demo, tx + rx in two processes (recorded, then replayed with the
file radio), calibrate and measure with a pair of devices whose crystals differ."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _radio_fixtures import free_endpoint, random_student, rx_process_then_tx

from sdr_tosc.cli import main

pytestmark = pytest.mark.timeout(240)

FC = 2.44e9


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_student(tmp_path_factory.mktemp("ckpt") / "student.safetensors")


def test_usrp_settings_reach_the_backend(capsys):
    """The start-up bug: linkargs passed device_args=, UsrpRadio takes args (every --radio usrp verb failed)."""
    from sdr_tosc.commands.linkargs import open_radio_from

    class Args:
        sample_rate_hz, center_freq_hz, radio_tx_gain_db, radio_rx_gain_db = 1e6, FC, 55.0, 35.0

    with open_radio_from("usrp", "type=virtual,serial=ARGS1", "tx", {"rx_queue_s": 0.5}, Args()) as r:
        assert r.args == "type=virtual,serial=ARGS1" and r.serial == "ARGS1"
        assert (r.tx_gain_db, r.rx_gain_db, r.center_freq_hz, r.rx_queue_s) == (55.0, 35.0, FC, 0.5)
    with pytest.raises(ValueError, match="cannot transmit"):
        open_radio_from("file", "x.sigmf-meta", "tx", {}, Args())


def test_demo_with_one_virtual_usrp(tmp_path):
    js = tmp_path / "demo.json"
    # a 1.5 s host queue: on a loaded machine the first encode may keep the link from reading for a while
    rc = main(["demo", "--radio", "usrp", "--uri", "type=virtual,link=demo,num_recv_frames=64", "--images", "24",
               "--radio-opt", "rx_queue_s=1.5", "--tx-gain-db", "60", "--rx-gain-db", "40", "--no-progress",
               "--json", str(js)])
    assert rc == 0
    res = json.loads(js.read_text())
    assert res["summary"]["frame_loss"] == 0.0
    assert res["summary"]["snr_db_mean"] == pytest.approx(39.0, abs=3.0)  # the gain law: tx 60, rx 40
    assert abs(res["summary"]["cfo_hz_mean"]) < 20  # one device: its TX and RX share the LO
    assert res["radio_counters"]["rx"]["rx_samples"] > 0


def test_tx_and_rx_processes_record_and_replay(tmp_path, checkpoint):
    from sdr_tosc.channel import ChannelSimulator
    from sdr_tosc.radio.recording import load_recording

    rx_json, replay_json, cap = tmp_path / "rx.json", tmp_path / "replay.json", tmp_path / "cap"
    fb = free_endpoint()
    with ChannelSimulator(snr_db=None, noise_dbfs=-110.0, path_loss_db=30.0, gap_samples=0, gap_jitter_samples=0,
                          sample_rate_hz=1e6, center_freq_hz=FC) as ch:
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        rc_tx, rc_rx, out = rx_process_then_tx(
            ["--checkpoint", str(checkpoint), "--radio", "usrp",
             "--uri", f"type=virtual,out={ch.out_endpoint},ppm=-3,serial=RXV1,num_recv_frames=64",
             "--radio-opt", "rx_queue_s=1.5", "--rx-gain-db", "40",
             "--images", "24", "--feedback", fb, "--timeout-s", "10", "--no-progress", "--json", str(rx_json),
             "--record", str(cap), "--record-pre-roll", "1500", "--record-post-roll", "1500"],
            ["--checkpoint", str(checkpoint), "--radio", "usrp",
             "--uri", f"type=virtual,in={ch.in_endpoint},ppm=4,serial=TXV1", "--tx-gain-db", "60",
             "--images", "24", "--feedback-bind", fb, "--batch-size", "8"],
            env=env, ready_s=90, rx_wait_s=120, settle_s=0.0)
    assert rc_tx == 0 and rc_rx == 0, out
    live = json.loads(rx_json.read_text())
    assert live["summary"]["received"] == 24, out
    assert live["summary"]["cfo_hz_mean"] == pytest.approx(7e-6 * FC, abs=50)  # (4 - (-3)) ppm of 2.44 GHz

    # the recording: samples around the frames, validated by the sigmf library
    import sigmf
    from sigmf import sigmffile

    meta = sigmffile.fromfile(str(cap) + ".sigmf-meta")
    meta.validate()
    glob = meta.get_global_info()
    assert "serial RXV1" in glob["core:hw"] and "rx_gain_db=40.0" in glob["core:hw"]
    assert glob["sdr_tosc:rx_gain_db"] == 40.0 and glob["sdr_tosc:serial"] == "RXV1"
    assert {"name": "sdr_tosc", "version": "1.0.0", "optional": True} in glob["core:extensions"]
    caps = meta.get_captures()
    assert all("core:datetime" in c and "core:global_index" in c for c in caps)
    anns = meta.get_annotations()
    assert sorted(a["sdr_tosc:seq"] for a in anns) == list(range(24))
    assert all(FC - 5e5 < a["core:freq_lower_edge"] < FC < a["core:freq_upper_edge"] < FC + 5e5 for a in anns)
    rec = load_recording(cap)
    first = min(c["global_index"] for c in rec.captures)
    assert first > 0 and rec.iq.size < caps[-1]["core:global_index"] - first + 200_000  # not the whole run
    assert sigmf.__version__

    # replay through the receiver: the same frames, the same predictions
    rc = main(["rx", "--checkpoint", str(checkpoint), "--radio", "file", "--uri", str(cap) + ".sigmf-meta",
               "--images", "24", "--no-feedback", "--timeout-s", "5", "--no-progress", "--json", str(replay_json)])
    assert rc == 0
    replay = json.loads(replay_json.read_text())
    a = {f["seq"]: f for f in live["frames"]}
    b = {f["seq"]: f for f in replay["frames"]}
    assert set(a) == set(b) == set(range(24))
    assert [a[s]["pred"] for s in a] == [b[s]["pred"] for s in a]
    assert max(abs(a[s]["snr_db"] - b[s]["snr_db"]) for s in a) < 0.05
    assert max(abs(a[s]["cfo_hz"] - b[s]["cfo_hz"]) for s in a) < 1.0


def test_calibrate_and_measure_with_a_virtual_usrp_pair(tmp_path):
    out, js = tmp_path / "cal", tmp_path / "cal.json"
    pair = ["--tx-radio", "usrp", "--tx-uri", "type=virtual,ppm=4,serial=CALTX,link=cal", "--rx-radio", "usrp",
            "--rx-uri", "type=virtual,ppm=-3,serial=CALRX,link=cal,num_recv_frames=64", "--rx-opt", "rx_queue_s=1.5",
            "--rx-gain-db", "40",
            "--center-freq-hz", str(FC)]
    rc = main(["calibrate", *pair, "--sweep-tx-gain-db", "30,40,50,60,89.8", "--frames", "5", "--out", str(out),
               "--json", str(js)])
    assert rc == 0
    res = json.loads(js.read_text())
    assert res["fit"]["slope_db_per_db"] == pytest.approx(1.0, abs=0.1)  # TX gain moves the SNR dB for dB
    assert res["fit"]["tx_gain_range_db"] == [30.0, 60.0]
    assert "clipped" in res["points"][-1]["flags"]  # full TX gain into 40 dB RX gain: the 12-bit ADC clips
    assert res["cfo"]["hz"] == pytest.approx(7e-6 * FC, abs=50)
    assert res["cfo"]["ppm"] == pytest.approx(7.0, abs=0.05)
    assert (out / "usrp-CALTX.json").exists()

    mjs = tmp_path / "m.json"
    rc = main(["measure", *pair, "--calibration", str(out / "usrp-CALTX.json"), "--target-snr-db", "15,25",
               "--images", "32", "--no-progress", "--json", str(mjs)])
    assert rc == 0
    m = json.loads(mjs.read_text())
    for p in m["points"]:
        assert p["frame_loss"] == 0.0
        assert p["snr_db_mean"] == pytest.approx(p["value"], abs=1.5)
