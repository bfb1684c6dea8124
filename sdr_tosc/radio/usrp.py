"""USRP backend through UHD's Python API (``import uhd`` happens here only).

PyPI has no Linux wheel of ``uhd``: install the system package (Debian/Ubuntu ``apt install python3-uhd
uhd-host``; then ``uhd_images_downloader`` for B2xx FPGA images) and make the virtual environment with
``--system-site-packages``. The device args ``type=virtual`` open the virtual USRP of
:mod:`sdr_tosc.radio.virtual_usrp` instead (no hardware, no UHD needed), through this same code.

Rules this backend follows:

* One RX and one TX streamer for the whole session, created once. (``MultiUSRP.recv_num_samps`` makes a
  new streamer per call; called in a loop it leaks them and UHD crashes after some hundred calls.)
* ``fc32`` on the host (complex64, full scale 1.0 = our convention, no scaling) and ``sc16`` on the wire.
* RX is continuous streaming: the first ``rx()`` issues one ``start_cont`` stream command timed
  ``start_delay_s`` ahead; a reader thread then calls ``recv`` without pause and fills a bounded queue
  (``rx_queue_s`` of samples). ``rx(n)`` takes consecutive samples from that queue, so nothing is missed
  between calls. When the caller falls behind, the queue fills, the reader waits, the device overflows:
  the ``ERROR_CODE_OVERFLOW`` in the RX metadata is counted and the samples lost are measured from the
  jump of the next packet's ``time_spec``. A retune or rate change stops the stream (``stop_cont``);
  the next ``rx()`` restarts it.
* TX: each ``tx()`` is one burst (``start_of_burst``/``end_of_burst`` metadata), timed
  ``start_delay_s`` ahead unless ``at_time_s`` is given. Async messages (underflow, late/time error,
  sequence error) are drained after every burst and whenever :attr:`counters` is read.
* A timeout raises TimeoutError naming the device.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any

import numpy as np

from .base import BackendStatus, Radio, RadioCounters

log = logging.getLogger(__name__)

INSTALL_HINT = ("install UHD's Python API: Debian/Ubuntu `apt install python3-uhd uhd-host` and use a venv "
                "created with --system-site-packages (PyPI has no Linux wheel of uhd); or use the virtual "
                "USRP with the device args type=virtual")

READ_PACKETS = 8  # packets per recv() call of the reader thread


def _import_uhd(args: str = ""):
    """The UHD Python module, or the virtual USRP's stand-in for ``type=virtual`` device args."""
    from . import virtual_usrp

    if virtual_usrp.is_virtual(args):
        return virtual_usrp
    try:
        import uhd
    except (ImportError, OSError) as exc:
        raise ImportError(f"the usrp backend needs UHD's Python module ({exc}); {INSTALL_HINT}") from None
    return uhd


class UsrpRadio(Radio):
    """A USRP (B200/B210 over USB 3, N210 over Gigabit Ethernet, ...) on one channel, or the virtual one.

    ``args``: UHD device arguments, e.g. ``"type=b200"``, ``"serial=3123ABC"``, ``"addr=192.168.10.2"``,
    or ``"type=virtual[,ppm=..,in=..,out=..]"`` (see :mod:`sdr_tosc.radio.virtual_usrp`).
    ``rx_queue_s``: seconds of samples the host queue holds between the reader thread and ``rx()``
    (:attr:`rx_queue_samples`: what a reader may find queued after a pause).
    ``start_delay_s``: how far ahead the stream command and untimed bursts are timed.
    """

    kind = "usrp"
    default_profile = "b210"
    uri_help = "UHD device args: type=b200,serial=..., addr=192.168.10.2, or type=virtual[,ppm=..] (no hardware)"
    packages = (("uhd", None, "uhd"),)

    @classmethod
    def probe(cls) -> BackendStatus:
        try:
            import uhd
        except (ImportError, OSError) as exc:
            return BackendStatus("usrp", True, f"UHD Python API not importable ({exc}): only the virtual USRP "
                                 "(--uri type=virtual) works; for hardware install the system package "
                                 "(Debian/Ubuntu: apt install python3-uhd uhd-host) and use a venv made with "
                                 "--system-site-packages")
        from .registry import uhd_version

        ver = getattr(uhd, "__version__", None) or uhd_version(uhd)
        return BackendStatus("usrp", True, f"uhd {ver} importable (and the virtual USRP, --uri type=virtual)")

    @classmethod
    def from_uri(cls, uri: str | None, role: str) -> dict[str, Any]:
        super().from_uri(uri, role)
        return {"args": uri or ""}

    def __init__(
        self,
        args: str = "",
        *,
        center_freq_hz: float = 2.44e9,
        sample_rate_hz: float = 1e6,
        tx_gain_db: float = 40.0,
        rx_gain_db: float = 30.0,
        channel: int = 0,
        rx_antenna: str | None = "RX2",
        tx_antenna: str | None = "TX/RX",
        bandwidth_hz: float | None = None,
        rx_queue_s: float = 0.25,
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
        if wire_format not in ("sc16", "sc8"):
            raise ValueError(f"wire_format must be 'sc16' or 'sc8', got {wire_format!r}")
        if not 0 <= start_delay_s <= 10 or not 0 < timeout_s <= 600:
            raise ValueError("start_delay_s must be in [0, 10] s and timeout_s in (0, 600] s")
        if not 0.01 <= rx_queue_s <= 60:
            raise ValueError(f"rx_queue_s must be in [0.01, 60] s, got {rx_queue_s!r}")
        uhd = _import_uhd(args)
        self._uhd = uhd
        self.args = args
        self.channel = int(channel)
        self.rx_queue_s = float(rx_queue_s)
        self.start_delay_s = float(start_delay_s)
        self.timeout_s = float(timeout_s)
        self._bandwidth_hz = bandwidth_hz
        self._reader: threading.Thread | None = None
        self._streaming = False
        self._bursts_in_flight = 0  # bursts sent with end_of_burst and not yet acknowledged
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
        try:
            self.serial = str(u.get_usrp_rx_info(ch).get("mboard_serial") or "") or None
        except (RuntimeError, AttributeError):
            self.serial = None
        st_args = uhd.usrp.StreamArgs("fc32", wire_format)
        st_args.channels = [ch]
        # the one RX and one TX streamer of this session (never recv_num_samps in a loop)
        self._rx_streamer = u.get_rx_stream(st_args)
        self._tx_streamer = u.get_tx_stream(st_args)
        self._max_rx = int(self._rx_streamer.get_max_num_samps())
        self._queue: queue.Queue = queue.Queue()
        self._residual = np.zeros(0, np.complex64)
        self._reader_error: BaseException | None = None
        self._stop_reader = threading.Event()
        u.set_time_now(uhd.types.TimeSpec(0.0))

    # -- settings -------------------------------------------------------------------------------------
    def _configure_all(self) -> None:
        self._apply_sample_rate_hz(self.sample_rate_hz)
        self._apply_center_freq_hz(self.center_freq_hz)
        self._apply_tx_gain_db(self.tx_gain_db)
        self._apply_rx_gain_db(self.rx_gain_db)

    def _apply_sample_rate_hz(self, value: float) -> None:
        u, ch = self._usrp, self.channel
        self._stop_rx()
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

    def _apply_center_freq_hz(self, value: float) -> None:
        uhd, u, ch = self._uhd, self._usrp, self.channel
        self._stop_rx()
        u.set_rx_freq(uhd.types.TuneRequest(value), ch)
        u.set_tx_freq(uhd.types.TuneRequest(value), ch)

    def _apply_tx_gain_db(self, value: float) -> None:
        self._usrp.set_tx_gain(value, self.channel)

    def _apply_rx_gain_db(self, value: float) -> None:
        self._stop_rx()  # samples queued at the old gain would mislead a calibration
        self._usrp.set_rx_gain(value, self.channel)

    def _time_spec(self, delay_s: float):
        t = self._usrp.get_time_now().get_real_secs() + delay_s
        return self._uhd.types.TimeSpec(t)

    def time_now_s(self) -> float:
        """The device's time in seconds (reset to 0 when the radio was opened)."""
        return float(self._usrp.get_time_now().get_real_secs())

    # -- RX: one continuous stream, a reader thread, a bounded queue ------------------------------------
    @property
    def streaming(self) -> bool:
        """True while the continuous RX stream runs (from the first rx() to a retune or close)."""
        return self._streaming

    def start_rx(self) -> None:
        """Start the continuous RX stream now (rx() does it on first use), timed ``start_delay_s`` ahead."""
        self._check_open()
        if self._streaming:
            return
        uhd = self._uhd
        cmd = uhd.types.StreamCMD(uhd.types.StreamMode.start_cont)
        cmd.stream_now = False
        cmd.time_spec = self._time_spec(self.start_delay_s)
        self._queue = queue.Queue(maxsize=self._queue_chunks())
        self._residual = np.zeros(0, np.complex64)
        self._reader_error = None
        self._stop_reader = threading.Event()
        self._rx_streamer.issue_stream_cmd(cmd)
        self._streaming = True
        self._reader = threading.Thread(target=self._read_loop, args=(self._stop_reader, self._queue),
                                        name=f"usrp-rx-{self.args}", daemon=True)
        self._reader.start()

    def _queue_chunks(self) -> int:
        return max(2, math.ceil(self.rx_queue_s * self.sample_rate_hz / (READ_PACKETS * self._max_rx)))

    @property
    def rx_queue_samples(self) -> int:
        """Samples that can wait between the air and rx(): the host queue, the read in the reader's hands
        and UHD's transport frames (``num_recv_frames`` in the device args, 16 when not given)."""
        if not hasattr(self, "_max_rx"):
            return 0
        return ((self._queue_chunks() + 1) * READ_PACKETS + self._transport_frames()) * self._max_rx

    def _transport_frames(self) -> int:
        for item in self.args.split(","):
            key, _, val = item.partition("=")
            if key.strip() == "num_recv_frames" and val.strip().isdigit():
                return int(val.strip())
        return 16

    def _read_loop(self, stop: threading.Event, q: queue.Queue) -> None:
        """Reader thread: recv without pause into the bounded queue; count what the metadata reports."""
        uhd = self._uhd
        codes = uhd.types.RXMetadataErrorCode
        md = uhd.types.RXMetadata()
        streamer = self._rx_streamer
        fs = self.sample_rate_hz
        buf = np.zeros((1, READ_PACKETS * self._max_rx), np.complex64)
        expected: float | None = None  # device time of the next sample
        c: RadioCounters = self._counters
        try:
            while not stop.is_set():
                k = streamer.recv(buf, md, 0.1)
                err = md.error_code
                if err == codes.none or (err == codes.timeout and k):
                    if k == 0:
                        continue
                    if md.has_time_spec:
                        t = md.time_spec.get_real_secs()
                        if expected is not None and t > expected + 0.5 / fs:
                            c.dropped_samples += int(round((t - expected) * fs))
                        expected = t + k / fs
                    chunk = buf[0, :k].copy()
                    while not stop.is_set():  # a full queue makes this thread wait: the device overflows
                        try:
                            q.put(chunk, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                elif err == codes.timeout:
                    continue  # not streaming yet (timed start) or a pause; rx() has its own timeout
                elif err == codes.overflow:  # 'O': the host did not keep up, the device dropped samples
                    c.overflows += 1
                elif err == codes.late:  # the start command reached the device after its time
                    c.late_bursts += 1
                    cmd = uhd.types.StreamCMD(uhd.types.StreamMode.start_cont)
                    cmd.stream_now = True
                    streamer.issue_stream_cmd(cmd)
                else:
                    raise RuntimeError(f"USRP {self.args!r} receive error: {md.strerror()}")
        except Exception as exc:  # noqa: BLE001 - handed to the caller's next rx()
            self._reader_error = exc

    def _stop_rx(self) -> None:
        """Stop the continuous stream and the reader; drop what was queued (it belongs to old settings)."""
        if not self._streaming:
            return
        uhd = self._uhd
        self._stop_reader.set()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self._reader = None
        self._rx_streamer.issue_stream_cmd(uhd.types.StreamCMD(uhd.types.StreamMode.stop_cont))
        md = uhd.types.RXMetadata()
        buf = np.zeros((1, self._max_rx), np.complex64)
        while self._rx_streamer.recv(buf, md, 0.05) > 0:  # drain what is in flight
            pass
        self._streaming = False
        self._residual = np.zeros(0, np.complex64)

    def _rx(self, n: int) -> np.ndarray:
        if not self._streaming:
            self.start_rx()
        out = np.empty(n, np.complex64)
        got = min(n, self._residual.size)
        out[:got] = self._residual[:got]
        self._residual = self._residual[got:]
        timeout = self.timeout_s + self.start_delay_s
        while got < n:
            if self._reader_error is not None:
                raise RuntimeError(f"USRP {self.args!r} reader stopped: {self._reader_error}") from self._reader_error
            try:
                chunk = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"USRP {self.args!r} delivered {got} of {n} samples before a {timeout:g} s "
                                   "timeout (is the device still connected?)") from None
            take = min(chunk.size, n - got)
            out[got:got + take] = chunk[:take]
            got += take
            if take < chunk.size:
                self._residual = chunk[take:]
            timeout = self.timeout_s
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
        sent = 0
        deadline_s = self.timeout_s + self.start_delay_s + iq.size / self.sample_rate_hz
        while sent < iq.size:  # send() may take part of a long burst per call (flow control)
            k = self._tx_streamer.send(buf[:, sent:], md, deadline_s)
            if k == 0:
                self._poll_async()
                raise TimeoutError(f"USRP {self.args!r} accepted {sent} of {iq.size} samples before the timeout")
            sent += k
            md.start_of_burst = False
            md.has_time_spec = False
        if end_of_burst:
            self._bursts_in_flight += 1
        self._poll_async()

    def wait_tx_done(self, timeout_s: float | None = None) -> bool:
        """Wait until every burst sent has left the antenna (UHD's burst ACK for each end of burst, or its
        time error); True when none is left in flight. ``close()`` does this first."""
        deadline = time.monotonic() + (self.timeout_s + self.start_delay_s if timeout_s is None else timeout_s)
        while self._bursts_in_flight > 0 and time.monotonic() < deadline:
            self._poll_async(min(0.05, max(0.0, deadline - time.monotonic())))
        return self._bursts_in_flight == 0

    def _poll_async(self, timeout_s: float = 0.0) -> None:
        """Count TX underflows, late bursts and sequence errors reported by the device (async messages)."""
        if getattr(self, "_tx_streamer", None) is None:
            return
        uhd = self._uhd
        ev = uhd.types.TXMetadataEventCode
        md = uhd.types.TXAsyncMetadata()
        while self._tx_streamer.recv_async_msg(md, timeout_s):
            code = md.event_code
            if code in (ev.underflow, ev.underflow_in_packet):
                self._counters.underflows += 1
            elif code == ev.burst_ack:
                self._bursts_in_flight = max(0, self._bursts_in_flight - 1)
            elif code == ev.time_error:  # the device dropped a late burst
                self._counters.late_bursts += 1
                self._bursts_in_flight = max(0, self._bursts_in_flight - 1)
            elif code in (ev.seq_error, ev.seq_error_in_packet):
                self._counters.dropped_samples += 1  # a lost packet; UHD does not say how many samples
            timeout_s = 0.0

    @property
    def counters(self) -> RadioCounters:
        self._poll_async()
        return super().counters

    def _close(self) -> None:
        try:
            self._stop_rx()
        except RuntimeError:
            pass
        try:
            if not self.wait_tx_done():  # the device plays out what it holds; do not cut a burst short
                log.warning("USRP %r: %d burst(s) not acknowledged at close", self.args, self._bursts_in_flight)
        except RuntimeError:
            pass
        self._rx_streamer = self._tx_streamer = None
        self._usrp = None
