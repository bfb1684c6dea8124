"""One emulated Pluto and one virtual USRP on the same air (``emulate pluto --count 1`` + ``type=virtual,air=``):
``tx`` on one and ``rx`` on the other, each radio with its own crystal, in separate processes."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("adi", reason="pyadi-iio not installed: pip install 'sdr-tosc[pluto]'")

from _radio_fixtures import emulated_plutos, free_endpoint, random_student, rx_process_then_tx  # noqa: E402

pytestmark = pytest.mark.timeout(300)
PLUTO_PPM, USRP_PPM = -8.0, 5.0
FC = 2.44e9


@pytest.fixture(scope="module")
def air(tmp_path_factory):
    info = tmp_path_factory.mktemp("air") / "plutos.json"
    with emulated_plutos(info, "--count", "1", "--ppm", f"{PLUTO_PPM:g}", "--path-loss-db", "60", "--seed", "3") as (doc, _):
        yield info, doc


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return random_student(tmp_path_factory.mktemp("ckpt") / "student.safetensors")


def _link(checkpoint, tmp_path, rx_radio: list[str], tx_radio: list[str], images: int = 16) -> dict:
    """``rx`` in a process of its own, ``tx`` here once the receiver streams; the receiver's --json."""
    fb, rx_json = free_endpoint(), tmp_path / "rx.json"
    # two rounds, as the Pluto pair's test: on a loaded 2-core host a burst of 8 is lost now and then (seen
    # 2 of ~12 runs, Pluto -> USRP); rx scores each image once, and the receiver's counters must be 0
    rc_tx, rc_rx, out = rx_process_then_tx(
        ["--checkpoint", str(checkpoint), *rx_radio, "--images", str(images), "--feedback", fb, "--timeout-s", "30",
         "--no-progress", "--json", str(rx_json)],
        ["--checkpoint", str(checkpoint), *tx_radio, "--images", str(images), "--batch-size", "8", "--repeat", "2",
         "--feedback-bind", fb])
    assert rc_tx == 0 and rc_rx == 0, out[-3000:]
    return json.loads(rx_json.read_text())


def _assert_clean_link(res: dict, tx_ppm: float, rx_ppm: float) -> None:
    """16/16 frames, no receiver overflow or dropped sample, a good SNR, and the carrier offset the receiver
    measures is the two crystals' difference at the centre frequency."""
    s = res["summary"]
    print("measured:", {k: s[k] for k in ("received", "frame_loss", "cfo_hz_mean", "snr_db_mean")}, res["radio_counters"])
    assert res["radio_counters"]["overflows"] == 0 and res["radio_counters"]["dropped_samples"] == 0
    assert s["received"] == 16 and s["frame_loss"] == 0.0
    assert s["cfo_hz_mean"] == pytest.approx((tx_ppm - rx_ppm) * 1e-6 * FC, abs=20)
    assert s["snr_db_mean"] > 18


def test_pluto_transmits_and_a_virtual_usrp_receives(air, checkpoint, tmp_path):
    path, doc = air
    assert doc["air"]["guest_nodes"] == [1] and doc["air"]["sample_rate_hz"] == 1e6
    res = _link(checkpoint, tmp_path,
                ["--radio", "usrp", "--uri", f"type=virtual,air={path},ppm={USRP_PPM:g},num_recv_frames=64",
                 "--radio-opt", "rx_queue_s=1.5", "--rx-gain-db", "50"],
                ["--radio", "pluto", "--uri", doc["uris"][0], "--tx-gain-db", "-20"])
    _assert_clean_link(res, tx_ppm=PLUTO_PPM, rx_ppm=USRP_PPM)
    from sdr_tosc.channel.process import ChannelControl

    ctl = ChannelControl(doc["channel_control"])
    try:
        st = ctl.stats()
    finally:
        ctl.close()
    print("air:", {k: st[k] for k in ("underflows", "late_bursts", "node_reads")}, st["links"])
    assert st["node_reads"][1] > 0  # the virtual USRP read its node of the air


def test_virtual_usrp_transmits_and_a_pluto_receives(air, checkpoint, tmp_path):
    path, doc = air
    res = _link(checkpoint, tmp_path,
                ["--radio", "pluto", "--uri", doc["uris"][0], "--rx-gain-db", "55", "--radio-opt", "kernel_buffers=16"],
                ["--radio", "usrp", "--uri", f"type=virtual,air={path},ppm={USRP_PPM:g}", "--tx-gain-db", "75"])
    _assert_clean_link(res, tx_ppm=USRP_PPM, rx_ppm=PLUTO_PPM)


def test_a_virtual_usrp_at_another_sample_rate_cannot_join(air):
    from sdr_tosc.radio import open_radio

    path, _ = air
    with pytest.raises(RuntimeError, match="sample rates of the radios on one air must match"):
        r = open_radio("usrp", args=f"type=virtual,air={path}", sample_rate_hz=2e6)
        try:
            r.rx(1000)
        finally:
            r.close()


def test_a_guest_attaching_anew_hears_the_present(air):
    """What a guest left pending when it went away is dropped when the next one attaches: the air's
    latency to a guest stays near its slack (~50 ms), not the backlog of an earlier run."""
    import numpy as np

    from sdr_tosc.channel.process import ChannelControl
    from sdr_tosc.radio import open_radio

    path, doc = air
    pluto = open_radio("pluto", uri=doc["uris"][0], tx_gain_db=-20, tx_cyclic=True)
    tone = (0.3 * np.exp(2j * np.pi * 0.01 * np.arange(10_000))).astype(np.complex64)
    pluto.tx(tone)  # on the air all along
    ctl = ChannelControl(doc["channel_control"])
    pending = []
    try:
        for _ in range(2):
            r = open_radio("usrp", args=f"type=virtual,air={path},ppm={USRP_PPM:g}", rx_gain_db=30)
            try:
                for _ in range(10):  # 1 s of air, read as it comes
                    r.rx(100_000)
                pending.append(ctl.stats()["links"]["0->1"]["pending"])
            finally:
                r.close()
            time.sleep(0.6)  # the air keeps sending until it sees the guest's reads stop
        left = ctl.stats()["links"]["0->1"]["pending"]
    finally:
        ctl.close()
        pluto.close()
    print("pending on the Pluto -> guest link while attached:", pending, "after leaving:", left)
    assert left > 100_000  # the first guest's leftovers ...
    assert all(p < 150_000 for p in pending)  # ... are not heard by the next one
