"""ADALM-Pluto backend through pyadi-iio (imported here only; ``pip install 'sdr-tosc[pluto]'``).

Scaling (the known 24 dB trap): samples are complex64 with full scale |x| <= 1. The AD9361/3 DAC takes
12-bit values MSB-aligned in int16, and ADI's convention (and pyadi-iio's examples) put |x| = 1 at 2**14
codes, so TX multiplies by 2**14. The ADC returns 12-bit values sign-extended in int16, so RX divides by
2**11. Using 2**15 or 2**11 on the wrong side costs 6 to 24 dB.

Other rules this backend follows: manual gain (AGC off); RX buffers are flushed after every
(re)configuration, since the kernel's DMA queue still holds blocks captured with the old settings; the TX
LO stays powered down until the first ``tx()`` (a receive-only Pluto radiates no LO leakage); a cyclic TX
buffer is destroyed before the next burst (pyadi-iio refuses to push into a live cyclic buffer); a
non-cyclic burst a little shorter than the TX buffer (down to half) is padded with zeros, and any other
length re-creates the buffer only after the burst still playing has ended (destroying a buffer stops its
DMA at once); the default
centre frequency is the profile's (2.44 GHz, ISM worldwide); ``xo_correction_hz`` exposes the reference
clock trim (40 MHz nominal) used to cancel a Pluto's frequency error; overflows are read from the ADC
core's status register (0x80000088 bit 2) after every RX buffer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .base import Radio

log = logging.getLogger(__name__)

TX_SCALE = 2.0**14  # |x| = 1 -> 2**14 DAC codes (12-bit MSB-aligned in int16, ADI convention)
RX_SCALE = 2.0**11  # 12-bit ADC sign-extended in int16 -> full scale 2**11
ADC_STATUS_REG = 0x80000088
ADC_OVERFLOW_BIT = 0x4
DAC_UNDERFLOW_BIT = 0x1
DEFAULT_URI = "ip:192.168.2.1"

INSTALL_HINT = ("install the Pluto stack: Debian/Ubuntu `apt install libiio0 libiio-utils`, then "
                "`pip install 'sdr-tosc[pluto]'` (pyadi-iio and pylibiio==0.25, matching libiio 0.24)")


def _import_adi():
    try:
        import adi  # noqa: F401 - pyadi-iio, which also imports libiio's bindings
    except (ImportError, OSError) as exc:
        raise ImportError(f"the pluto backend needs pyadi-iio and libiio ({exc}); {INSTALL_HINT}") from None
    return adi


class PlutoRadio(Radio):
    """An ADALM-Pluto (or anything speaking libiio's protocol with a Pluto context, like the emulator).

    ``uri``: ``ip:192.168.2.1`` (default over USB-Ethernet), ``ip:pluto.local``, ``usb:1.2.5`` or the
    emulator's ``ip:127.0.0.1:PORT``. ``tx_gain_db`` is the TX attenuation as a negative number
    (-89.75..0), ``rx_gain_db`` the manual RX gain (-3..71 dB). ``rx_buffer_samples`` is the libiio
    buffer size (one DMA block), ``kernel_buffers`` how many blocks the kernel queues (lower = less stale
    data and latency, higher = fewer overflows), ``flush_buffers`` how many blocks to discard after each
    (re)configuration. ``tx_cyclic=True`` repeats every burst until the next one.
    """

    kind = "pluto"
    default_profile = "pluto"
    uri_help = "Pluto URI: ip:192.168.2.1, usb:1.2.5, or an emulated Pluto's ip:127.0.0.1:PORT"
    packages = (("pyadi-iio", "pyadi-iio", "adi"), ("pylibiio", "pylibiio", "iio"))

    @classmethod
    def probe(cls) -> Any:
        import importlib

        from .base import BackendStatus

        try:
            iio = importlib.import_module("iio")
        except (ImportError, OSError) as exc:
            return BackendStatus("pluto", False, f"libiio Python bindings not usable ({exc}); install the C "
                                 "library (Debian/Ubuntu: apt install libiio0 libiio-utils) and pip install "
                                 "'sdr-tosc[pluto]' (pyadi-iio, pylibiio==0.25)")
        try:
            importlib.import_module("adi")
        except (ImportError, OSError) as exc:
            return BackendStatus("pluto", False, f"pyadi-iio not importable ({exc}); pip install 'sdr-tosc[pluto]'")
        ver = getattr(iio, "version", None)
        libver = ".".join(str(x) for x in ver[:2]) if isinstance(ver, tuple) else str(ver)
        return BackendStatus("pluto", True, f"libiio {libver} found, pyadi-iio importable")

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        *,
        center_freq_hz: float | None = None,
        sample_rate_hz: float = 1e6,
        tx_gain_db: float = -10.0,
        rx_gain_db: float = 30.0,
        rf_bandwidth_hz: float | None = None,
        rx_buffer_samples: int = 1 << 15,
        kernel_buffers: int = 4,
        flush_buffers: int = 1,
        tx_cyclic: bool = False,
        xo_correction_hz: int | None = None,
        profile: str = "pluto",
        check_full_scale: bool = True,
    ) -> None:
        if center_freq_hz is None:
            from .profiles import default_center_freq_hz

            center_freq_hz = default_center_freq_hz(profile)
        super().__init__(profile, center_freq_hz=center_freq_hz, sample_rate_hz=sample_rate_hz,
                         tx_gain_db=tx_gain_db, rx_gain_db=rx_gain_db, check_full_scale=check_full_scale)
        if not isinstance(uri, str) or not uri.startswith(("ip:", "usb:", "local:", "serial:")):
            raise ValueError(f"bad Pluto uri {uri!r}: use ip:192.168.2.1, ip:pluto.local, usb:BUS.DEV.IF or, "
                             "for the emulator, ip:127.0.0.1:PORT (list devices with `iio_info -s`)")
        for name, val, lo, hi in (("rx_buffer_samples", rx_buffer_samples, 16, 1 << 24),
                                  ("kernel_buffers", kernel_buffers, 1, 64), ("flush_buffers", flush_buffers, 0, 64)):
            if isinstance(val, bool) or not isinstance(val, int) or not lo <= val <= hi:
                raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {val!r}")
        if rf_bandwidth_hz is not None and not 200e3 <= rf_bandwidth_hz <= 56e6:
            raise ValueError(f"rf_bandwidth_hz={rf_bandwidth_hz:g} is outside the AD936x range [200e3, 56e6]")
        adi = _import_adi()
        self.uri = uri
        self.rx_buffer_samples = rx_buffer_samples
        self.kernel_buffers = kernel_buffers
        self.flush_buffers = flush_buffers
        self.tx_cyclic = bool(tx_cyclic)
        self._rf_bandwidth_hz = rf_bandwidth_hz
        self._residual = np.zeros(0, np.complex64)
        self._stale = True
        self._tx_len: int | None = None
        self._tx_busy_until = 0.0  # monotonic time when the bursts queued so far have left the DAC
        self._tx_streaming = False
        self._tx_powered = False
        try:
            self._sdr = adi.Pluto(uri)
        except Exception as exc:  # noqa: BLE001 - pyadi-iio raises a bare Exception("No device found")
            raise ConnectionError(
                f"no ADALM-Pluto found at {uri} ({exc}). Check it is plugged in and powered; list reachable "
                f"IIO devices with `iio_info -s`, and test this one with `iio_info -u {uri}` "
                "(default USB-Ethernet address 192.168.2.1; a second Pluto needs its own subnet, see "
                "hardware/README.md)"
            ) from None
        try:
            self._configure_all()
            if xo_correction_hz is not None:
                self.xo_correction_hz = xo_correction_hz
        except Exception:
            self._close()
            raise

    # -- configuration --------------------------------------------------------------------------------
    def _configure_all(self) -> None:
        s = self._sdr
        s.gain_control_mode_chan0 = "manual"
        s.sample_rate = int(round(self.sample_rate_hz))
        bw = int(self._rf_bandwidth_hz or min(max(self.sample_rate_hz, 200e3), 56e6))
        s.rx_rf_bandwidth = bw
        s.tx_rf_bandwidth = min(bw, int(40e6))
        s.rx_lo = int(round(self.center_freq_hz))
        s.tx_lo = int(round(self.center_freq_hz))
        s.rx_hardwaregain_chan0 = float(self.rx_gain_db)
        s.tx_hardwaregain_chan0 = float(self.tx_gain_db)
        s.rx_buffer_size = self.rx_buffer_samples
        self._set_tx_powered(self._tx_powered)
        self._invalidate_rx()

    def _set_tx_powered(self, on: bool) -> None:
        """Power the TX LO up or down (``out_altvoltage1_TX_LO_powerdown``): down, nothing is radiated."""
        ch = self._phy().find_channel("altvoltage1", True)
        if ch is not None and "powerdown" in ch.attrs:
            ch.attrs["powerdown"].value = "0" if on else "1"
        self._tx_powered = bool(on)

    @property
    def tx_powered(self) -> bool:
        """Whether the TX LO is powered (it is from the first ``tx()`` on; receive-only radios keep it off)."""
        return self._tx_powered

    def power_down_tx(self) -> None:
        """Stop transmitting and power the TX LO down (no LO leakage); the next ``tx()`` powers it up."""
        self._check_open()
        self._sdr.tx_destroy_buffer()
        self._tx_len = None
        self._set_tx_powered(False)

    def _invalidate_rx(self) -> None:
        """Settings changed: blocks already queued by the kernel are stale; re-open the RX buffer."""
        self._sdr.rx_destroy_buffer()
        self._residual = np.zeros(0, np.complex64)
        self._stale = True

    def _apply_center_freq_hz(self, value: float) -> None:
        self._sdr.rx_lo = int(round(value))
        self._sdr.tx_lo = int(round(value))
        self._invalidate_rx()

    def _apply_sample_rate_hz(self, value: float) -> None:
        self._sdr.sample_rate = int(round(value))
        if self._rf_bandwidth_hz is None:
            self._sdr.rx_rf_bandwidth = int(min(max(value, 200e3), 56e6))
            self._sdr.tx_rf_bandwidth = int(min(max(value, 200e3), 40e6))
        self._invalidate_rx()

    def _apply_tx_gain_db(self, value: float) -> None:
        self._sdr.tx_hardwaregain_chan0 = float(value)
        self._invalidate_rx()

    def _apply_rx_gain_db(self, value: float) -> None:
        self._sdr.rx_hardwaregain_chan0 = float(value)
        self._invalidate_rx()

    @property
    def xo_correction_hz(self) -> int:
        """The AD9361 reference clock frequency the driver assumes (nominal 40 MHz); trim it to cancel CFO."""
        return int(float(self._phy().attrs["xo_correction"].value))

    @xo_correction_hz.setter
    def xo_correction_hz(self, value: int) -> None:
        self._check_open()
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 39_992_000 <= value <= 40_008_000:
            raise ValueError(f"xo_correction_hz must be an int within 40 MHz +- 200 ppm [39992000, 40008000], got {value!r}")
        self._phy().attrs["xo_correction"].value = str(int(value))
        # re-tune: the LO synthesizers follow the new reference only when their frequency is written
        self._sdr.rx_lo = int(round(self.center_freq_hz))
        self._sdr.tx_lo = int(round(self.center_freq_hz))
        self._invalidate_rx()

    def _phy(self):
        return self._sdr.ctx.find_device("ad9361-phy")

    @property
    def rf_bandwidth_hz(self) -> int:
        return int(self._sdr.rx_rf_bandwidth)

    # -- TX -------------------------------------------------------------------------------------------
    def _tx(self, iq: np.ndarray, cyclic: bool | None = None, **_: Any) -> None:
        """Send one burst. Cyclic: repeats until the next tx()/close(). Codes = round(iq * 2**14)."""
        cyclic = self.tx_cyclic if cyclic is None else bool(cyclic)
        s = self._sdr
        if not self._tx_powered:
            self._set_tx_powered(True)
        self._tx_streaming = time.monotonic() < self._tx_busy_until
        n = iq.size
        if (s._txbuf and not s.tx_cyclic_buffer and not cyclic and self._tx_len is not None
                and self._tx_len // 2 <= n < self._tx_len):
            n = self._tx_len  # pad with zeros: keeps the buffer (and the burst still playing) alive
        codes = np.zeros(n, np.complex128)
        codes.real[: iq.size] = np.rint(iq.real * TX_SCALE)
        codes.imag[: iq.size] = np.rint(iq.imag * TX_SCALE)
        # a live cyclic buffer must be destroyed first; a non-cyclic one only if it is too short, and only
        # once what it holds has been played (destroying a buffer stops its DMA mid-burst)
        if s._txbuf and (s.tx_cyclic_buffer or cyclic or self._tx_len != n):
            if not s.tx_cyclic_buffer:
                self._wait_tx_done()
            s.tx_destroy_buffer()
        if not s._txbuf:  # pyadi-iio refuses to change the cyclic flag while a buffer exists
            s.tx_cyclic_buffer = cyclic
        s.tx(codes)
        self._tx_len = n
        now = time.monotonic()
        self._tx_busy_until = max(now, self._tx_busy_until) + n / self.sample_rate_hz
        self._check_underflow()

    def _wait_tx_done(self, margin_s: float = 0.05) -> None:
        """Sleep until the queued bursts have left the DAC (plus the pipeline latency ``margin_s``)."""
        left = self._tx_busy_until + margin_s - time.monotonic()
        if left > 0:
            time.sleep(left)

    def _check_underflow(self) -> None:
        """DAC core status (0x80000088 bit 0 = underflow): set when a buffer came after the previous one
        had run out. Bursts sent one per ``tx()`` call always leave gaps, so this counts only streaming
        callers that refill late (more than one buffer queued means the caller intended continuity)."""
        try:
            status = self._sdr._txdac.reg_read(ADC_STATUS_REG)
        except (OSError, AttributeError, ValueError):
            return
        if status & DAC_UNDERFLOW_BIT:
            self._sdr._txdac.reg_write(ADC_STATUS_REG, DAC_UNDERFLOW_BIT)
            if self._tx_streaming:
                self._counters.underflows += 1
                log.warning("Pluto TX underflow: the DAC ran out of samples between two buffers")

    def stop_tx(self) -> None:
        """Stop a cyclic transmission (destroys the TX buffer; the TX LO stays on, see power_down_tx)."""
        self._check_open()
        self._sdr.tx_destroy_buffer()
        self._tx_len = None

    @property
    def tx_busy_s(self) -> float:
        """Seconds until the bursts queued so far have been played (0 when idle)."""
        return max(0.0, self._tx_busy_until - time.monotonic())

    # -- RX -------------------------------------------------------------------------------------------
    def _refill(self) -> np.ndarray:
        raw = self._sdr.rx()  # complex128 of int16 I/Q codes, one libiio buffer
        self._check_overflow()
        return (raw / RX_SCALE).astype(np.complex64)

    def _rx(self, n: int) -> np.ndarray:
        if self._stale:
            s = self._sdr
            if s._rxadc is not None and self.kernel_buffers:
                try:
                    s._rxadc.set_kernel_buffers_count(self.kernel_buffers)
                except (OSError, AttributeError) as exc:
                    log.debug("cannot set kernel buffer count: %s", exc)
            for _ in range(self.flush_buffers):
                self._refill()
            self._stale = False
        parts = [self._residual]
        have = self._residual.size
        while have < n:
            block = self._refill()
            parts.append(block)
            have += block.size
        data = np.concatenate(parts)
        self._residual = data[n:]
        return data[:n]

    def _check_overflow(self) -> None:
        """Read the ADC core status (0x80000088 bit 2 = overflow), count it and clear it (write 1)."""
        try:
            status = self._sdr._rxadc.reg_read(ADC_STATUS_REG)
        except (OSError, AttributeError, ValueError):
            return
        if status & ADC_OVERFLOW_BIT:
            self._counters.overflows += 1
            self._sdr._rxadc.reg_write(ADC_STATUS_REG, ADC_OVERFLOW_BIT)
            log.warning("Pluto RX overflow: samples were lost (read faster, lower the rate, or more kernel_buffers)")

    def _close(self) -> None:
        s = getattr(self, "_sdr", None)
        if s is None:
            return
        # destroying the TX buffer cuts a burst still playing: let what was queued go out first (bounded)
        busy = self.tx_busy_s if getattr(self, "_tx_busy_until", None) is not None else 0.0
        if busy > 0:
            time.sleep(min(busy + 0.05, 5.0))
        for fn in (s.tx_destroy_buffer, s.rx_destroy_buffer):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort while closing
                pass
        try:
            s._ctx = None
        except AttributeError:
            pass
        self._sdr = None
