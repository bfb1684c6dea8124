"""An emulated ADALM-Pluto: libiio's network protocol (iiod, as spoken by libiio 0.24) on loopback.

It serves a Pluto-like IIO context (``ad9361-phy``, ``cf-ad9361-lpc`` RX ADC, ``cf-ad9361-dds-core-lpc``
TX DAC, ``xadc``) so that the *real* pyadi-iio and libiio client code (and ``iio_info``) run against it:
that is how CI exercises the Pluto backend, and how users can try ``open_radio("pluto", ...)`` without a
Pluto::

    python -m sdr_tosc.radio.iiod_emulator --port 30431      # then: iio_info -u ip:127.0.0.1:30431

Signal model: the TX DAC is looped to the RX ADC with noise, with the scaling of a real AD9361 path:
TX takes int16 codes with the 12-bit value MSB-aligned (``|x| = 1`` <-> 2**14 codes, the level ADI's
examples use), RX returns 12-bit samples sign-extended in int16 (full scale 2**11). With 0 dB TX
attenuation and 0 dB RX gain the loop is calibrated to unity, so a full-scale tone sent comes back at full
scale: a wrong scale in a client shows up as the 24 dB error it would cost on hardware. The loop gain
follows ``tx hardwaregain + rx hardwaregain - path_loss_db`` and the ADC clips at full scale. RX kernel
buffers behave like the real DMA queue: ``BUFFERS_COUNT`` blocks are captured when the buffer is opened and
one more after each read, so data read after a settings change is stale until the buffer is re-opened (the
trap the Pluto backend avoids by flushing). Cyclic TX buffers repeat until closed; the ADC overflow bit
(register 0x80000088, bit 2, write 1 to clear, via ``direct_reg_access``) is set when the client reads
slower than real time would allow.

Protocol (text, one command per line, replies are a decimal integer line, negative errno on error):
``VERSION``, ``ZPRINT`` (answered -22 so the client falls back to) ``PRINT``, ``TIMEOUT``, ``OPEN``,
``CLOSE``, ``READ``, ``WRITE``, ``READBUF``, ``WRITEBUF``, ``SET dev BUFFERS_COUNT``, ``GETTRIG``,
``SETTRIG``, ``EXIT``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

import numpy as np

log = logging.getLogger(__name__)

IIOD_PORT = 30431
TX_FULL_SCALE_CODES = 2**14  # |x| = 1 on TX (12-bit DAC value MSB-aligned in int16, 6 dB back-off)
RX_FULL_SCALE_CODES = 2**11  # 12-bit ADC, sign-extended in int16
ADC_STATUS_REG = 0x80000088
ADC_OVERFLOW_BIT = 0x4

PHY, XADC, DAC, ADC = "iio:device0", "iio:device1", "iio:device2", "iio:device3"

_DTD = (
    '<!DOCTYPE context [<!ELEMENT context (device | context-attribute)*><!ELEMENT context-attribute EMPTY>'
    "<!ELEMENT device (channel | attribute | debug-attribute | buffer-attribute)*>"
    "<!ELEMENT channel (scan-element?, attribute*)><!ELEMENT attribute EMPTY><!ELEMENT scan-element EMPTY>"
    "<!ELEMENT debug-attribute EMPTY><!ELEMENT buffer-attribute EMPTY>"
    "<!ATTLIST context name CDATA #REQUIRED description CDATA #IMPLIED>"
    "<!ATTLIST context-attribute name CDATA #REQUIRED value CDATA #REQUIRED>"
    "<!ATTLIST device id CDATA #REQUIRED name CDATA #IMPLIED>"
    "<!ATTLIST channel id CDATA #REQUIRED type (input|output) #REQUIRED name CDATA #IMPLIED>"
    "<!ATTLIST scan-element index CDATA #REQUIRED format CDATA #REQUIRED scale CDATA #IMPLIED>"
    "<!ATTLIST attribute name CDATA #REQUIRED filename CDATA #IMPLIED value CDATA #IMPLIED>"
    "<!ATTLIST debug-attribute name CDATA #REQUIRED value CDATA #IMPLIED>"
    "<!ATTLIST buffer-attribute name CDATA #REQUIRED value CDATA #IMPLIED>]>"
)


@dataclass
class Chan:
    id: str
    output: bool
    attrs: dict[str, str]
    name: str | None = None
    scan: tuple[int, str] | None = None  # (index, format)


@dataclass
class Dev:
    id: str
    name: str
    channels: list[Chan]
    attrs: dict[str, str] = field(default_factory=dict)
    debug: dict[str, str] = field(default_factory=dict)
    buffer_attrs: dict[str, str] = field(default_factory=dict)

    def chan(self, cid: str, output: bool) -> Chan | None:
        for c in self.channels:
            if c.id == cid and c.output == output:
                return c
        return None


def _rate_attrs(fs: int) -> dict[str, str]:
    return {"sampling_frequency": str(fs), "sampling_frequency_available": "[2083333 1 61440000]"}


def pluto_devices(fs: int = 30_720_000, rx_lo: int = 2_400_000_000, tx_lo: int = 2_450_000_000) -> list[Dev]:
    """The devices, channels and attribute values of an ADALM-Pluto (rev C, AD9363, firmware v0.3x)."""
    rx0 = {
        "bb_dc_offset_tracking_en": "1", "filter_fir_en": "0", "gain_control_mode": "slow_attack",
        "gain_control_mode_available": "manual fast_attack slow_attack hybrid", "hardwaregain": "71.000000 dB",
        "hardwaregain_available": "[-3 1 71]", "quadrature_tracking_en": "1", "rf_bandwidth": "18000000",
        "rf_bandwidth_available": "[200000 1 56000000]", "rf_dc_offset_tracking_en": "1",
        "rf_port_select": "A_BALANCED", "rf_port_select_available": "A_BALANCED B_BALANCED C_BALANCED",
        "rssi": "115.00 dB", **_rate_attrs(fs),
    }
    tx0 = {
        "filter_fir_en": "0", "hardwaregain": "-10.000000 dB", "hardwaregain_available": "[-89.750000 0.250000 0.000000]",
        "rf_bandwidth": "18000000", "rf_bandwidth_available": "[200000 1 40000000]", "rf_port_select": "A",
        "rf_port_select_available": "A B", "rssi": "0.00 dB", **_rate_attrs(fs),
    }

    def lo(freq: int) -> dict[str, str]:
        return {"external": "0", "fastlock_load": "0", "fastlock_store": "0", "frequency": str(freq),
                "frequency_available": "[70000000 1 6000000000]", "powerdown": "0"}

    phy = Dev(PHY, "ad9361-phy", [
        Chan("altvoltage1", True, lo(tx_lo), "TX_LO"),
        Chan("voltage0", False, rx0),
        Chan("altvoltage0", True, lo(rx_lo), "RX_LO"),
        Chan("temp0", False, {"input": "36842"}),
        Chan("voltage0", True, tx0),
        Chan("out", False, {"voltage_filter_fir_en": "0"}),
    ], attrs={
        "calib_mode": "auto", "calib_mode_available": "auto manual manual_tx_quad tx_quad rf_dc",
        "ensm_mode": "fdd", "ensm_mode_available": "sleep wait alert fdd pinctrl pinctrl_fdd",
        "filter_fir_config": "FIR Rx: 0,0 Tx: 0,0", "rx_path_rates": "", "tx_path_rates": "",
        "trx_rate_governor": "nominal", "trx_rate_governor_available": "nominal highest_osr",
        "xo_correction": "40000000", "xo_correction_available": "[39992000 1 40008000]",
    }, debug={"loopback": "0", "direct_reg_access": "0x0"})
    xadc = Dev(XADC, "xadc", [Chan("temp0", False, {"offset": "-2219", "raw": "2700", "scale": "123.040771484"})],
               attrs={"sampling_frequency": "961538"})
    dds = {"phase": "0", "raw": "1", "sampling_frequency": str(fs), "scale": "0.000000", "frequency": "9279985"}
    dac_ch = {"calibphase": "0.000000", "calibscale": "1.000000", "sampling_frequency": str(fs),
              "sampling_frequency_available": f"{fs} {fs // 8} "}
    dac = Dev(DAC, "cf-ad9361-dds-core-lpc", [
        Chan("voltage0", True, dict(dac_ch), scan=(0, "le:S16/16>>0")),
        Chan("voltage1", True, dict(dac_ch), scan=(1, "le:S16/16>>0")),
        Chan("altvoltage3", True, dict(dds), "TX1_Q_F2"),
        Chan("altvoltage1", True, dict(dds), "TX1_I_F2"),
        Chan("altvoltage0", True, dict(dds), "TX1_I_F1"),
        Chan("altvoltage2", True, dict(dds), "TX1_Q_F1"),
    ], debug={"direct_reg_access": "0x0"},
        buffer_attrs={"data_available": "0", "length_align_bytes": "8", "watermark": "2048"})
    adc_ch = {"calibbias": "0", "calibphase": "0.000000", "calibscale": "1.000000", "sampling_frequency": str(fs),
              "sampling_frequency_available": f"{fs} {fs // 8} "}
    adc = Dev(ADC, "cf-ad9361-lpc", [
        Chan("voltage0", False, dict(adc_ch), scan=(0, "le:S12/16>>0")),
        Chan("voltage1", False, dict(adc_ch), scan=(1, "le:S12/16>>0")),
    ], debug={"direct_reg_access": "0x0"},
        buffer_attrs={"data_available": "0", "length_align_bytes": "8", "watermark": "2048"})
    return [phy, xadc, dac, adc]


def context_xml(devices: list[Dev], description: str) -> str:
    """The context description as libiio 0.24's iiod sends it for ``PRINT``."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>', _DTD,
             f'<context name="network" description={quoteattr(description)} >']
    ctx_attrs = {
        "hw_model": "Analog Devices PlutoSDR Rev.C (Z7010-AD9363A) [emulated by sdr-tosc]",
        "hw_model_variant": "0", "hw_serial": "sdrtosc-emulated-0001", "fw_version": "v0.35",
        "ad9361-phy,xo_correction": "40000000", "ad9361-phy,model": "ad9363a", "local,kernel": "emulated",
    }
    parts += [f"<context-attribute name={quoteattr(k)} value={quoteattr(v)} />" for k, v in ctx_attrs.items()]
    for d in devices:
        parts.append(f"<device id={quoteattr(d.id)} name={quoteattr(d.name)} >")
        for c in d.channels:
            kind = "output" if c.output else "input"
            name = f" name={quoteattr(c.name)}" if c.name else ""
            parts.append(f"<channel id={quoteattr(c.id)}{name} type=\"{kind}\" >")
            if c.scan:
                parts.append(f'<scan-element index="{c.scan[0]}" format="{c.scan[1]}" scale="1.000000" />')
            prefix = "out" if c.output else "in"
            for a in c.attrs:
                fn = f"{prefix}_{c.id}_{a}" if c.id != "out" else f"in_out_{a}"
                parts.append(f"<attribute name={quoteattr(a)} filename={quoteattr(fn)} />")
            parts.append("</channel>")
        parts += [f"<attribute name={quoteattr(a)} />" for a in d.attrs]
        parts += [f"<debug-attribute name={quoteattr(a)} />" for a in d.debug]
        parts += [f"<buffer-attribute name={quoteattr(a)} />" for a in d.buffer_attrs]
        parts.append("</device>")
    parts.append("</context>")
    return "".join(parts)


def _num(text: str) -> float:
    m = re.match(r"\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)", text)
    if not m:
        raise ValueError(f"not a number: {text!r}")
    return float(m.group(1))


class PlutoModel:
    """Shared state of the emulated Pluto: attributes, the TX->RX loop, kernel buffers, registers."""

    def __init__(self, noise_dbfs: float = -60.0, path_loss_db: float = 0.0, seed: int = 0,
                 realtime_overflow: bool = True) -> None:
        self.lock = threading.RLock()
        self.devices = {d.id: d for d in pluto_devices()}
        self.noise_dbfs = float(noise_dbfs)
        self.path_loss_db = float(path_loss_db)
        self.rng = np.random.default_rng(seed)
        self.realtime_overflow = realtime_overflow
        self.tx_queue: list[np.ndarray] = []  # non-cyclic TX samples waiting to be "on air" (full scale)
        self.cyclic: np.ndarray | None = None
        self.cyclic_pos = 0
        self.open: dict[str, dict] = {}  # dev id -> {"samples", "mask", "cyclic"}
        self.kernel_buffers = {ADC: 4, DAC: 4}
        self.rx_fifo: list[np.ndarray] = []
        self.last_read_t: float | None = None
        self.registers = {ADC: {ADC_STATUS_REG: 0}, DAC: {ADC_STATUS_REG: 0}, PHY: {}}
        self.reg_addr = {ADC: ADC_STATUS_REG, DAC: ADC_STATUS_REG, PHY: 0}
        self.counts = {"readbuf": 0, "writebuf": 0, "open": 0, "close": 0, "flushes": 0}
        self._update_rates()

    # -- attributes -----------------------------------------------------------------------------------
    def _update_rates(self) -> None:
        phy = self.devices[PHY]
        fs = int(_num(phy.chan("voltage0", False).attrs["sampling_frequency"]))
        phy.attrs["rx_path_rates"] = f"BBPLL:983040000 ADC:{4 * fs} R2:{2 * fs} R1:{2 * fs} RF:{fs} RXSAMP:{fs}"
        phy.attrs["tx_path_rates"] = f"BBPLL:983040000 DAC:{4 * fs} T2:{2 * fs} T1:{2 * fs} TF:{fs} TXSAMP:{fs}"
        for d in (DAC, ADC):
            for c in self.devices[d].channels:
                if "sampling_frequency" in c.attrs:
                    c.attrs["sampling_frequency"] = str(fs)
        phy.chan("voltage0", True).attrs["sampling_frequency"] = str(fs)

    @property
    def sample_rate_hz(self) -> float:
        return _num(self.devices[PHY].chan("voltage0", False).attrs["sampling_frequency"])

    def loop_gain_db(self) -> float:
        phy = self.devices[PHY]
        tx = _num(phy.chan("voltage0", True).attrs["hardwaregain"])
        rx = _num(phy.chan("voltage0", False).attrs["hardwaregain"])
        return tx + rx - self.path_loss_db

    def _attr_store(self, dev: Dev, kind: str, chan: Chan | None) -> dict[str, str]:
        if chan is not None:
            return chan.attrs
        return {"DEBUG": dev.debug, "BUFFER": dev.buffer_attrs}.get(kind, dev.attrs)

    def read_attr(self, dev_id: str, kind: str, chan_id: str | None, attr: str) -> str:
        dev = self.devices[dev_id]
        if kind == "DEBUG" and attr == "direct_reg_access":
            addr = self.reg_addr.get(dev_id, 0)
            return f"0x{self.registers.get(dev_id, {}).get(addr, 0):X}"
        chan = dev.chan(chan_id, kind == "OUTPUT") if chan_id else None
        store = self._attr_store(dev, kind, chan)
        if attr not in store:
            raise KeyError(attr)
        if attr == "rssi" and chan is not None and not chan.output:
            return f"{max(0.0, -self.noise_dbfs - 10):.2f} dB"
        return store[attr]

    def write_attr(self, dev_id: str, kind: str, chan_id: str | None, attr: str, value: str) -> None:
        dev = self.devices[dev_id]
        if kind == "DEBUG" and attr == "direct_reg_access":
            parts = value.split()
            addr = int(parts[0], 0)
            self.reg_addr[dev_id] = addr
            if len(parts) > 1:  # "addr value": write; status bits are write-1-to-clear
                regs = self.registers.setdefault(dev_id, {})
                if addr == ADC_STATUS_REG:
                    regs[addr] = regs.get(addr, 0) & ~int(parts[1], 0)
                else:
                    regs[addr] = int(parts[1], 0)
            return
        chan = dev.chan(chan_id, kind == "OUTPUT") if chan_id else None
        store = self._attr_store(dev, kind, chan)
        if attr not in store:
            raise KeyError(attr)
        if attr == "hardwaregain":
            v = _num(value)
            lo, hi = (-89.75, 0.0) if chan.output else (-3.0, 71.0)
            if not lo <= v <= hi:
                raise ValueError(value)
            value = f"{v:.6f} dB"
        elif attr == "frequency" and chan is not None and chan.id.startswith("altvoltage") and dev_id == PHY:
            v = int(_num(value))
            if not 70_000_000 <= v <= 6_000_000_000:
                raise ValueError(value)
            value = str(v)
        elif attr == "sampling_frequency" and dev_id == PHY:
            v = int(_num(value))
            if not 520_833 <= v <= 61_440_000:
                raise ValueError(value)
            for c in (dev.chan("voltage0", False), dev.chan("voltage0", True)):
                c.attrs["sampling_frequency"] = str(v)
            self._update_rates()
            return
        elif attr == "gain_control_mode" and value not in ("manual", "fast_attack", "slow_attack", "hybrid"):
            raise ValueError(value)
        elif attr == "xo_correction":
            v = int(_num(value))
            if not 39_992_000 <= v <= 40_008_000:
                raise ValueError(value)
            value = str(v)
        store[attr] = value

    # -- signal path ----------------------------------------------------------------------------------
    def capture(self, n: int) -> np.ndarray:
        """``n`` RX samples as interleaved int16 I/Q: what the loop puts on the ADC right now."""
        s = np.zeros(n, np.complex128)
        k = 0
        while self.tx_queue and k < n:
            head = self.tx_queue[0]
            take = min(head.size, n - k)
            s[k : k + take] += head[:take]
            k += take
            if take == head.size:
                self.tx_queue.pop(0)
            else:
                self.tx_queue[0] = head[take:]
        if self.cyclic is not None and self.cyclic.size:
            idx = (self.cyclic_pos + np.arange(n)) % self.cyclic.size
            s += self.cyclic[idx]
            self.cyclic_pos = int((self.cyclic_pos + n) % self.cyclic.size)
        s *= 10.0 ** (self.loop_gain_db() / 20.0)
        sigma = np.sqrt(10.0 ** (self.noise_dbfs / 10.0) / 2.0)
        s += sigma * (self.rng.standard_normal(n) + 1j * self.rng.standard_normal(n))
        out = np.empty(2 * n, np.int16)
        out[0::2] = np.clip(np.rint(s.real * RX_FULL_SCALE_CODES), -2048, 2047)
        out[1::2] = np.clip(np.rint(s.imag * RX_FULL_SCALE_CODES), -2048, 2047)
        return out

    def transmit(self, codes: np.ndarray, cyclic: bool) -> None:
        """Interleaved int16 DAC codes (12-bit MSB-aligned) -> full-scale complex samples on air."""
        codes = (codes.astype(np.int32) >> 4) << 4  # the DAC ignores the 4 LSBs
        x = (codes[0::2] + 1j * codes[1::2]) / TX_FULL_SCALE_CODES
        if cyclic:
            self.cyclic, self.cyclic_pos = x, 0
        else:
            self.tx_queue.append(x)

    def open_dev(self, dev_id: str, samples: int, mask: int, cyclic: bool) -> None:
        self.open[dev_id] = {"samples": samples, "mask": mask, "cyclic": cyclic}
        self.counts["open"] += 1
        if dev_id == ADC:
            # the DMA starts filling every kernel block as soon as the buffer is enabled
            self.rx_fifo = [self.capture(samples) for _ in range(self.kernel_buffers[ADC])]
            self.last_read_t = time.monotonic()

    def close_dev(self, dev_id: str) -> None:
        st = self.open.pop(dev_id, None)
        self.counts["close"] += 1
        if dev_id == ADC:
            self.rx_fifo = []
        if dev_id == DAC and st and st["cyclic"]:
            self.cyclic = None

    def read_block(self, n_samples: int) -> np.ndarray:
        """The oldest captured kernel block (stale data after a settings change!), then capture one more."""
        now = time.monotonic()
        fs = self.sample_rate_hz
        if self.realtime_overflow and self.last_read_t is not None:
            budget = self.kernel_buffers[ADC] * n_samples / fs
            if now - self.last_read_t > budget + 0.05:
                self.registers[ADC][ADC_STATUS_REG] |= ADC_OVERFLOW_BIT
        self.last_read_t = now
        if not self.rx_fifo or self.rx_fifo[0].size != 2 * n_samples:
            self.rx_fifo = [self.capture(n_samples) for _ in range(self.kernel_buffers[ADC])]
        block = self.rx_fifo.pop(0)
        self.rx_fifo.append(self.capture(n_samples))
        self.counts["readbuf"] += 1
        return block


class _Handler(socketserver.StreamRequestHandler):
    """One client connection (libiio opens one for the context and one per opened device)."""

    server: _Server

    def handle(self) -> None:
        model = self.server.model
        while True:
            try:
                line = self.rfile.readline(4096)
            except (ConnectionError, OSError):
                return
            if not line:
                return
            text = line.decode("ascii", "replace").strip()
            if not text:
                continue
            words = text.split()
            cmd = words[0].upper()
            try:
                if cmd == "EXIT":
                    return
                with model.lock:
                    self._dispatch(model, cmd, words)
            except (ConnectionError, BrokenPipeError):
                return

    def _reply(self, value: int | str, payload: bytes | None = None) -> None:
        data = f"{value}\n".encode()
        if payload is not None:
            data += payload
        self.wfile.write(data)
        self.wfile.flush()

    def _dispatch(self, model: PlutoModel, cmd: str, w: list[str]) -> None:
        devs = model.devices
        if cmd == "VERSION":
            self.wfile.write(b"0.24.sdrtosc\n")
            self.wfile.flush()
        elif cmd == "ZPRINT":
            self._reply(-errno.EINVAL)
        elif cmd == "PRINT":
            xml = self.server.xml.encode()
            self._reply(len(xml), xml + b"\n")
        elif cmd == "HELP":
            self._reply(0)
        elif cmd == "TIMEOUT":
            self._reply(0)
        elif cmd in ("GETTRIG", "SETTRIG"):
            self._reply(-errno.ENOENT if len(w) > 1 and w[1] in devs else -errno.ENODEV)
        elif cmd == "SET" and len(w) == 4 and w[2].upper() == "BUFFERS_COUNT":
            if w[1] not in devs or not w[3].isdigit() or int(w[3]) < 1:
                self._reply(-errno.EINVAL)
            else:
                model.kernel_buffers[w[1]] = int(w[3])
                self._reply(0)
        elif cmd == "OPEN" and len(w) >= 4:
            if w[1] not in (ADC, DAC):
                self._reply(-errno.ENODEV)
                return
            model.open_dev(w[1], int(w[2]), int(w[3], 16), len(w) > 4 and w[4].upper() == "CYCLIC")
            self._reply(0)
        elif cmd == "CLOSE" and len(w) == 2:
            model.close_dev(w[1])
            self._reply(0)
        elif cmd == "READ":
            self._read_attr(model, w)
        elif cmd == "WRITE":
            self._write_attr(model, w)
        elif cmd == "READBUF" and len(w) == 3:
            self._readbuf(model, w[1], int(w[2]))
        elif cmd == "WRITEBUF" and len(w) == 3:
            self._writebuf(model, w[1], int(w[2]))
        else:
            log.debug("unsupported iiod command %r", w)
            self._reply(-errno.EINVAL)

    @staticmethod
    def _attr_target(w: list[str]) -> tuple[str, str, str | None, str, list[str]] | None:
        """Parse ``dev [INPUT|OUTPUT chn | DEBUG | BUFFER] attr [size]`` -> (dev, kind, chn, attr, rest)."""
        if len(w) < 3:
            return None
        dev = w[1]
        kind = w[2].upper()
        if kind in ("INPUT", "OUTPUT"):
            return (dev, kind, w[3], w[4], w[5:]) if len(w) >= 5 else None
        if kind in ("DEBUG", "BUFFER"):
            return (dev, kind, None, w[3], w[4:]) if len(w) >= 4 else None
        return dev, "DEVICE", None, w[2], w[3:]

    def _read_attr(self, model: PlutoModel, w: list[str]) -> None:
        t = self._attr_target(w)
        if t is None or t[0] not in model.devices:
            self._reply(-errno.ENODEV)
            return
        try:
            value = model.read_attr(t[0], t[1], t[2], t[3]).encode()
        except KeyError:
            self._reply(-errno.ENOENT)
            return
        self._reply(len(value), value + b"\n")

    def _write_attr(self, model: PlutoModel, w: list[str]) -> None:
        t = self._attr_target(w)
        if t is None or not t[4] or not t[4][0].isdigit():
            self._reply(-errno.EINVAL)
            return
        size = int(t[4][0])
        data = self.rfile.read(size)
        if t[0] not in model.devices:
            self._reply(-errno.ENODEV)
            return
        value = data.split(b"\0", 1)[0].decode("ascii", "replace").strip()
        try:
            model.write_attr(t[0], t[1], t[2], t[3], value)
        except KeyError:
            self._reply(-errno.ENOENT)
            return
        except ValueError:
            self._reply(-errno.EINVAL)
            return
        self._reply(size)

    def _readbuf(self, model: PlutoModel, dev: str, nbytes: int) -> None:
        st = model.open.get(dev)
        if dev != ADC or st is None:
            self._reply(-errno.EBADF)
            return
        nch = bin(st["mask"]).count("1")
        if nch != 2 or nbytes % 4:
            self._reply(-errno.EINVAL)
            return
        block = model.read_block(nbytes // 4).tobytes()
        words = 1  # 2 scan channels -> one 32-bit mask word
        mask = "".join(f"{(st['mask'] >> (32 * i)) & 0xFFFFFFFF:08x}" for i in reversed(range(words)))
        self._reply(len(block), mask.encode() + b"\n" + block)

    def _writebuf(self, model: PlutoModel, dev: str, nbytes: int) -> None:
        st = model.open.get(dev)
        if dev != DAC or st is None:
            self._reply(-errno.EBADF)
            return
        self._reply(0)
        data = self.rfile.read(nbytes)
        if len(data) != nbytes:
            return
        if bin(st["mask"]).count("1") == 2:
            model.transmit(np.frombuffer(data, "<i2"), st["cyclic"])
        model.counts["writebuf"] += 1
        self._reply(nbytes)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, model: PlutoModel, xml: str) -> None:
        self.model = model
        self.xml = xml
        super().__init__(addr, _Handler)


class IiodEmulator:
    """Run the emulated Pluto in background threads. ``uri`` is what pyadi-iio/libiio connect to::

        with IiodEmulator(noise_dbfs=-50) as emu:
            radio = open_radio("pluto", uri=emu.uri, ...)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, noise_dbfs: float = -60.0,
                 path_loss_db: float = 0.0, seed: int = 0, realtime_overflow: bool = True) -> None:
        self.model = PlutoModel(noise_dbfs=noise_dbfs, path_loss_db=path_loss_db, seed=seed,
                                realtime_overflow=realtime_overflow)
        self.host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_address[1]

    @property
    def uri(self) -> str:
        """libiio URI, e.g. ``ip:127.0.0.1:40123`` (libiio 0.24 accepts a port after the host)."""
        return f"ip:{self.host}:{self.port}"

    def start(self) -> IiodEmulator:
        if self._server is None:
            desc = "sdr-tosc emulated ADALM-Pluto (libiio network protocol on loopback)"
            self._server = _Server((self.host, self._port), self.model, context_xml(list(self.model.devices.values()), desc))
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="iiod-emulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> IiodEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdr_tosc.radio.iiod_emulator",
                                description="Emulated ADALM-Pluto speaking libiio's network protocol (iiod).",
                                epilog="then: iio_info -u ip:127.0.0.1:PORT, or open_radio('pluto', uri='ip:127.0.0.1:PORT')")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: loopback only)")
    p.add_argument("--port", type=int, default=IIOD_PORT, help="TCP port (default %(default)s; 0 = a free one)")
    p.add_argument("--noise-dbfs", type=float, default=-60.0, help="RX noise power in dBFS (default %(default)s)")
    p.add_argument("--path-loss-db", type=float, default=0.0, help="TX->RX loop loss in dB (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    emu = IiodEmulator(args.host, args.port, noise_dbfs=args.noise_dbfs, path_loss_db=args.path_loss_db, seed=args.seed)
    try:
        emu.start()
    except OSError as exc:
        print(f"iiod emulator: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"iiod emulator listening on {emu.uri}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
