"""ZMQ radio backend and THE definition of the sdr-tosc ZMQ wire format.

Wire format (all little-endian)
===============================

Two socket pairs connect radios to the channel simulator (``sdr-tosc channel``), which binds both:

* **TX path** (radio ``PUSH`` -> channel ``PULL``, lossless: PUSH blocks at the high-water mark instead of
  dropping, unlike PUB). One ZMQ message (single frame) per chunk of samples.
* **RX path** (radio ``DEALER``/``REQ`` -> channel ``ROUTER``): the receiver *requests* samples, as
  srsRAN's ZMQ device and GNU Radio's ``zeromq.req_source`` do. A request is one frame holding the number
  of samples wanted as ``uint32`` (4 bytes; 8-byte ``uint64`` also accepted). The reply carries exactly
  that many samples of the channel's continuous timeline: noise between bursts, bursts where they landed.
  Requests may be pipelined (several in flight); replies come in order.

Framed mode (default): each message is a 48-byte header followed by ``count`` complex64 samples::

    offset size type     field
    0      4    bytes    magic  b"SDRQ"
    4      2    uint16   version (1)
    6      2    uint16   flags: 1 start of burst, 2 end of burst, 4 timed (timestamp is the wanted start),
                         8 discontinuity (RX: samples were lost before this message)
    8      8    uint64   seq: per-sender message counter (gaps = lost messages)
    16     8    uint64   timestamp: sample-clock index of the first sample on the channel's timeline
                         (RX replies always; TX only with the timed flag)
    24     8    float64  sample_rate_hz of the sender
    32     8    float64  center_freq_hz of the sender
    40     4    float32  tx_gain_db (TX: the radio's simulated TX gain; RX replies: 0)
    44     4    uint32   count: number of complex64 samples that follow
    48     8*count       payload: interleaved float32 I, Q (numpy complex64), full scale |x| <= 1

Limits (checked by every receiving side; a message outside them is dropped, counted per kind and logged
once per kind, never forwarded and never fatal; see :func:`decode_message` and :func:`check_samples`):

* ``count`` <= ``MAX_MESSAGE_SAMPLES`` (2**24 samples, 128 MiB); the message length must match ``count``;
  the channel's ``PULL`` socket also refuses (disconnects) any ZMQ message larger than that.
* flags: only the four bits above; version 1 only; ``seq`` and ``timestamp`` < 2**63.
* ``sample_rate_hz`` in [0, 1e10] (0 = not given), ``center_freq_hz`` in [0, 1e12], ``tx_gain_db`` in
  ``TX_GAIN_DB_RANGE`` ([-200, 100]); all finite.
* samples (TX into the channel): finite and ``|I|, |Q| <= MAX_SAMPLE_ABS`` (1e6; full scale is 1).
* the channel places a timed burst at most 2**22 samples past its current time and refuses a burst whose
  summed link gain (channel + header ``tx_gain_db`` - path loss) exceeds 160 dB (``sdr_tosc.channel.core``).
* a sample request asks for 0..2**24 samples (larger ones are clamped).

Raw mode: every message is just the complex64 payload (no header), one message per block. This is what
GNU Radio's gr-zeromq stream blocks (``push_sink``/``pull_source``, ``req_source``/``rep_sink`` with
``pass_tags=False``, item size 8 = gr_complex) send and expect, so raw mode interoperates with flowgraphs.
The channel can also stream its output with a ``PUSH`` socket (``--out-pattern push``) for
``zeromq.pull_source``; then there is no request and no idle noise between bursts.

Endpoints: ``tcp://HOST:PORT`` (``PORT`` 0 or ``*`` binds an ephemeral port; the bound one is reported),
``ipc://PATH`` or ``inproc://NAME``. Radios connect by default; ``bind=True`` makes them bind (e.g. to talk
directly to a GNU Radio block that connects).
"""

from __future__ import annotations

import logging
import math
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Radio

log = logging.getLogger(__name__)

MAGIC = b"SDRQ"
VERSION = 1
HEADER = struct.Struct("<4sHHQQddfI")
HEADER_SIZE = HEADER.size  # 48
assert HEADER_SIZE == 48

FLAG_SOB = 1
FLAG_EOB = 2
FLAG_TIMED = 4
FLAG_DISCONT = 8

SAMPLE_BYTES = 8  # complex64
FLAGS_KNOWN = FLAG_SOB | FLAG_EOB | FLAG_TIMED | FLAG_DISCONT

#: Receiving-side limits (module docstring, "Limits").
MAX_MESSAGE_SAMPLES = 1 << 24
MAX_MESSAGE_BYTES = 48 + 8 * MAX_MESSAGE_SAMPLES
MAX_SAMPLE_ABS = 1e6
TX_GAIN_DB_RANGE = (-200.0, 100.0)
MAX_SAMPLE_RATE_HZ = 1e10
MAX_CENTER_FREQ_HZ = 1e12
_MAX_U63 = (1 << 63) - 1
MODES = ("framed", "raw")
RX_PATTERNS = ("req", "pull")

_TCP_RE = re.compile(r"^tcp://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-*]+):(?P<port>\d+|\*)$")


@dataclass(frozen=True)
class Header:
    """One decoded framed-mode header (see the module docstring for the layout)."""

    flags: int
    seq: int
    timestamp: int
    sample_rate_hz: float
    center_freq_hz: float
    tx_gain_db: float
    count: int

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.flags, self.seq, self.timestamp, self.sample_rate_hz,
                           self.center_freq_hz, self.tx_gain_db, self.count)

    def pack_into(self, buf, offset: int = 0) -> None:
        """Write the 48-byte header into ``buf`` at ``offset`` (e.g. ahead of samples already in place)."""
        HEADER.pack_into(buf, offset, MAGIC, VERSION, self.flags, self.seq, self.timestamp, self.sample_rate_hz,
                         self.center_freq_hz, self.tx_gain_db, self.count)


def encode_message(iq: np.ndarray, header: Header) -> np.ndarray:
    """Header + payload in one ``uint8`` buffer (one copy of the samples). ``iq: complex64[count]``."""
    buf = np.empty(HEADER_SIZE + SAMPLE_BYTES * iq.size, np.uint8)  # no zero-fill: every byte is written
    HEADER.pack_into(buf, 0, MAGIC, VERSION, header.flags, header.seq, header.timestamp,
                     header.sample_rate_hz, header.center_freq_hz, header.tx_gain_db, iq.size)
    buf[HEADER_SIZE:].view(np.complex64)[:] = iq
    return buf


def decode_message(buf: bytes | memoryview, where: str = "message") -> tuple[Header, np.ndarray]:
    """Parse a framed-mode message -> (header, samples: complex64[count], a read-only view of ``buf``)."""
    mv = memoryview(buf)
    if mv.nbytes < HEADER_SIZE:
        raise ValueError(f"{where}: {mv.nbytes} bytes is shorter than the {HEADER_SIZE}-byte sdr-tosc header "
                         "(is the peer in raw mode? then use mode='raw')")
    magic, version, flags, seq, ts, fs, fc, gain, count = HEADER.unpack_from(mv, 0)
    if magic != MAGIC:
        raise ValueError(f"{where}: bad magic {magic!r} (expected {MAGIC!r}); the peer is not sending "
                         "sdr-tosc framed messages (raw GNU Radio stream? use mode='raw')")
    if version != VERSION:
        raise ValueError(f"{where}: wire format version {version}, this sdr-tosc speaks {VERSION}")
    if mv.nbytes != HEADER_SIZE + SAMPLE_BYTES * count:
        raise ValueError(f"{where}: header says {count} samples but payload has "
                         f"{(mv.nbytes - HEADER_SIZE) / SAMPLE_BYTES:g}")
    if count > MAX_MESSAGE_SAMPLES:
        raise ValueError(f"{where}: {count} samples is over the limit of {MAX_MESSAGE_SAMPLES} per message")
    if flags & ~FLAGS_KNOWN:
        raise ValueError(f"{where}: unknown flag bits {flags & ~FLAGS_KNOWN:#x} (known: {FLAGS_KNOWN:#x})")
    if seq > _MAX_U63 or ts > _MAX_U63:
        raise ValueError(f"{where}: seq {seq} / timestamp {ts} is past 2**63 - 1")
    for name, v, lo, hi in (("sample_rate_hz", fs, 0.0, MAX_SAMPLE_RATE_HZ),
                            ("center_freq_hz", fc, 0.0, MAX_CENTER_FREQ_HZ),
                            ("tx_gain_db", gain, *TX_GAIN_DB_RANGE)):
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"{where}: header field {name}={v!r} is outside [{lo:g}, {hi:g}]")
    iq = np.frombuffer(mv, np.complex64, count=count, offset=HEADER_SIZE)
    return Header(flags, seq, ts, fs, fc, gain, count), iq


def check_samples(iq: np.ndarray, where: str = "message", max_abs: float = MAX_SAMPLE_ABS) -> np.ndarray:
    """``iq`` if every I and Q value is finite and within ``+-max_abs``; else ValueError (say how many).

    Two vectorised reductions (min and max propagate NaN), no temporary array: cheap next to the channel.
    """
    if iq.size == 0:
        return iq
    f = iq.view(np.float32) if iq.dtype == np.complex64 else np.asarray(iq).view(np.float64)
    lo, hi = float(f.min()), float(f.max())
    if not (math.isfinite(lo) and math.isfinite(hi) and -max_abs <= lo and hi <= max_abs):
        bad = int(np.count_nonzero(~np.isfinite(f)))
        big = int(np.count_nonzero(np.abs(f[np.isfinite(f)]) > max_abs))
        raise ValueError(f"{where}: {bad} NaN/inf and {big} out-of-range (|x| > {max_abs:g}) sample values")
    return iq


def decode_raw(buf: bytes | memoryview, where: str = "message") -> np.ndarray:
    """Parse a raw-mode message (bare complex64) -> ``complex64[n]`` view."""
    mv = memoryview(buf)
    if mv.nbytes % SAMPLE_BYTES:
        raise ValueError(f"{where}: {mv.nbytes} bytes is not a whole number of complex64 samples "
                         "(8 bytes each); is the peer sending framed messages or another item type?")
    if mv.nbytes >= HEADER_SIZE and bytes(mv[:4]) == MAGIC:  # as float32 that would be ~5.6e10: not IQ
        raise ValueError(f"{where}: the peer sends sdr-tosc framed messages but this side is in raw mode; "
                         "use mode='framed' (or run the peer with --raw)")
    return np.frombuffer(mv, np.complex64)


def encode_request(n: int) -> bytes:
    """A sample request: uint32 count (what gr-zeromq req_source sends)."""
    return struct.pack("<I", n)


def decode_request(buf: bytes | memoryview) -> int:
    """A sample request's count (uint32 or uint64); the server clamps it to ``MAX_MESSAGE_SAMPLES``."""
    mv = memoryview(buf)
    if mv.nbytes == 4:
        return struct.unpack("<I", mv)[0]
    if mv.nbytes == 8:
        return struct.unpack("<Q", mv)[0]
    raise ValueError(f"sample request must be 4 (uint32) or 8 (uint64) bytes, got {mv.nbytes}")


def normalize_endpoint(endpoint: Any, *, for_bind: bool = False, what: str = "endpoint") -> str:
    """Validate a ZMQ endpoint; a bare port number means ``tcp://127.0.0.1:PORT``. Port 0 -> ``*`` for bind."""
    if isinstance(endpoint, int) and not isinstance(endpoint, bool):
        endpoint = f"tcp://127.0.0.1:{endpoint}"
    if not isinstance(endpoint, str):
        raise TypeError(f"{what} must be a string like 'tcp://127.0.0.1:5555', got {type(endpoint).__name__}")
    ep = endpoint.strip()
    if ep.isdigit():
        ep = f"tcp://127.0.0.1:{ep}"
    if ep.startswith(("ipc://", "inproc://")):
        if len(ep.split("://", 1)[1]) == 0:
            raise ValueError(f"{what} {endpoint!r} has no path after the scheme")
        return ep
    m = _TCP_RE.match(ep)
    if not m:
        raise ValueError(f"bad {what} {endpoint!r}: use tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555), "
                         "ipc://PATH or inproc://NAME")
    port = m.group("port")
    if port != "*" and not 0 <= int(port) <= 65535:
        raise ValueError(f"bad {what} {endpoint!r}: port {port} is outside 0..65535")
    if port == "*" or int(port) == 0:
        if not for_bind:
            raise ValueError(f"bad {what} {endpoint!r}: an ephemeral port (0 or *) only makes sense when "
                             "binding; connect to the port the binding side reported")
        ep = f"tcp://{m.group('host')}:*"
    if m.group("host") == "*" and not for_bind:
        raise ValueError(f"bad {what} {endpoint!r}: cannot connect to host '*'; give an address")
    return ep


class ZmqRadio(Radio):
    """A radio whose air is a ZMQ channel simulator (or any peer speaking the wire format above).

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
