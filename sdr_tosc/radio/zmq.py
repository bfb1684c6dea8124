"""ZMQ radio backend: a radio whose air is the ZMQ channel simulator (or any peer speaking the wire format).

The wire format itself (header, limits, codecs, endpoints) is defined in :mod:`sdr_tosc.radio.wire`; its names
are re-exported here.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from .base import Radio
from .wire import (  # noqa: F401  (re-exported: the wire format's names stay importable from here)
    FLAG_DISCONT,
    FLAG_EOB,
    FLAG_SOB,
    FLAG_TIMED,
    FLAGS_KNOWN,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_CENTER_FREQ_HZ,
    MAX_MESSAGE_BYTES,
    MAX_MESSAGE_SAMPLES,
    MAX_SAMPLE_ABS,
    MAX_SAMPLE_RATE_HZ,
    MODES,
    RX_PATTERNS,
    SAMPLE_BYTES,
    TX_GAIN_DB_RANGE,
    VERSION,
    Header,
    check_samples,
    decode_message,
    decode_raw,
    decode_request,
    encode_message,
    encode_request,
    normalize_endpoint,
)

log = logging.getLogger(__name__)


class ZmqRadio(Radio):
    """A radio whose air is a ZMQ channel simulator (or any peer speaking the wire format of :mod:`.wire`).

    ``tx_endpoint``: where the TX PUSH socket connects (the channel's ``--in``). ``rx_endpoint``: where the
    RX DEALER (or PULL, ``rx_pattern="pull"``) socket connects (the channel's ``--out``). Either may be
    None for a TX-only or RX-only radio. ``timeout_s`` bounds every send and receive: a peer that is gone
    gives :class:`TimeoutError` naming the endpoint, never a hang.
    """

    kind = "zmq"
    default_profile = "zmq"
    uri_help = "zmq endpoint of the channel simulator (default tcp://127.0.0.1:5555 for TX, :5556 for RX)"
    packages = (("pyzmq", "pyzmq", "zmq"),)

    @classmethod
    def probe(cls) -> Any:
        from .base import BackendStatus

        try:
            import zmq
        except ImportError as exc:
            return BackendStatus("zmq", False, f"pyzmq not importable ({exc}); install it: pip install pyzmq")
        return BackendStatus("zmq", True, f"pyzmq {zmq.pyzmq_version()}, libzmq {zmq.zmq_version()}")

    @classmethod
    def from_uri(cls, uri: str | None, role: str) -> dict[str, Any]:
        super().from_uri(uri, role)
        if role == "trx":
            raise ValueError("a zmq radio used as both ends needs two endpoints; use the loopback simulator "
                             "(no --radio) or open_radio('zmq', tx_endpoint=..., rx_endpoint=...)")
        return {f"{role}_endpoint": uri or ("tcp://127.0.0.1:5555" if role == "tx" else "tcp://127.0.0.1:5556")}

    def __init__(
        self,
        tx_endpoint: str | None = None,
        rx_endpoint: str | None = None,
        *,
        sample_rate_hz: float = 1e6,
        center_freq_hz: float = 2.4e9,
        tx_gain_db: float = 0.0,
        rx_gain_db: float = 0.0,
        mode: str = "framed",
        rx_pattern: str = "req",
        timeout_s: float = 5.0,
        chunk_samples: int = 1 << 16,  # 512 KiB messages: 2 MiB ones make libzmq's receiver fault in fresh pages
        max_outstanding: int = 4,
        bind: bool = False,
        profile: str = "zmq",
        check_full_scale: bool = True,
    ) -> None:
        import zmq  # pyzmq is a hard dependency, imported here to keep `import sdr_tosc.radio` light

        super().__init__(profile, center_freq_hz=center_freq_hz, sample_rate_hz=sample_rate_hz,
                         tx_gain_db=tx_gain_db, rx_gain_db=rx_gain_db, check_full_scale=check_full_scale)
        if tx_endpoint is None and rx_endpoint is None:
            raise ValueError("a zmq radio needs tx_endpoint, rx_endpoint or both (e.g. "
                             "tx_endpoint='tcp://127.0.0.1:5555', rx_endpoint='tcp://127.0.0.1:5556')")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if rx_pattern not in RX_PATTERNS:
            raise ValueError(f"rx_pattern must be one of {RX_PATTERNS}, got {rx_pattern!r}")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        if not (isinstance(chunk_samples, int) and 1 <= chunk_samples <= 1 << 24):
            raise ValueError(f"chunk_samples must be an int in 1..{1 << 24}, got {chunk_samples!r}")
        if not (isinstance(max_outstanding, int) and max_outstanding >= 1):
            raise ValueError(f"max_outstanding must be an int >= 1, got {max_outstanding!r}")
        self.mode = mode
        self.rx_pattern = rx_pattern
        self.timeout_s = float(timeout_s)
        self.chunk_samples = chunk_samples
        self.max_outstanding = max_outstanding
        self.bind = bool(bind)
        self.tx_endpoint = normalize_endpoint(tx_endpoint, for_bind=bind, what="tx_endpoint") if tx_endpoint else None
        self.rx_endpoint = normalize_endpoint(rx_endpoint, for_bind=bind, what="rx_endpoint") if rx_endpoint else None
        self._zmq = zmq
        self._ctx = zmq.Context()
        self._tx_sock = None
        self._rx_sock = None
        self._tx_seq = 0
        self._rx_residual = np.zeros(0, np.complex64)
        self._rx_expected_ts: int | None = None
        self._rx_expected_seq: int | None = None
        self.rx_timestamp: int | None = None  #: timeline index of the first sample of the last rx() (framed)
        self.last_rx_header: Header | None = None
        if self.tx_endpoint:
            self._tx_sock = self._make_socket(zmq.PUSH, self.tx_endpoint)
            self.tx_endpoint = self._bound(self._tx_sock, self.tx_endpoint)
        if self.rx_endpoint:
            self._open_rx()

    # -- sockets --------------------------------------------------------------------------------------
    def _make_socket(self, kind: int, endpoint: str):
        zmq = self._zmq
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        ms = int(self.timeout_s * 1000)
        s.setsockopt(zmq.SNDTIMEO, ms)
        s.setsockopt(zmq.RCVTIMEO, ms)
        if kind == zmq.PUSH:
            s.setsockopt(zmq.SNDHWM, 64)
            # queue only on a live connection: with no peer, send times out (TimeoutError naming the
            # endpoint) instead of filling a queue nobody reads and reporting success
            s.setsockopt(zmq.IMMEDIATE, 1)
        if kind == zmq.PULL:
            s.setsockopt(zmq.RCVHWM, 64)
        try:
            (s.bind if self.bind else s.connect)(endpoint)
        except zmq.ZMQError as exc:
            s.close(0)
            raise ValueError(f"cannot {'bind' if self.bind else 'connect'} ZMQ socket to {endpoint}: {exc}") from None
        return s

    def _bound(self, sock, endpoint: str) -> str:
        if self.bind:
            return sock.getsockopt(self._zmq.LAST_ENDPOINT).decode()
        return endpoint

    def _open_rx(self) -> None:
        zmq = self._zmq
        kind = zmq.DEALER if self.rx_pattern == "req" else zmq.PULL
        self._rx_sock = self._make_socket(kind, self.rx_endpoint)
        if self.bind:
            self.rx_endpoint = self._bound(self._rx_sock, self.rx_endpoint)

    def _reset_rx(self) -> None:
        """Drop the RX socket (and any replies still in flight) after a timeout; reconnect fresh."""
        if self._rx_sock is not None:
            self._rx_sock.close(0)
        self._open_rx()

    # -- TX -------------------------------------------------------------------------------------------
    def _tx(self, iq: np.ndarray, start_of_burst: bool = True, end_of_burst: bool = True,
            at_sample: int | None = None) -> None:
        """Send ``iq`` in chunks. ``start_of_burst=False`` continues the previous burst without a gap;
        ``at_sample`` (framed mode) asks the channel to start the burst at that timeline index."""
        if self._tx_sock is None:
            raise RuntimeError("this zmq radio has no tx_endpoint; open it with tx_endpoint=... to transmit")
        gain = self.tx_gain_db
        if self.mode == "raw" and gain != 0.0:
            iq = (iq * np.float32(10.0 ** (gain / 20.0))).astype(np.complex64)
        n = iq.size
        for i, start in enumerate(range(0, n, self.chunk_samples)):
            chunk = iq[start : start + self.chunk_samples]
            last = start + self.chunk_samples >= n
            if self.mode == "raw":
                self._send(memoryview(chunk).cast("B"))
                continue
            flags = (FLAG_SOB if (i == 0 and start_of_burst) else 0) | (FLAG_EOB if (last and end_of_burst) else 0)
            ts = 0
            if at_sample is not None and i == 0:
                flags |= FLAG_TIMED
                ts = int(at_sample)
            hdr = Header(flags, self._tx_seq, ts, self.sample_rate_hz, self.center_freq_hz, gain, chunk.size)
            self._send(encode_message(chunk, hdr), copy=False)  # a fresh buffer: zero-copy is safe
            self._tx_seq += 1

    def _send(self, buf, copy: bool = True) -> None:
        if self._tx_sock is None:
            raise RuntimeError("zmq radio was closed while transmitting")
        try:
            # copy=True for the caller's memory (raw mode): libzmq owns its copy, so the caller may reuse
            # its array at once. copy=False only for buffers made here: pyzmq keeps them alive meanwhile.
            self._tx_sock.send(buf, copy=copy)
        except self._zmq.Again:
            self._counters.underflows += 1
            raise TimeoutError(
                f"no peer accepted samples at {self.tx_endpoint} within {self.timeout_s:g} s: is the channel "
                f"simulator running (sdr-tosc channel --in {self.tx_endpoint}) and is a receiver reading "
                "its output?"
            ) from None

    # -- RX -------------------------------------------------------------------------------------------
    def _rx(self, n: int) -> np.ndarray:
        if self._rx_sock is None:
            raise RuntimeError("this zmq radio has no rx_endpoint; open it with rx_endpoint=... to receive")
        out = np.empty(n, np.complex64)
        got = min(n, self._rx_residual.size)
        out[:got] = self._rx_residual[:got]
        first_ts = None if got == 0 else self._residual_ts
        self._rx_residual = self._rx_residual[got:]
        self._residual_ts = None if self._residual_ts is None else self._residual_ts + got
        try:
            if self.rx_pattern == "req":
                got, first_ts = self._rx_req(out, got, first_ts)
            else:
                got, first_ts = self._rx_pull(out, got, first_ts)
        except ValueError:
            self._reset_rx()  # drop replies still in flight so the next read starts clean
            raise
        except self._zmq.Again:
            self._reset_rx()
            raise TimeoutError(
                f"no samples from {self.rx_endpoint} within {self.timeout_s:g} s: is the channel simulator "
                f"running (sdr-tosc channel --out {self.rx_endpoint})?"
            ) from None
        self.rx_timestamp = first_ts
        if self.rx_gain_db != 0.0:
            out *= np.float32(10.0 ** (self.rx_gain_db / 20.0))
        return out

    _residual_ts: int | None = None

    def _rx_req(self, out: np.ndarray, got: int, first_ts: int | None) -> tuple[int, int | None]:
        """Pipelined requests (at most ``max_outstanding`` in flight) until ``out`` is full."""
        n = out.size
        inflight: list[int] = []
        sock = self._rx_sock
        while got < n or inflight:
            while got + sum(inflight) < n and len(inflight) < self.max_outstanding:
                k = min(self.chunk_samples, n - got - sum(inflight))
                sock.send_multipart([b"", encode_request(k)])
                inflight.append(k)
            frames = sock.recv_multipart(copy=False)
            inflight.pop(0)
            iq, ts = self._parse_reply(frames[-1].buffer)
            if got >= n:  # a reply to a request we no longer need (peer sent more than asked before)
                self._keep_residual(iq, ts)
                continue
            if first_ts is None and ts is not None:
                first_ts = ts - got
            take = min(iq.size, n - got)
            out[got : got + take] = iq[:take]
            got += take
            if take < iq.size:  # a peer (e.g. gr rep_sink) may send more than asked: keep the rest
                self._keep_residual(iq[take:], None if ts is None else ts + take)
        return got, first_ts

    def _rx_pull(self, out: np.ndarray, got: int, first_ts: int | None) -> tuple[int, int | None]:
        n = out.size
        while got < n:
            msg = self._rx_sock.recv(copy=False)
            iq, ts = self._parse_reply(msg.buffer)
            if first_ts is None and ts is not None:
                first_ts = ts - got
            take = min(iq.size, n - got)
            out[got : got + take] = iq[:take]
            got += take
            if take < iq.size:
                self._keep_residual(iq[take:], None if ts is None else ts + take)
        return got, first_ts

    def _keep_residual(self, iq: np.ndarray, ts: int | None) -> None:
        self._rx_residual = np.concatenate([self._rx_residual, iq])
        if self._residual_ts is None:
            self._residual_ts = ts

    def _parse_reply(self, buf) -> tuple[np.ndarray, int | None]:
        where = f"reply from {self.rx_endpoint}"
        if self.mode == "raw":
            return decode_raw(buf, where), None
        hdr, iq = decode_message(buf, where)
        self.last_rx_header = hdr
        c = self._counters
        if self._rx_expected_seq is not None and hdr.seq != self._rx_expected_seq:
            c.overflows += 1
        if self._rx_expected_ts is not None and hdr.timestamp > self._rx_expected_ts:
            c.dropped_samples += hdr.timestamp - self._rx_expected_ts
            if hdr.seq == self._rx_expected_seq:
                c.overflows += 1
        if hdr.flags & FLAG_DISCONT:
            c.overflows += 1
        self._rx_expected_seq = hdr.seq + 1
        self._rx_expected_ts = hdr.timestamp + hdr.count
        if hdr.sample_rate_hz and abs(hdr.sample_rate_hz - self.sample_rate_hz) > 1e-6 * self.sample_rate_hz:
            log.warning("channel at %s runs at %g Hz but this radio is set to %g Hz",
                        self.rx_endpoint, hdr.sample_rate_hz, self.sample_rate_hz)
        return iq, hdr.timestamp

    def flush_rx(self) -> None:
        """Forget samples held from an earlier read (the next rx() starts at the peer's current position)."""
        self._rx_residual = np.zeros(0, np.complex64)
        self._residual_ts = None

    def _close(self) -> None:
        # TX: deliver what is still queued (a real radio also finishes its buffer), waiting at most timeout_s
        # for a peer that is gone; RX: drop pending replies at once
        if self._tx_sock is not None:
            self._tx_sock.close(int(self.timeout_s * 1000))
        if self._rx_sock is not None:
            self._rx_sock.close(0)
        self._tx_sock = self._rx_sock = None
        self._ctx.term()


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.01) -> None:
    """Poll ``predicate()`` until true or raise TimeoutError naming ``what`` (for handshakes in tools)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
