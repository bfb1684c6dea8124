"""USRP backend: its real code path against the virtual USRP (``type=virtual``, a clocked device behind the
channel simulator process), the real UHD's absent-device error, and a hardware test for ``--hardware usrp``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sdr_tosc.radio import open_radio
from sdr_tosc.radio import virtual_usrp as vu

pytestmark = pytest.mark.timeout(60)


def tone(n: int, amp: float = 0.5, f: float = 0.01) -> np.ndarray:
    return (amp * np.exp(2j * np.pi * f * np.arange(n))).astype(np.complex64)


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.abs(x) ** 2)))


def find_burst(y: np.ndarray, n: int) -> int:
    """Start of the n-sample stretch with the most energy (the burst)."""
    e = np.concatenate([[0.0], np.cumsum(np.abs(y) ** 2)])
    return int(np.argmax(e[n:] - e[:-n]))


def test_continuous_stream_one_timed_start_and_contiguous_reads():
    # a large device buffer: this test is about contiguity, not about a busy machine's overflows
    with open_radio("usrp", args="type=virtual,serial=VTEST1,num_recv_frames=128", sample_rate_hz=1e6,
                    center_freq_hz=915e6, tx_gain_db=60, rx_gain_db=40, profile="b200", rx_queue_s=1.0) as r:
        assert r.serial == "VTEST1" and r.settings()["serial"] == "VTEST1"
        first = r.rx(1000)
        x = tone(30_000)
        r.tx(x)
        # the burst arrives while the caller reads in small pieces: nothing is missed between rx() calls
        y = np.concatenate([r.rx(500) for _ in range(600)])
        k = find_burst(y, x.size)
        seg = y[k + 10:k + x.size - 10]  # the window's edges may fall a sample off the burst's
        ph = np.angle(seg[1:] * np.conj(seg[:-1]))
        assert np.abs(ph - 2 * np.pi * 0.01).max() < 0.2  # one phase-continuous tone across 60 reads
        stats = r._usrp.virtual_stats()
        cmds = stats["stream_commands"]
        assert [c[0] for c in cmds] == ["start_cont"] and cmds[0][1] is False and cmds[0][2] > 0  # timed
        assert r.counters.overflows == 0 and r.counters.dropped_samples == 0
        assert first.dtype == np.complex64 and r.counters.rx_samples == 301_000
        r.center_freq_hz = 916e6  # a retune stops the stream; the next read restarts it, timed again
        r.rx(100)
        names = [c[0] for c in r._usrp.virtual_stats()["stream_commands"]]
        assert names == ["start_cont", "stop_cont", "start_cont"]
        with pytest.raises(RuntimeError, match="recv_num_samps"):
            r._usrp.recv_num_samps(10, 915e6)


def test_gain_law_moves_the_received_level_and_clips():
    levels = {}
    with open_radio("usrp", args="type=virtual", sample_rate_hz=1e6, tx_gain_db=40, rx_gain_db=40) as r:
        for g_tx, g_rx in ((40.0, 40.0), (50.0, 40.0), (50.0, 50.0), (89.8, 60.0)):
            r.tx_gain_db = g_tx
            r.rx_gain_db = g_rx  # stops the stream (stale samples at the old gain); rx() restarts it
            r.rx(1000)
            r.tx(tone(20_000, 0.3))
            y = r.rx(250_000)
            k = find_burst(y, 20_000)
            peak = float(max(np.abs(y.real).max(), np.abs(y.imag).max()))
            levels[g_tx, g_rx] = (power_db(y[k + 1000:k + 19_000]), peak)
            if g_tx == 40.0:
                floor = power_db(y[k + 25_000:k + 60_000])
    assert levels[50.0, 40.0][0] - levels[40.0, 40.0][0] == pytest.approx(10.0, abs=0.3)  # TX gain: dB for dB
    assert levels[50.0, 50.0][0] - levels[50.0, 40.0][0] == pytest.approx(10.0, abs=0.3)  # RX gain too
    assert levels[40.0, 40.0][0] - floor > 15  # well above the noise floor
    assert 0.999 <= levels[89.8, 60.0][1] <= 1.0  # the 12-bit ADC clips I and Q at full scale


def test_slow_reader_overflows_and_the_gap_is_counted():
    with open_radio("usrp", args="type=virtual,num_recv_frames=4", sample_rate_hz=1e6,
                    rx_queue_s=0.05) as r:
        r.rx(1000)
        time.sleep(0.6)  # the host stops reading: the queue and the device buffer fill, the device drops
        r.rx(200_000)
        r.rx(100_000)  # past the gap: its size is known from the jump of the time stamps
        c = r.counters
        device = r._usrp.virtual_stats()
    assert c.overflows >= 1 and device["rx_overflows"] >= c.overflows
    # the host measures from the time stamps what the device dropped (on an idle machine ~0.5 s of samples)
    assert 0 < c.dropped_samples <= device["rx_dropped_samples"]


def test_late_burst_and_underflow_come_back_as_async_messages():
    with open_radio("usrp", args="type=virtual", sample_rate_hz=1e6) as r:
        time.sleep(0.05)
        r.tx(tone(1000), at_time_s=0.001)  # its time has passed: dropped, EVENT_CODE_TIME_ERROR
        assert r.counters.late_bursts == 1
        r.tx(tone(2000), end_of_burst=False)
        time.sleep(0.2)  # the continuation comes after the first part ran out: EVENT_CODE_UNDERFLOW
        r.tx(tone(2000), start_of_burst=False)
        time.sleep(0.05)
        assert r.counters.underflows == 1


def test_lost_tx_packets_are_sequence_errors():
    with open_radio("usrp", args="type=virtual,link=seq,tx_packet_loss=0.5,seed=3", sample_rate_hz=1e6) as r:
        r.tx(tone(20 * 2040))
        r.wait_tx_done()
        lost = r._usrp.virtual_stats()["tx_seq_errors"]
        assert 3 <= lost <= 17 and r.counters.dropped_samples == lost  # one per lost packet, as UHD reports


def test_virtual_device_follows_uhd_stream_command_semantics():
    """The uhd.types/uhd.usrp subset as UHD documents it: num_done, late commands, error codes, strings."""
    u = vu.usrp.MultiUSRP("type=virtual,link=semantics")
    u.set_rx_rate(1e6, 0)
    u.set_time_now(vu.types.TimeSpec(0.0))
    st = u.get_rx_stream(vu.usrp.StreamArgs("fc32", "sc16"))
    md = vu.types.RXMetadata()
    buf = np.zeros((1, 4000), np.complex64)
    cmd = vu.types.StreamCMD(vu.types.StreamMode.num_done)
    cmd.num_samps = 3000
    cmd.stream_now = False
    cmd.time_spec = u.get_time_now() + 0.02
    st.issue_stream_cmd(cmd)
    got, t_first, eob = 0, None, False
    while not eob:
        k = st.recv(buf, md, 1.0)
        assert md.error_code == vu.types.RXMetadataErrorCode.none, md.strerror()
        t_first = md.time_spec.get_real_secs() if t_first is None else t_first
        got += k
        eob = md.end_of_burst
    assert got == 3000 and t_first == pytest.approx(cmd.time_spec.get_real_secs())
    assert st.recv(buf, md, 0.05) == 0 and md.error_code == vu.types.RXMetadataErrorCode.timeout
    late = vu.types.StreamCMD(vu.types.StreamMode.start_cont)
    late.stream_now = False
    late.time_spec = vu.types.TimeSpec(0.001)  # already past
    st.issue_stream_cmd(late)
    assert st.recv(buf, md, 0.5) == 0 and md.strerror() == "ERROR_CODE_LATE_COMMAND"
    with pytest.raises(RuntimeError, match="fc32"):
        u.get_rx_stream(vu.usrp.StreamArgs("sc16", "sc16"))
    with pytest.raises(AttributeError):
        md.error_code = vu.types.RXMetadataErrorCode.none  # read-only, as in UHD's bindings
    del u


def test_crystal_offset_is_a_consistent_cfo_between_two_devices():
    fc, fs = 2.44e9, 1e6
    with open_radio("usrp", args="type=virtual,ppm=3,link=cfo", sample_rate_hz=fs, center_freq_hz=fc,
                    tx_gain_db=60) as tx, \
            open_radio("usrp", args="type=virtual,ppm=-2,link=cfo", sample_rate_hz=fs, center_freq_hz=fc,
                       rx_gain_db=40) as rx:
        rx.rx(1000)
        tx.tx(tone(40_000, 0.5, 0.0))  # a carrier at 0 Hz offset
        y = rx.rx(200_000)
    k = find_burst(y, 40_000)
    seg = y[k + 1000:k + 39_000]
    f = np.angle(np.sum(seg[1:] * np.conj(seg[:-1]))) / (2 * np.pi) * fs
    assert f == pytest.approx(5e-6 * fc, abs=50)  # (3 - (-2)) ppm of 2.44 GHz = 12.2 kHz


def test_crystal_offset_is_also_a_sampling_clock_offset():
    """Two markers 200 000 TX samples apart arrive (1 + e_rx) / (1 + e_tx) x as far apart: 100 ppm -> 20 samples."""
    fs = 1e6
    chips = np.random.default_rng(5).integers(0, 2, 256)
    marker = (0.6 * chips).astype(np.complex64)  # on-off keyed: its envelope survives any CFO
    burst = np.zeros(200_256, np.complex64)
    burst[:256] = marker
    burst[200_000:] = marker
    big = "num_recv_frames=128"  # 261k samples: a busy CI machine must not make this test about overflows
    # Real time on a shared 2-core machine: a device that runs dry, or a channel process that falls behind,
    # puts a gap between the markers (a real radio would too). Seen once in ~20 full-suite runs (+34
    # samples); the measurement is repeated, up to 3 times, and one clean run must give the exact spacing.
    expected = 200_000 * (1 - 50e-6) / (1 + 50e-6)  # 100 ppm between the clocks: 20 samples fewer
    spacings = []
    for _attempt in range(3):
        with open_radio("usrp", args="type=virtual,ppm=50,link=sco", sample_rate_hz=fs, center_freq_hz=100e6,
                        tx_gain_db=70, profile="b200") as tx, \
                open_radio("usrp", args=f"type=virtual,ppm=-50,link=sco,{big}", sample_rate_hz=fs,
                           center_freq_hz=100e6, rx_gain_db=40, profile="b200", rx_queue_s=1.0) as rx:
            rx.rx(1000)
            tx.tx(burst)
            y = rx.rx(500_000)
            tx.wait_tx_done()
            clean = rx.counters.dropped_samples == 0 and tx.counters.underflows == 0
        # the CFO (100 ppm of 100 MHz = 10 kHz) does not change the envelope: correlate envelopes
        env = np.abs(y) - np.abs(y).mean()
        c = np.correlate(env, chips - chips.mean(), mode="valid")
        first = int(np.argmax(c))
        second = first + 199_900 + int(np.argmax(c[first + 199_900:first + 200_100]))
        spacings.append(second - first)
        if clean and abs(second - first - expected) <= 2:
            break
    assert abs(spacings[-1] - expected) <= 2, f"marker spacings {spacings}, expected {expected:.1f}"


def test_a_late_start_command_is_counted_and_the_stream_starts_anyway():
    with open_radio("usrp", args="type=virtual,link=late", start_delay_s=0.0) as r:
        y = r.rx(5000)  # the timed start reaches the device after its time: ERROR_CODE_LATE_COMMAND
        assert y.size == 5000 and r.counters.late_bursts == 1
        assert [c[:2] for c in r._usrp.virtual_stats()["stream_commands"]] == [("start_cont", False),
                                                                               ("start_cont", True)]


def test_verb_with_an_absent_usrp_fails_cleanly(capsys):
    pytest.importorskip("uhd", reason="UHD Python API not installed (apt install python3-uhd)")
    from sdr_tosc.cli import main

    assert main(["tx", "--radio", "usrp", "--uri", "type=b200", "--images", "1"]) == 1
    err = capsys.readouterr().err
    assert "no USRP found for device args 'type=b200'" in err and "device_args" not in err


def test_one_receiver_per_shared_channel():
    with open_radio("usrp", args="type=virtual,link=two,serial=A") as a, \
            open_radio("usrp", args="type=virtual,link=two,serial=B") as b:
        a.rx(100)
        with pytest.raises(RuntimeError, match="device A already receives on the channel link='two'"):
            b.rx(100)


def test_bad_settings_and_device_args_are_named():
    with pytest.raises(ValueError, match=r"sample_rate_hz=5e\+07 is outside the n210 profile's range"):
        open_radio("usrp", args="type=virtual", profile="n210", sample_rate_hz=50e6)
    with pytest.raises(ValueError, match="rx_gain_db"):
        open_radio("usrp", args="type=virtual", profile="b200", rx_gain_db=90)
    with pytest.raises(ValueError, match="device arg 'colour=red' not understood"):
        open_radio("usrp", args="type=virtual,colour=red")
    with pytest.raises(ValueError, match="ppm=500"):
        open_radio("usrp", args="type=virtual,ppm=500")


def test_timeout_raises_instead_of_hanging():
    with open_radio("usrp", args="type=virtual,out=tcp://127.0.0.1:9", timeout_s=0.3, start_delay_s=0.0) as r:
        with pytest.raises((TimeoutError, RuntimeError), match="USRP"):
            r.rx(10)


def test_absent_usrp_with_the_real_uhd():
    pytest.importorskip("uhd", reason="UHD Python API not installed (apt install python3-uhd)")
    with pytest.raises(ConnectionError, match=r"no USRP found for device args 'type=b200'.*uhd_find_devices"):
        open_radio("usrp", args="type=b200", profile="b200")


def test_virtual_types_match_the_real_uhd_names_and_codes():
    uhd = pytest.importorskip("uhd", reason="UHD Python API not installed (apt install python3-uhd)")
    for enum_name in ("RXMetadataErrorCode", "TXMetadataEventCode", "StreamMode"):
        real = getattr(uhd.types, enum_name).__members__
        ours = getattr(vu.types, enum_name).__members__
        assert set(ours) == set(real), enum_name
        if enum_name != "StreamMode":
            assert {k: int(v) for k, v in ours.items()} == {k: int(v) for k, v in real.items()}
    assert vu.types.RXMetadata().strerror() == uhd.types.RXMetadata().strerror()
    # what the backend writes into UHD's objects exists and is writable there too
    for t in (uhd.types, vu.types):
        cmd = t.StreamCMD(t.StreamMode.start_cont)
        cmd.stream_now, cmd.time_spec, cmd.num_samps = False, t.TimeSpec(0.5), 0
        md = t.TXMetadata()
        md.start_of_burst, md.end_of_burst, md.has_time_spec, md.time_spec = True, True, True, t.TimeSpec(1.25)
        assert md.time_spec.get_real_secs() == 1.25 and (t.TimeSpec(1.0) + 0.5).get_real_secs() == 1.5
        rx, tx_async = t.RXMetadata(), t.TXAsyncMetadata()
        assert rx.error_code == t.RXMetadataErrorCode.none and not rx.has_time_spec and tx_async.channel == 0
    args = uhd.usrp.StreamArgs("fc32", "sc16")
    args.channels = [0]
    assert (args.cpu_format, args.otw_format) == ("fc32", "sc16")


@pytest.mark.hardware("usrp")
def test_real_usrp_rx_tx_smoke():
    """Run with a USRP attached: pytest --hardware usrp tests/test_usrp.py"""
    with open_radio("usrp", args="", sample_rate_hz=1e6, center_freq_hz=2.44e9, rx_gain_db=20, tx_gain_db=30,
                    profile="b210") as r:
        for _ in range(200):  # one streamer: would crash with recv_num_samps after a few hundred calls
            y = r.rx(10_000)
            assert y.dtype == np.complex64 and np.isfinite(y).all() and np.abs(y).max() <= 1.01
        r.tx(tone(10_000, 0.3))
        assert r.counters.rx_samples == 2_000_000
