"""USRP backend: adapter logic against a fake of the ``uhd`` API (no UHD simulator exists), the real
UHD's absent-device error, and a hardware test for ``--hardware usrp``."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sdr_tosc.radio import open_radio

pytestmark = pytest.mark.timeout(30)


@pytest.fixture()
def fake_uhd(monkeypatch):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    try:
        import fake_uhd
    finally:
        sys.path.pop(0)
    mod = fake_uhd.make_module()
    monkeypatch.setitem(sys.modules, "uhd", mod)
    return fake_uhd


def tone(n: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.exp(2j * np.pi * 0.01 * np.arange(n))).astype(np.complex64)


def test_one_streamer_for_hundreds_of_reads_fc32_sc16_timed(fake_uhd):
    with open_radio("usrp", args="type=b200", sample_rate_hz=2e6, center_freq_hz=915e6, tx_gain_db=50,
                    rx_gain_db=20, profile="b200") as r:
        dev = fake_uhd.MultiUSRP.device
        for _ in range(300):
            r.rx(100)
        assert dev.rx_streamers == 1 and dev.tx_streamers == 1
        assert {(a.cpu_format, a.otw_format) for a in dev.stream_args} == {("fc32", "sc16")}
        cmds = r._rx_streamer.commands
        assert len(cmds) == 300 and all(not c.stream_now and c.num_samps == 100 for c in cmds)
        assert cmds[1].time_spec.get_real_secs() > cmds[0].time_spec.get_real_secs()  # timed, in the future
        settings = dict((name, val) for name, val, _ in dev.calls)
        assert settings["rx_rate"] == 2e6 and settings["tx_freq"] == 915e6 and settings["tx_gain"] == 50
        assert settings["rx_ant"] == "RX2"


def test_tx_loops_back_unscaled_and_bursts_are_timed(fake_uhd):
    with open_radio("usrp", args="type=b200", profile="b200") as r:
        x = tone(5000)
        r.tx(x)
        y = r.rx(6000)
        np.testing.assert_array_equal(y[:5000], x)  # fc32: full scale 1.0 both ways, no scaling
        _, md = fake_uhd.MultiUSRP.device.tx_bursts[0]
        assert md.start_of_burst and md.end_of_burst and md.has_time_spec
        r.tx(x[:10], at_time_s=2.5)
        assert fake_uhd.MultiUSRP.device.tx_bursts[-1][1].time_spec.get_real_secs() == 2.5


def test_overflow_late_and_underflow_are_counted(fake_uhd):
    codes = fake_uhd.RXMetadataErrorCode
    with open_radio("usrp", args="type=b200", profile="b200") as r:
        dev = fake_uhd.MultiUSRP.device
        dev.inject = [codes.overflow, codes.late]
        y = r.rx(3000)
        assert y.size == 3000
        assert r.counters.overflows == 1 and r.counters.late_bursts == 1
        dev.async_events = [fake_uhd.TXMetadataEventCode.underflow, fake_uhd.TXMetadataEventCode.burst_ack]
        r.tx(tone(100))
        assert r.counters.underflows == 1
        # continuous mode: one start command, samples keep flowing across reads
        r.rx_mode = "continuous"
        r.rx(500)
        r.rx(500)
        modes = [c.mode.name for c in r._rx_streamer.commands]
        assert modes.count("start_cont") == 1
        r.center_freq_hz = 2.45e9  # a retune stops the stream; the next read restarts it (timed)
        r.rx(10)
        modes = [c.mode.name for c in r._rx_streamer.commands]
        assert modes.count("stop_cont") >= 1 and modes.count("start_cont") == 2


def test_timeout_raises_instead_of_hanging(fake_uhd):
    with open_radio("usrp", args="type=b200", profile="b200", timeout_s=0.1) as r:
        r._rx_streamer.issue_stream_cmd = lambda cmd: None  # the device ignores commands (unplugged)
        with pytest.raises(TimeoutError, match="delivered 0 of 10 samples"):
            r.rx(10)


def test_settings_validated_per_profile(fake_uhd):
    with pytest.raises(ValueError, match=r"sample_rate_hz=5e\+07 is outside the n210 profile's range"):
        open_radio("usrp", args="addr=192.168.10.2", profile="n210", sample_rate_hz=50e6)
    with pytest.raises(ValueError, match="rx_gain_db"):
        open_radio("usrp", args="type=b200", profile="b200", rx_gain_db=90)
    with pytest.raises(ConnectionError, match="uhd_find_devices"):
        open_radio("usrp", args="type=absent")


def test_absent_usrp_with_the_real_uhd():
    pytest.importorskip("uhd", reason="UHD Python API not installed (apt install python3-uhd)")
    with pytest.raises(ConnectionError, match=r"no USRP found for device args 'type=b200'.*uhd_find_devices"):
        open_radio("usrp", args="type=b200", profile="b200")


@pytest.mark.hardware("usrp")
def test_real_usrp_rx_tx_smoke():
    """Run with a USRP attached: pytest --hardware usrp tests/test_usrp.py"""
    with open_radio("usrp", args="", sample_rate_hz=1e6, center_freq_hz=2.45e9, rx_gain_db=20, tx_gain_db=30,
                    profile="b210") as r:
        for _ in range(200):  # would crash with recv_num_samps after a few hundred calls
            y = r.rx(10_000)
            assert y.dtype == np.complex64 and np.isfinite(y).all() and np.abs(y).max() <= 1.01
        r.tx(tone(10_000, 0.3))
        assert r.counters.rx_samples == 2_000_000
