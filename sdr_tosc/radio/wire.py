"""THE definition of the sdr-tosc ZMQ wire format (shared by the ZMQ radio, the channel simulator, the
virtual radios and the GNU Radio blocks): header, limits, message and request codecs, endpoints.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

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
