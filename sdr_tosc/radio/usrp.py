"""USRP backend through UHD's Python API (``import uhd`` happens here only).

PyPI has no Linux wheel of ``uhd``: install the system package (Debian/Ubuntu ``apt install python3-uhd
uhd-host``; then ``uhd_images_downloader`` for B2xx FPGA images) and make the virtual environment with
``--system-site-packages``.

Rules this backend follows:

* One RX and one TX streamer for the whole session, created once. (``MultiUSRP.recv_num_samps`` makes a
  new streamer per call; called in a loop it leaks them and UHD crashes after some hundred calls.)
* ``fc32`` on the host (complex64, full scale 1.0 = our convention, no scaling) and ``sc16`` on the wire.
* Timed start: RX streaming and each rx() in burst mode start at ``time_now + start_delay_s``, so all
  channels and the TX/RX relation are deterministic; ``tx(iq, at_time_s=...)`` sends a timed burst.
* Overflows (``O``), late commands, timeouts and TX underflows (``U``, from the async message queue) are
  counted in :attr:`Radio.counters`; a timeout raises TimeoutError naming the device.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .base import Radio

log = logging.getLogger(__name__)

INSTALL_HINT = ("install UHD's Python API: Debian/Ubuntu `apt install python3-uhd uhd-host` and use a venv "
                "created with --system-site-packages (PyPI has no Linux wheel of uhd)")


def _import_uhd():
    try:
        import uhd
    except (ImportError, OSError) as exc:
        raise ImportError(f"the usrp backend needs UHD's Python module ({exc}); {INSTALL_HINT}") from None
    return uhd


class UsrpRadio(Radio):
    """A USRP (B200/B210 over USB 3, N210 over Gigabit Ethernet, ...) on one channel.

    ``args``: UHD device arguments, e.g. ``"type=b200"``, ``"serial=3123ABC"``, ``"addr=192.168.10.2"``.
    ``rx_mode``: ``"burst"`` (each rx(n) is one timed ``num_samps_and_done`` command: nothing overflows
    between calls) or ``"continuous"`` (stream from the first rx() on; read steadily or it overflows).
    """

    kind = "usrp"

    def __init__(
        self,
        args: str = "",
        *,
        center_freq_hz: float = 2.4e9,
        sample_rate_hz: float = 1e6,
        tx_gain_db: float = 40.0,
        rx_gain_db: float = 30.0,
        channel: int = 0,
        rx_antenna: str | None = "RX2",
        tx_antenna: str | None = "TX/RX",
        bandwidth_hz: float | None = None,
        rx_mode: str = "burst",
        start_delay_s: float = 0.05,
        timeout_s: float = 3.0,
        wire_format: str = "sc16",
        profile: str = "b210",
        check_full_scale: bool = True,
    ) -> None:
        super().__init__(profile, center_freq_hz=center_freq_hz, sample_rate_hz=sample_rate_hz,
                         tx_gain_db=tx_gain_db, rx_gain_db=rx_gain_db, check_full_scale=check_full_scale)
        if not isinstance(args, str):
            raise TypeError(f"args must be a UHD device-args string like 'type=b200', got {type(args).__name__}")
        if rx_mode not in ("burst", "continuous"):
            raise ValueError(f"rx_mode must be 'burst' or 'continuous', got {rx_mode!r}")
        if wire_format not in ("sc16", "sc8"):
            raise ValueError(f"wire_format must be 'sc16' or 'sc8', got {wire_format!r}")
        if not 0 <= start_delay_s <= 10 or not 0 < timeout_s <= 600:
            raise ValueError("start_delay_s must be in [0, 10] s and timeout_s in (0, 600] s")
        uhd = _import_uhd()
        self._uhd = uhd
        self.args = args
        self.channel = int(channel)
        self.rx_mode = rx_mode
        self.start_delay_s = float(start_delay_s)
        self.timeout_s = float(timeout_s)
        self._bandwidth_hz = bandwidth_hz
        try:
            self._usrp = uhd.usrp.MultiUSRP(args)
        except (RuntimeError, LookupError, KeyError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectionError(
                f"no USRP found for device args {args!r} ({first}). Check it is connected and powered: "
                "`uhd_find_devices` lists what UHD sees, `uhd_usrp_probe --args '...'` tests one "
                "(B2xx: USB 3 port, udev rules, `uhd_images_downloader`; N210: host on 192.168.10.x, "
                "default device address 192.168.10.2)"
            ) from None
        u, ch = self._usrp, self.channel
        self._configure_all()
        if rx_antenna:
            u.set_rx_antenna(rx_antenna, ch)
        if tx_antenna:
            u.set_tx_antenna(tx_antenna, ch)
        st_args = uhd.usrp.StreamArgs("fc32", wire_format)
        st_args.channels = [ch]
        # the one RX and one TX streamer of this session (never recv_num_samps in a loop)
        self._rx_streamer = u.get_rx_stream(st_args)
        self._tx_streamer = u.get_tx_stream(st_args)
        self._rx_md = uhd.types.RXMetadata()
        self._max_rx = int(self._rx_streamer.get_max_num_samps())
        self._rx_buf = np.zeros((1, self._max_rx), np.complex64)
        self._streaming = False
        u.set_time_now(uhd.types.TimeSpec(0.0))

    # -- settings -------------------------------------------------------------------------------------
    def _configure_all(self) -> None:
        self._apply_sample_rate_hz(self.sample_rate_hz)
        self._apply_center_freq_hz(self.center_freq_hz)
        self._apply_tx_gain_db(self.tx_gain_db)
        self._apply_rx_gain_db(self.rx_gain_db)

    def _apply_sample_rate_hz(self, value: float) -> None:
        u, ch = self._usrp, self.channel
        u.set_rx_rate(value, ch)
        u.set_tx_rate(value, ch)
        actual = u.get_rx_rate(ch)
        if abs(actual - value) > 1e-6 * value:
            log.warning("USRP rate %g Hz requested, %g Hz set (master clock divisor)", value, actual)
        bw = self._bandwidth_hz or value
        try:
            u.set_rx_bandwidth(bw, ch)
            u.set_tx_bandwidth(bw, ch)
        except RuntimeError as exc:  # not every daughterboard has a tunable filter
            log.debug("bandwidth not settable: %s", exc)
        self._restart_rx()

    def _apply_center_freq_hz(self, value: float) -> None:
        uhd, u, ch = self._uhd, self._usrp, self.channel
        u.set_rx_freq(uhd.types.TuneRequest(value), ch)
        u.set_tx_freq(uhd.types.TuneRequest(value), ch)
        self._restart_rx()

    def _apply_tx_gain_db(self, value: float) -> None:
        self._usrp.set_tx_gain(value, self.channel)

    def _apply_rx_gain_db(self, value: float) -> None:
        self._usrp.set_rx_gain(value, self.channel)
        self._restart_rx()

    def _time_spec(self, delay_s: float):
        t = self._usrp.get_time_now().get_real_secs() + delay_s
        return self._uhd.types.TimeSpec(t)

    # -- RX -------------------------------------------------------------------------------------------
    def _restart_rx(self) -> None:
        """After a retune or rate change, stop a continuous stream; it restarts (timed) at the next rx()."""
        if getattr(self, "_streaming", False):
            self._stop_stream()

    def _stop_stream(self) -> None:
        uhd = self._uhd
        self._rx_streamer.issue_stream_cmd(uhd.types.StreamCMD(uhd.types.StreamMode.stop_cont))
        # drain what is in flight so the next read starts clean
        while self._rx_streamer.recv(self._rx_buf, self._rx_md, 0.1) > 0:
            pass
        self._streaming = False

    def _issue(self, n: int | None) -> None:
        uhd = self._uhd
        if n is None:
            cmd = uhd.types.StreamCMD(uhd.types.StreamMode.start_cont)
        else:
            cmd = uhd.types.StreamCMD(uhd.types.StreamMode.num_done)
            cmd.num_samps = n
        cmd.stream_now = False
        cmd.time_spec = self._time_spec(self.start_delay_s)
        self._rx_streamer.issue_stream_cmd(cmd)

    def _rx(self, n: int) -> np.ndarray:
        codes = self._uhd.types.RXMetadataErrorCode
        if self.rx_mode == "burst":
            self._issue(n)
        elif not self._streaming:
            self._issue(None)
            self._streaming = True
        out = np.empty(n, np.complex64)
        got = 0
        retries = 0
        timeout = self.timeout_s + self.start_delay_s
        while got < n:
            k = self._rx_streamer.recv(self._rx_buf[:, : min(self._max_rx, n - got)], self._rx_md, timeout)
            out[got : got + k] = self._rx_buf[0, :k]
            got += k
            err = self._rx_md.error_code
            if err == codes.none:
                timeout = self.timeout_s
                continue
            if err == codes.timeout:
                raise TimeoutError(f"USRP {self.args!r} delivered {got} of {n} samples before a "
                                   f"{timeout:g} s timeout (is the device still connected?)")
            retries += 1
            if retries > 100:
                raise RuntimeError(f"USRP {self.args!r}: giving up after 100 overflows/late commands in one rx()")
            if err == codes.overflow:  # 'O': the host did not keep up, samples were lost
                self._counters.overflows += 1
            elif err == codes.late:  # the timed command reached the device after its time
                self._counters.late_bursts += 1
            else:
                raise RuntimeError(f"USRP receive error: {self._rx_md.strerror()}")
            if self.rx_mode == "burst" and got < n:  # the burst is broken: stop it, ask for the rest
                self._stop_stream()
                self._issue(n - got)
        return out

    # -- TX -------------------------------------------------------------------------------------------
    def _tx(self, iq: np.ndarray, at_time_s: float | None = None, start_of_burst: bool = True,
            end_of_burst: bool = True, **_: Any) -> None:
        uhd = self._uhd
        md = uhd.types.TXMetadata()
        md.start_of_burst = start_of_burst
        md.end_of_burst = end_of_burst
        if at_time_s is not None:
            md.has_time_spec = True
            md.time_spec = uhd.types.TimeSpec(float(at_time_s))
        elif start_of_burst:
            md.has_time_spec = True
            md.time_spec = self._time_spec(self.start_delay_s)
        buf = iq.reshape(1, -1)
        sent = self._tx_streamer.send(buf, md, self.timeout_s + self.start_delay_s)
        if sent != iq.size:
            self._counters.underflows += 1
            raise TimeoutError(f"USRP {self.args!r} accepted {sent} of {iq.size} samples before the timeout")
        self._poll_async()

    def _poll_async(self, timeout_s: float = 0.0) -> None:
        """Count TX underflows / sequence and time errors reported by the device."""
        uhd = self._uhd
        ev = uhd.types.TXMetadataEventCode
        md = uhd.types.TXAsyncMetadata()
        while self._tx_streamer.recv_async_msg(md, timeout_s):
            if md.event_code in (ev.underflow, ev.underflow_in_packet):
                self._counters.underflows += 1
            elif md.event_code == ev.time_error:
                self._counters.late_bursts += 1
            elif md.event_code in (ev.seq_error, ev.seq_error_in_packet):
                self._counters.dropped_samples += 1  # a lost packet; UHD does not say how many samples
            timeout_s = 0.0

    def time_now_s(self) -> float:
        """The device's time in seconds (reset to 0 when the radio was opened)."""
        return float(self._usrp.get_time_now().get_real_secs())

    def _close(self) -> None:
        if getattr(self, "_streaming", False):
            try:
                self._stop_stream()
            except RuntimeError:
                pass
        self._rx_streamer = self._tx_streamer = None
        self._usrp = None
