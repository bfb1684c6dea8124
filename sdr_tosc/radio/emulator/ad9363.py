"""One emulated ADALM-Pluto (AD9363): its IIO attributes and driver rules, its DMA buffers, its RF front end.

Device rules enforced as the ad9361 driver does (names and ranges from the captured context of a real
Pluto, firmware v0.32, as shipped in libiio's test resources):

* LOs 325-3800 MHz (``frequency_available [325000000 1 3800000000]``); writes outside are rejected.
* Sample rates 2.083-61.44 Msps without a FIR; below 2.083 Msps only with a FIR loaded and enabled whose
  decimation allows it (pyadi-iio loads one: ``filter_fir_config`` reads back ``FIR Rx: taps,dec Tx:
  taps,int`` as the driver prints it).
* RX ``hardwaregain`` is writable only in ``manual`` gain mode (the part boots in ``slow_attack`` AGC, which
  steps the gain to keep peaks between -20 and -3 dBFS);
  its range depends on the band (gain tables: -1..73 dB below 1.3 GHz, -3..71 dB to 4 GHz, -10..62 above).
* TX ``hardwaregain`` is the attenuation, -89.75..0 dB in 0.25 dB steps.
* ``xo_correction`` (39.992-40.008 MHz) tells the driver the true reference frequency: set to the crystal's
  real frequency it cancels the crystal error (CFO and sample-clock offset).
* ``powerdown`` of the TX LO silences the transmitter, LO leakage included.

Physical model (units: "air dBFS" = dB relative to the TX output at full scale and 0 dB attenuation,
``TX_MAX_DBM``): TX DAC codes ``|x| = 1`` <-> 2**14; the radio adds its TX LO leakage (a carrier at the
TX LO, ``leakage_dbc`` below full scale) whenever the TX LO is powered. The air (the channel simulator)
adds path loss, carrier and clock offsets and the receiver's input-referred noise: thermal noise
(-174 dBm/Hz + noise figure) plus the ADC's own noise divided by the RX gain, so the effective noise figure
rises at low RX gain. The RX front end amplifies by the RX gain (full scale at ``ADC_FS_DBM - gain`` dBm
at the input), adds IQ imbalance and DC offset (small with the driver's tracking loops on, as at boot),
and the 12-bit ADC rounds and clips to +-2**11 codes.

DMA (paced by :class:`~sdr_tosc.radio.emulator.air.EmulatedPlutos`' sample clock): RX fills blocks of the
buffer size; with ``BUFFERS_COUNT`` blocks waiting the next block is dropped and the overflow bit set
(0x80000088 bit 2 of the ADC core, write 1 to clear) -- when the oldest waiting block has been readable for
the queue's whole duration (a block the emulator itself delivered late does not count against the client). TX plays queued buffers back to back; ``WRITEBUF``
blocks while ``BUFFERS_COUNT`` buffers wait; a buffer queued after the previous one ran out sets the DAC
core's underflow bit (0x80000088 bit 0); closing the TX buffer stops what is still queued.
"""

from __future__ import annotations

import errno
import math
import re
import threading
import time
from collections import deque

import numpy as np

from ...channel import impairments as imp
from .context import ADC, DAC, MIN_RATE_NO_FIR, PHY, XO_NOMINAL_HZ, pluto_devices
from .iiod import Chan, Dev, context_xml

TX_FULL_SCALE_CODES = 2**14
RX_FULL_SCALE_CODES = 2**11
STATUS_REG = 0x80000088
ADC_OVERFLOW_BIT = 0x4
DAC_UNDERFLOW_BIT = 0x1
TX_MAX_DBM = 7.0  # TX output at full scale, 0 dB attenuation
ADC_FS_DBM = 0.0  # input level that reaches ADC full scale at 0 dB RX gain
ADC_NOISE_DBFS = -66.0  # ADC noise over the sample bandwidth (12-bit converter with its driver)


def rx_gain_range(lo_hz: float) -> tuple[float, float]:
    """Manual RX gain range of the AD9361/3 gain tables for the band of ``lo_hz``."""
    if lo_hz < 1_300_000_000:
        return (-1.0, 73.0)
    if lo_hz <= 4_000_000_000:
        return (-3.0, 71.0)
    return (-10.0, 62.0)


def thermal_noise_dbm(sample_rate_hz: float, noise_figure_db: float) -> float:
    return -174.0 + 10.0 * math.log10(sample_rate_hz) + noise_figure_db


def _num(text: str) -> float:
    m = re.match(r"\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)", text)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    return float(m.group(1))


class PlutoModel:
    """State of one emulated Pluto. Thread-safe: the iiod handler threads and the sample clock share it."""

    def __init__(self, index: int = 0, *, ppm: float = 0.0, seed: int = 0, noise_figure_db: float = 3.5,
                 leakage_dbc: float | None = None, serial: str | None = None,
                 fs: int = 30_720_000, lo_hz: int = 2_440_000_000) -> None:
        rng = np.random.default_rng([int(seed), int(index), 0x9105])
        self.index = index
        self.ppm = float(ppm)  # crystal error (the true reference is 40 MHz * (1 + ppm 1e-6))
        self.noise_figure_db = float(noise_figure_db)
        self.leakage = (10 ** ((leakage_dbc if leakage_dbc is not None else rng.uniform(-45, -38)) / 20)
                        * np.exp(2j * np.pi * rng.random()))
        self.dc = 10 ** (rng.uniform(-62, -56) / 20) * np.exp(2j * np.pi * rng.random())  # with tracking on
        self.iq_db, self.iq_deg = float(rng.uniform(-0.08, 0.08)), float(rng.uniform(-0.4, 0.4))
        self.serial = serial or f"sdrtosc{index:04d}{int(rng.integers(1 << 32)):08x}"
        self.cond = threading.Condition()
        self.devices = {d.id: d for d in pluto_devices(fs, lo_hz, lo_hz)}
        self.fir = {"rx_taps": 0, "rx_dec": 0, "tx_taps": 0, "tx_int": 0}
        self.registers = {ADC: {STATUS_REG: 0}, DAC: {STATUS_REG: 0}, PHY: {}}
        self.reg_addr = {ADC: STATUS_REG, DAC: STATUS_REG, PHY: 0}
        self.kernel_buffers = {ADC: 4, DAC: 4}
        self.counts = {"overflows": 0, "underflows": 0, "rx_blocks": 0, "tx_buffers": 0, "dropped_blocks": 0}
        # RX DMA
        self.rx_open = False
        self.rx_block = 0
        self.rx_fill: np.ndarray | None = None
        self.rx_fill_n = 0
        self.rx_ready: deque[tuple[float, np.ndarray]] = deque()  # (when it became readable, block)
        self.rx_mask = 0x3
        # TX DMA: queue of [start index, samples] on this radio's DAC sample counter
        self.tx_open = False
        self.tx_block = 0
        self.tx_cyclic: np.ndarray | None = None
        self.tx_cyc_pos = 0
        self.tx_queue: deque[list] = deque()
        self.tx_end = 0  # DAC index where the queue ends
        self.tx_pos = 0  # first DAC sample not yet produced (the clock runs ahead of wall time by the lead)
        self.tx_had_data = False
        self.changed = True  # settings that the air must follow (LOs, rates, gains, powerdown, xo)
        self._update_rates()

    # -- derived settings --------------------------------------------------------------------------
    def _phy(self, cid: str, output: bool) -> dict[str, str]:
        return self.devices[PHY].chan(cid, output).attrs

    @property
    def sample_rate_hz(self) -> float:
        return _num(self._phy("voltage0", False)["sampling_frequency"])

    def clock_error(self) -> float:
        """Relative error of every clock derived from the reference, after the driver's xo_correction."""
        xo = _num(self.devices[PHY].attrs["xo_correction"])
        return (1.0 + self.ppm * 1e-6) * XO_NOMINAL_HZ / xo - 1.0

    def true_rate_hz(self) -> float:
        return self.sample_rate_hz * (1.0 + self.clock_error())

    def lo_hz(self, tx: bool) -> float:
        """True LO frequency (with the crystal error)."""
        return _num(self._phy("altvoltage1" if tx else "altvoltage0", True)["frequency"]) * (1.0 + self.clock_error())

    def lo_on(self, tx: bool) -> bool:
        return self._phy("altvoltage1" if tx else "altvoltage0", True)["powerdown"].strip() in ("0", "")

    def tx_gain_db(self) -> float:
        return _num(self._phy("voltage0", True)["hardwaregain"])

    def rx_gain_db(self) -> float:
        return _num(self._phy("voltage0", False)["hardwaregain"])

    def input_noise_dbfs(self) -> float:
        """Receiver noise referred to the antenna, in air dBFS: thermal (NF) plus ADC noise over the gain."""
        th = thermal_noise_dbm(self.sample_rate_hz, self.noise_figure_db) - TX_MAX_DBM
        adc = ADC_NOISE_DBFS + ADC_FS_DBM - self.rx_gain_db() - TX_MAX_DBM
        return 10 * math.log10(10 ** (th / 10) + 10 ** (adc / 10))

    def rx_scale(self) -> float:
        """Air amplitude -> ADC full-scale units."""
        return 10 ** ((self.rx_gain_db() + TX_MAX_DBM - ADC_FS_DBM) / 20)

    def context_xml(self) -> str:
        attrs = {"hw_model": "Analog Devices PlutoSDR Rev.C (Z7010-AD9363A) [emulated by sdr-tosc]",
                 "hw_model_variant": "0", "hw_serial": self.serial, "fw_version": "v0.32",
                 "ad9361-phy,xo_correction": str(XO_NOMINAL_HZ), "ad9361-phy,model": "ad9363a",
                 "local,kernel": "emulated"}
        return context_xml(list(self.devices.values()), "sdr-tosc emulated ADALM-Pluto (AD9363)", attrs)

    def _update_rates(self) -> None:
        phy = self.devices[PHY]
        fs = int(self.sample_rate_hz)
        dec = max(1, self.fir["rx_dec"]) if self._fir_on() else 1
        adc = 4 * fs * dec if fs * dec >= MIN_RATE_NO_FIR else 4 * MIN_RATE_NO_FIR
        phy.attrs["rx_path_rates"] = f"BBPLL:983040000 ADC:{adc} R2:{adc // 2} R1:{adc // 4} RF:{fs * dec} RXSAMP:{fs}"
        phy.attrs["tx_path_rates"] = f"BBPLL:983040000 DAC:{adc} T2:{adc // 2} T1:{adc // 4} TF:{fs * dec} TXSAMP:{fs}"
        for d in (DAC, ADC):
            for c in self.devices[d].channels:
                if "sampling_frequency" in c.attrs:
                    c.attrs["sampling_frequency"] = str(fs)
        self._phy("voltage0", True)["sampling_frequency"] = str(fs)

    def _fir_on(self) -> bool:
        return self._phy("out", False)["voltage_filter_fir_en"].strip() == "1" and self.fir["rx_dec"] > 0

    # -- attributes ----------------------------------------------------------------------------------
    def can_open(self, dev: str) -> bool:
        return dev in (ADC, DAC)

    def can_write(self, dev: str) -> bool:
        return dev == DAC and self.tx_open

    def set_kernel_buffers(self, dev: str, n: int) -> None:
        with self.cond:
            self.kernel_buffers[dev] = int(n)

    def _store(self, dev: Dev, kind: str, chan: Chan | None) -> dict[str, str]:
        if chan is not None:
            return chan.attrs
        return {"DEBUG": dev.debug, "BUFFER": dev.buffer_attrs}.get(kind, dev.attrs)

    def read_attr(self, dev_id: str, kind: str, chan_id: str | None, attr: str) -> str:
        with self.cond:
            dev = self.devices[dev_id]
            if kind == "DEBUG" and attr == "direct_reg_access":
                return f"0x{self.registers.get(dev_id, {}).get(self.reg_addr.get(dev_id, 0), 0):X}"
            chan = dev.chan(chan_id, kind == "OUTPUT") if chan_id else None
            store = self._store(dev, kind, chan)
            if attr not in store:
                raise KeyError(attr)
            if dev_id == PHY and attr == "filter_fir_config":
                f = self.fir
                return f"FIR Rx: {f['rx_taps']},{f['rx_dec']} Tx: {f['tx_taps']},{f['tx_int']}"
            if attr == "rssi" and chan is not None and not chan.output:
                return f"{max(0.0, -(self.input_noise_dbfs() + TX_MAX_DBM)) - 30:.2f} dB"
            return store[attr]

    def write_attr(self, dev_id: str, kind: str, chan_id: str | None, attr: str, value: str) -> None:
        """Apply one attribute write; ValueError = -EINVAL (out of range), PermissionError = -EPERM."""
        with self.cond:
            self._write(dev_id, kind, chan_id, attr, value)
            if dev_id == PHY and kind != "DEBUG":
                self.changed = True  # the air re-reads LOs, rates, gains, powerdown, xo_correction

    def _write(self, dev_id: str, kind: str, chan_id: str | None, attr: str, value: str) -> None:
        dev = self.devices[dev_id]
        if kind == "DEBUG" and attr == "direct_reg_access":
            parts = value.split()
            addr = int(parts[0], 0)
            self.reg_addr[dev_id] = addr
            if len(parts) > 1:  # "addr value": status bits are write-1-to-clear
                regs = self.registers.setdefault(dev_id, {})
                regs[addr] = regs.get(addr, 0) & ~int(parts[1], 0) if addr == STATUS_REG else int(parts[1], 0)
                if addr == STATUS_REG and int(parts[1], 0):
                    self.counts["status_clears"] = self.counts.get("status_clears", 0) + 1
            return
        chan = dev.chan(chan_id, kind == "OUTPUT") if chan_id else None
        store = self._store(dev, kind, chan)
        if attr not in store:
            raise KeyError(attr)
        if dev_id != PHY:
            store[attr] = value
            return
        if attr == "hardwaregain" and chan is not None:
            v = _num(value)
            if chan.output:
                if not -89.75 <= v <= 0.0:
                    raise ValueError(value)
                v = round(v * 4) / 4
            else:
                if store["gain_control_mode"] != "manual":
                    raise ValueError("RX gain is set by the AGC; select manual gain_control_mode first")
                lo, hi = rx_gain_range(_num(self._phy("altvoltage0", True)["frequency"]))
                if not lo <= v <= hi:
                    raise ValueError(value)
                v = float(round(v))
            value = f"{v:.6f} dB"
        elif attr == "frequency" and chan is not None and chan.id.startswith("altvoltage"):
            v = int(_num(value))
            if not 325_000_000 <= v <= 3_800_000_000:
                raise ValueError(value)
            value = str(v)
            if chan.name == "RX_LO":
                lo, hi = rx_gain_range(v)
                rx = self._phy("voltage0", False)
                rx["hardwaregain_available"] = f"[{lo:g} 1 {hi:g}]"
                g = _num(rx["hardwaregain"])
                rx["hardwaregain"] = f"{min(hi, max(lo, g)):.6f} dB"
        elif attr == "powerdown":
            value = "1" if int(_num(value)) else "0"
        elif attr == "sampling_frequency":
            v = int(_num(value))
            fir_min = math.ceil(MIN_RATE_NO_FIR / max(1, self.fir["rx_dec"])) if self._fir_on() else MIN_RATE_NO_FIR
            if not fir_min <= v <= 61_440_000:
                raise ValueError(value)
            for c in (self._phy("voltage0", False), self._phy("voltage0", True)):
                c["sampling_frequency"] = str(v)
            self._update_rates()
            return
        elif attr == "voltage_filter_fir_en":
            on = int(_num(value)) != 0
            if on and self.fir["rx_taps"] == 0:
                raise ValueError("no FIR loaded")
            if not on and self.sample_rate_hz < MIN_RATE_NO_FIR:
                raise ValueError("the FIR is needed at this rate")
            value = "1" if on else "0"
            for c in (self._phy("voltage0", False), self._phy("voltage0", True)):
                c["filter_fir_en"] = value
            store[attr] = value
            self._update_rates()
            return
        elif attr == "filter_fir_config":
            self._load_fir(value)
            return
        elif attr == "gain_control_mode":
            if value not in ("manual", "fast_attack", "slow_attack", "hybrid"):
                raise ValueError(value)
        elif attr == "xo_correction":
            v = int(_num(value))
            if not 39_992_000 <= v <= 40_008_000:
                raise ValueError(value)
            value = str(v)
        elif attr in ("rf_bandwidth",):
            v = int(_num(value))
            if not 200_000 <= v <= (40_000_000 if chan is not None and chan.output else 56_000_000):
                raise ValueError(value)
            value = str(v)
        store[attr] = value

    def _load_fir(self, text: str) -> None:
        """Parse a FIR file as the driver does: ``RX 3 GAIN -6 DEC 4``, ``TX 3 GAIN 0 INT 4``, taps."""
        rx = re.search(r"^\s*RX\s+\d+\s+GAIN\s+-?\d+\s+DEC\s+(\d+)", text, re.M | re.I)
        tx = re.search(r"^\s*TX\s+\d+\s+GAIN\s+-?\d+\s+INT\s+(\d+)", text, re.M | re.I)
        taps = [ln for ln in text.splitlines() if re.match(r"^\s*-?\d+\s*,\s*-?\d+\s*$", ln)]
        if not rx or not tx or not taps or len(taps) > 128 or len(taps) % 16:
            raise ValueError("bad FIR configuration")
        dec, interp = int(rx.group(1)), int(tx.group(1))
        if dec not in (1, 2, 4) or interp not in (1, 2, 4):
            raise ValueError("FIR decimation/interpolation must be 1, 2 or 4")
        self.fir = {"rx_taps": len(taps), "rx_dec": dec, "tx_taps": len(taps), "tx_int": interp}

    # -- DMA -----------------------------------------------------------------------------------------
    def open_dev(self, dev: str, samples: int, mask: int, cyclic: bool) -> None:
        if samples < 1 or samples > 1 << 24 or bin(mask).count("1") != 2:
            raise ValueError("this emulator streams both I and Q of one channel")
        with self.cond:
            if dev == ADC:
                if self.rx_open:
                    raise BlockingIOError("RX buffer already open")
                self.rx_open, self.rx_block, self.rx_mask = True, samples, mask
                self.rx_fill, self.rx_fill_n = np.empty(2 * samples, np.int16), 0
                self.rx_ready.clear()
            else:
                if self.tx_open:
                    raise BlockingIOError("TX buffer already open")
                self.tx_open, self.tx_block = True, samples
                self.tx_is_cyclic = bool(cyclic)
            self.cond.notify_all()

    def close_dev(self, dev: str) -> None:
        with self.cond:
            if dev == ADC:
                self.rx_open = False
                self.rx_ready.clear()
                self.rx_fill = None
            elif dev == DAC:
                self.tx_open = False
                self.tx_cyclic = None
                self.tx_queue.clear()  # what has not been played yet never goes out
                self.tx_end = min(self.tx_end, self.tx_pos)
            self.cond.notify_all()

    def read_block(self, dev: str, nbytes: int, timeout_s: float = 5.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            if dev != ADC or not self.rx_open:
                raise OSError(errno.EBADF, "RX buffer not open")
            if nbytes != 4 * self.rx_block:
                raise OSError(errno.EINVAL, "read size differs from the buffer size")
            while not self.rx_ready:
                left = deadline - time.monotonic()
                if left <= 0 or not self.rx_open:
                    raise OSError(errno.ETIMEDOUT, "no RX data")
                self.cond.wait(left)
            _, block = self.rx_ready.popleft()
            self.counts["rx_blocks"] += 1
            return self.rx_mask, block.tobytes()

    def write_block(self, dev: str, data: bytes, timeout_s: float = 30.0) -> None:
        codes = np.frombuffer(data, "<i2").astype(np.int32)
        codes = (codes >> 4) << 4  # the DAC ignores the 4 LSBs of the MSB-aligned 12-bit value
        x = ((codes[0::2] + 1j * codes[1::2]) / TX_FULL_SCALE_CODES).astype(np.complex64)
        deadline = time.monotonic() + timeout_s
        with self.cond:
            if not self.tx_open:
                raise OSError(errno.EBADF, "TX buffer not open")
            if self.tx_is_cyclic:
                self.tx_cyclic, self.tx_cyc_pos = x, 0
                self.tx_end = max(self.tx_end, self.tx_pos)
                self.counts["tx_buffers"] += 1
                return
            # the kernel holds BUFFERS_COUNT buffers; a push waits while they are all queued
            while self.tx_end - self.tx_pos >= self.kernel_buffers[DAC] * max(self.tx_block, 1):
                left = deadline - time.monotonic()
                if left <= 0 or not self.tx_open:
                    raise OSError(errno.ETIMEDOUT, "TX queue full")
                self.cond.wait(min(left, 0.5))
            if self.tx_had_data and self.tx_end < self.tx_pos:
                self.registers[DAC][STATUS_REG] |= DAC_UNDERFLOW_BIT  # the DMA ran dry before this buffer
                self.counts["underflows"] += 1
            start = max(self.tx_end, self.tx_pos)
            self.tx_queue.append([start, x])
            self.tx_end = start + x.size
            self.tx_had_data = True
            self.counts["tx_buffers"] += 1

    # -- the sample clock (called by the air) --------------------------------------------------------
    def produce_tx(self, n: int, build: bool = True) -> np.ndarray | None:
        """The next ``n`` DAC samples at TX baseband (LO leakage included); None when the TX LO is off
        (or ``build`` is False: nobody listens, the DAC only moves on)."""
        with self.cond:
            a, b = self.tx_pos, self.tx_pos + n
            self.tx_pos = b
            on = self.lo_on(tx=True) and build
            out = np.full(n, self.leakage, np.complex64) if on else None
            while self.tx_queue:
                start, x = self.tx_queue[0]
                if start >= b:
                    break
                lo, hi = max(start, a), min(start + x.size, b)
                if out is not None and hi > lo:
                    out[lo - a:hi - a] += x[lo - start:hi - start]
                if start + x.size <= b:
                    self.tx_queue.popleft()
                else:
                    break
            if self.tx_cyclic is not None:
                idx = (self.tx_cyc_pos + np.arange(n)) % self.tx_cyclic.size
                self.tx_cyc_pos = int((self.tx_cyc_pos + n) % self.tx_cyclic.size)
                if out is not None:
                    out += self.tx_cyclic[idx]
            self.cond.notify_all()
            if out is not None and not (self.tx_queue or self.tx_cyclic is not None) and abs(self.leakage) == 0:
                return None
            return out

    def deliver_rx(self, air: np.ndarray | None, n: int) -> None:
        """``n`` samples of this radio's air (None: nothing but its own noise was asked for) -> ADC -> DMA."""
        with self.cond:
            if not self.rx_open or self.rx_fill is None:
                return
            if air is None or not self.lo_on(tx=False):
                y = np.zeros(n, np.complex64)
            else:
                y = air * np.float32(self.rx_scale())
                # the driver's tracking loops (on at boot) keep the residuals small; switched off, the raw
                # front end shows: ~5x the IQ imbalance, ~20 dB more DC offset
                rx = self._phy("voltage0", False)
                k = 1.0 if rx["quadrature_tracking_en"].strip() == "1" else 5.0
                y = imp.iq_imbalance(y, k * self.iq_db, k * self.iq_deg)
            tracked = all(self._phy("voltage0", False)[a].strip() == "1"
                          for a in ("bb_dc_offset_tracking_en", "rf_dc_offset_tracking_en"))
            y += np.complex64(self.dc if tracked else 10.0 * self.dc)
            self._agc(y)
            codes = np.empty(2 * n, np.int16)
            np.clip(np.rint(y.view(np.float32) * RX_FULL_SCALE_CODES), -RX_FULL_SCALE_CODES,
                    RX_FULL_SCALE_CODES - 1, out=codes, casting="unsafe")
            k = 0
            while k < 2 * n:
                take = min(2 * n - k, self.rx_fill.size - self.rx_fill_n)
                self.rx_fill[self.rx_fill_n:self.rx_fill_n + take] = codes[k:k + take]
                self.rx_fill_n += take
                k += take
                if self.rx_fill_n == self.rx_fill.size:
                    now = time.monotonic()
                    # full queue: the client had the oldest block for the queue's whole duration and did
                    # not read it -> overflow; if the emulator itself delivered late, the queue stretches
                    span = self.kernel_buffers[ADC] * self.rx_block / max(self.sample_rate_hz, 1.0)
                    if len(self.rx_ready) >= self.kernel_buffers[ADC] and now - self.rx_ready[0][0] > span:
                        self.registers[ADC][STATUS_REG] |= ADC_OVERFLOW_BIT  # nobody read in time: lost
                        self.counts["overflows"] += 1
                        self.counts["dropped_blocks"] += 1
                    else:
                        self.rx_ready.append((now, self.rx_fill))
                        self.rx_fill = np.empty_like(self.rx_fill)
                    self.rx_fill_n = 0
            self.cond.notify_all()

    def _agc(self, y: np.ndarray) -> None:
        """The AD9361's gain control when not in manual mode, simplified: the gain steps down by 3 dB
        (fast_attack: 6) while peaks pass -3 dBFS and up by 1 dB while they stay under -20 dBFS."""
        rx = self._phy("voltage0", False)
        mode = rx["gain_control_mode"]
        if mode == "manual" or y.size == 0:
            return
        peak = float(np.max(np.abs(y.view(np.float32))))
        g = _num(rx["hardwaregain"])
        lo, hi = rx_gain_range(_num(self._phy("altvoltage0", True)["frequency"]))
        new = g - (6.0 if mode == "fast_attack" else 3.0) if peak > 0.7 else g + 1.0 if peak < 0.1 else g
        new = min(hi, max(lo, new))
        if new != g:
            rx["hardwaregain"] = f"{new:.6f} dB"
            self.changed = True

    def wants_rx(self) -> bool:
        return self.rx_open
