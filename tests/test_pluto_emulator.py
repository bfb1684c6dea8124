"""Pluto backend through the real pyadi-iio + libiio client code against the in-repo iiod emulator."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("adi", reason="pyadi-iio not installed: pip install 'sdr-tosc[pluto]'")

from sdr_tosc.radio import open_radio  # noqa: E402
from sdr_tosc.radio.iiod_emulator import IiodEmulator  # noqa: E402

pytestmark = pytest.mark.timeout(60)
FS = 1e6


@pytest.fixture()
def emu():
    with IiodEmulator(noise_dbfs=-50.0, seed=1, realtime_overflow=False) as e:
        yield e


def tone(n: int, cycles_per_sample: float = 1 / 16, amp: float = 1.0) -> np.ndarray:
    return (amp * np.exp(2j * np.pi * cycles_per_sample * np.arange(n))).astype(np.complex64)


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.abs(x) ** 2)))


def test_iio_info_sees_a_pluto(emu):
    if shutil.which("iio_info") is None:
        pytest.skip("iio_info not installed (Debian: apt install libiio-utils)")
    out = subprocess.run(["iio_info", "-u", emu.uri], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    for name in ("ad9361-phy", "cf-ad9361-lpc", "cf-ad9361-dds-core-lpc", "PlutoSDR"):
        assert name in out.stdout


def test_full_scale_tone_arrives_at_full_scale_not_24_db_off(emu):
    with open_radio("pluto", uri=emu.uri, sample_rate_hz=FS, center_freq_hz=915e6, tx_gain_db=0.0,
                    rx_gain_db=0.0, rx_buffer_samples=4096, tx_cyclic=True) as r:
        x = tone(4096)
        r.tx(x)
        y = r.rx(8192)
        assert y.dtype == np.complex64 and y.shape == (8192,)
        assert power_db(y) == pytest.approx(0.0, abs=0.3)  # 2**14 out, 2**11 back: unity
        assert np.abs(y).max() <= np.sqrt(2) * 1.0005
        # the tone really is the tone (frequency and purity), not just the right power
        spec = np.abs(np.fft.fft(y[:4096])) ** 2
        assert np.argmax(spec) == 256 and spec[256] / spec.sum() > 0.99
        # attenuation on TX goes through the driver (hardwaregain) and shows up 1:1
        r.tx_gain_db = -20.0
        assert power_db(r.rx(4096)) == pytest.approx(-20.0, abs=0.3)
        assert emu.model.devices["iio:device0"].chan("voltage0", True).attrs["hardwaregain"].startswith("-20")


def test_settings_reach_the_driver_and_stale_buffers_are_flushed(emu):
    with open_radio("pluto", uri=emu.uri, sample_rate_hz=2e6, center_freq_hz=2.45e9, tx_gain_db=0.0,
                    rx_gain_db=0.0, rx_buffer_samples=2048, tx_cyclic=True) as r:
        phy = emu.model.devices["iio:device0"]
        assert phy.chan("voltage0", False).attrs["gain_control_mode"] == "manual"
        assert phy.chan("altvoltage0", True).attrs["frequency"] == "2450000000"
        assert phy.chan("voltage0", False).attrs["sampling_frequency"] == "2000000"
        r.tx(tone(2048, amp=0.25))
        assert power_db(r.rx(2048)) == pytest.approx(-12.0, abs=0.3)
        # the kernel still queues blocks captured at the old gain: without a flush they would come next
        r.rx_gain_db = 6.0
        assert power_db(r.rx(2048)) == pytest.approx(-6.0, abs=0.3)
        r.center_freq_hz = 868e6
        assert phy.chan("altvoltage1", True).attrs["frequency"] == "868000000"
        r.xo_correction_hz = 40_000_100
        assert r.xo_correction_hz == 40_000_100
        with pytest.raises(ValueError, match="xo_correction_hz"):
            r.xo_correction_hz = 41_000_000
        with pytest.raises(ValueError, match=r"rx_gain_db=80 is outside the pluto profile's range \[-3, 71\]"):
            r.rx_gain_db = 80


def test_stale_buffer_trap_exists_without_the_flush(emu):
    """Raw pyadi-iio without a flush reads blocks captured before a gain change (what the backend avoids)."""
    import adi

    s = adi.Pluto(emu.uri)
    try:
        s.gain_control_mode_chan0 = "manual"
        s.rx_hardwaregain_chan0 = 0
        s.tx_hardwaregain_chan0 = 0
        s.rx_buffer_size = 1024
        s.tx_cyclic_buffer = True
        s.tx(tone(1024) * 2**13)
        s.rx()
        s.rx_hardwaregain_chan0 = 10
        stale = s.rx() / 2**11
        assert power_db(stale) == pytest.approx(-6.0, abs=0.3)  # still the old 0 dB gain
    finally:
        s.tx_destroy_buffer()
        s.rx_destroy_buffer()


def test_non_cyclic_bursts_of_different_lengths_and_cyclic_replacement(emu):
    with open_radio("pluto", uri=emu.uri, sample_rate_hz=FS, tx_gain_db=0.0, rx_gain_db=0.0,
                    rx_buffer_samples=4096, flush_buffers=0) as r:
        r.rx(4096)  # opens the RX buffer: 4 kernel blocks are queued, captured before the burst
        r.tx(tone(1000, amp=0.5))
        r.tx(tone(3000, amp=0.5))  # a new length re-creates the TX buffer
        y = r.rx(4 * 4096 + 4096)
        loud = np.flatnonzero(np.abs(y) > 0.25)
        assert loud.size == pytest.approx(4000, abs=20)
        assert loud[0] == pytest.approx(4 * 4096, abs=5)  # latency of the kernel's DMA queue
        r.tx(tone(500, amp=0.25), cyclic=True)
        r.tx(tone(512, amp=0.5), cyclic=True)  # replaces the cyclic waveform (destroy first)
        r.stop_tx()
    assert emu.model.cyclic is None


def test_overflow_is_read_from_the_adc_status_register():
    with IiodEmulator(noise_dbfs=-50.0, realtime_overflow=True) as emu, \
            open_radio("pluto", uri=emu.uri, sample_rate_hz=61.44e6, rx_buffer_samples=1024, kernel_buffers=1,
                       flush_buffers=0) as r:
        import time

        r.rx(1024)
        time.sleep(0.2)  # far longer than one 1024-sample block at 61.44 Msps: the DMA overflowed
        r.rx(1024)
        assert r.counters.overflows >= 1
        assert emu.model.registers["iio:device3"][0x80000088] & 0x4 == 0  # cleared by the backend


def test_absent_pluto_says_what_was_looked_for_and_how_to_check():
    with pytest.raises(ConnectionError, match=r"no ADALM-Pluto found at ip:127.0.0.1:1 .*iio_info -s"):
        open_radio("pluto", uri="ip:127.0.0.1:1")
    with pytest.raises(ValueError, match="bad Pluto uri"):
        open_radio("pluto", uri="192.168.2.1")
    with pytest.raises(ValueError, match="sample_rate_hz=100000 is outside the pluto profile"):
        open_radio("pluto", uri="ip:127.0.0.1:1", sample_rate_hz=1e5)


def test_emulator_cli_serves_iio_info():
    if shutil.which("iio_info") is None:
        pytest.skip("iio_info not installed (Debian: apt install libiio-utils)")
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "sdr_tosc.radio.iiod_emulator", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "listening on ip:127.0.0.1:" in proc.stdout.readline()  # handshake
        out = subprocess.run(["iio_info", "-u", f"ip:127.0.0.1:{port}"], capture_output=True, text=True, timeout=20)
        assert "cf-ad9361-lpc" in out.stdout
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.hardware("pluto")
def test_real_pluto_cabled_or_antenna_loopback():
    """With a Pluto attached (TX -> 30 dB attenuator -> RX, or antennas):
    SDR_TOSC_PLUTO_URI=ip:192.168.2.1 pytest --hardware pluto tests/test_pluto_emulator.py"""
    import os

    uri = os.environ.get("SDR_TOSC_PLUTO_URI", "ip:192.168.2.1")
    with open_radio("pluto", uri=uri, sample_rate_hz=1e6, center_freq_hz=915e6, tx_gain_db=-10, rx_gain_db=30,
                    rx_buffer_samples=1 << 14, tx_cyclic=True) as r:
        r.tx(tone(1 << 14, 1 / 16, 0.5))
        y = r.rx(1 << 15)
        spec = np.abs(np.fft.fft(y[-(1 << 14):])) ** 2
        peak = int(np.argmax(spec))
        assert peak == pytest.approx(1 << 10, abs=64)  # the tone (CFO within a few kHz)
        assert np.abs(y).max() < 1.0  # not clipping: lower rx_gain_db if this fails
        r.stop_tx()
