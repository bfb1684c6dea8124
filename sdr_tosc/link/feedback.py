"""SNR feedback from the receiver to the transmitter.

The receiver estimates the SNR of every frame (the definition in docs/design.md) and reports it back, so the
transmitter's encoder can condition on the channel it is actually sending through (the channel-adaptive
module chooses its re-weighting and how many symbols to send from that SNR).

The feedback path is a separate, low-rate ZMQ link (PUSH from the receiver, PULL at the transmitter), so it
works the same between two processes on one laptop (channel simulator), or between the two hosts of an
over-the-air demo over Ethernet/Wi-Fi. Messages are small JSON objects (never pickle)::

    {"v": 1, "seq": 17, "snr_db": 11.3, "cfo_hz": 2034.5, "t": 1733000000.123}

Limits (a report outside them is dropped, counted per kind in ``FeedbackReceiver.drops`` and logged once
per kind; it never changes the smoothed SNR and never stops the transmitter): one ZMQ frame of at most
``MAX_REPORT_BYTES`` (1 KiB) of UTF-8 JSON, an object with ``v`` = 1, integer ``seq`` in [0, 2**63),
``snr_db`` in ``SNR_DB_RANGE`` ([-50, 100]), ``cfo_hz`` finite with ``|cfo_hz| <= 1e9``, ``t`` finite
and >= 0. The PULL socket binds 127.0.0.1 by default; anyone who can connect can feed it reports, so bind
it elsewhere only on a trusted network or with CURVE (``SDR_TOSC_CURVE_SECRET`` on both ends, :mod:`sdr_tosc.auth`).

The transmitter smooths reports with an exponential moving average in dB (``alpha``) and falls back to its
initial guess when no report has arrived for ``stale_s`` seconds (a receiver that vanished).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import zmq

from ..auth import secure_client, secure_server
from ..boundary import DropLog, finite, integer, short

log = logging.getLogger(__name__)

FEEDBACK_VERSION = 1
MAX_REPORT_BYTES = 1024
SNR_DB_RANGE = (-50.0, 100.0)
MAX_CFO_HZ = 1e9


def _open(sock: zmq.Socket, endpoint: str, bind: bool) -> str:
    """Check ``endpoint`` (tcp://HOST:PORT with a port in 0..65535, ipc://, inproc://), bind or connect.

    Errors are one-line ValueError/OSError naming the endpoint; the socket is closed on failure.
    """
    from ..radio.zmq import normalize_endpoint  # noqa: PLC0415

    try:
        ep = normalize_endpoint(endpoint, for_bind=bind, what="feedback endpoint")
        if bind:  # CURVE when SDR_TOSC_CURVE_SECRET is set (sdr_tosc.auth); a warning if exposed without
            secure_server(sock, ep, what="feedback socket")
        else:
            secure_client(sock)
        sock.bind(ep) if bind else sock.connect(ep)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise OSError(f"cannot {'bind' if bind else 'connect'} feedback endpoint {endpoint!r}: {exc}") from None
    except (ValueError, TypeError):
        sock.close(0)
        raise
    return ep


def _kind(text: str) -> str:
    """A stable drop-counter kind for a refused report, from the check that refused it."""
    for key, kind in (("one frame", "multipart"), ("bytes is over", "too_large"), ("malformed", "malformed_json"),
                      ("not a JSON object", "not_an_object"), ("version", "bad_version"), ("has no", "missing_field"),
                      ("feedback seq", "bad_seq"), ("feedback snr_db", "bad_snr_db"), ("feedback cfo_hz", "bad_cfo_hz"),
                      ("feedback t ", "bad_time")):
        if key in text:
            return kind
    return "invalid"


@dataclass(frozen=True)
class FeedbackReport:
    seq: int
    snr_db: float
    cfo_hz: float
    time_s: float

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"v": FEEDBACK_VERSION, "seq": self.seq, "snr_db": self.snr_db, "cfo_hz": self.cfo_hz, "t": self.time_s}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeedbackReport:
        """Parse and check one report (module docstring, "Limits"); ValueError says what is wrong."""
        if len(data) > MAX_REPORT_BYTES:
            raise ValueError(f"feedback message of {len(data)} bytes is over {MAX_REPORT_BYTES}")
        try:
            obj = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"malformed feedback message ({exc}): {bytes(data[:80])!r}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"feedback message is not a JSON object: {bytes(data[:80])!r}")
        if obj.get("v") != FEEDBACK_VERSION or isinstance(obj.get("v"), bool):
            raise ValueError(f"unsupported feedback version {short(obj.get('v'))}")
        for key in ("seq", "snr_db", "t"):
            if key not in obj:
                raise ValueError(f"feedback message has no {key!r}")
        return cls(integer("feedback seq", obj["seq"]),
                   finite("feedback snr_db", obj["snr_db"], *SNR_DB_RANGE),
                   finite("feedback cfo_hz", obj.get("cfo_hz", 0.0), -MAX_CFO_HZ, MAX_CFO_HZ),
                   finite("feedback t", obj["t"], 0.0))


class FeedbackSender:
    """Receiver side: ``send(seq, snr_db, cfo_hz)`` never blocks (reports are dropped if nobody listens)."""

    def __init__(self, endpoint: str, bind: bool = False, context: zmq.Context | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 16)
        self._sock.setsockopt(zmq.SNDTIMEO, 0)
        endpoint = _open(self._sock, endpoint, bind)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self.sent = 0
        self.dropped = 0

    def send(self, seq: int, snr_db: float, cfo_hz: float = 0.0) -> bool:
        msg = FeedbackReport(int(seq), float(snr_db), float(cfo_hz), time.time()).to_bytes()
        try:
            self._sock.send(msg, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> FeedbackSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeedbackReceiver:
    """Transmitter side: keeps a smoothed SNR from the reports that have arrived.

    ``snr_db()`` drains pending reports without blocking and returns the EWMA (dB) or ``initial_snr_db``
    when nothing fresh has arrived within ``stale_s`` seconds.
    """

    def __init__(
        self,
        endpoint: str,
        bind: bool = True,
        initial_snr_db: float = 10.0,
        alpha: float = 0.5,
        stale_s: float = 10.0,
        context: zmq.Context | None = None,
    ):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPORT_BYTES)  # libzmq drops larger ones unread
        endpoint = _open(self._sock, endpoint, bind)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self.initial_snr_db = float(initial_snr_db)
        self.alpha = float(alpha)
        self.stale_s = float(stale_s)
        self._ewma: float | None = None
        self._last_time = 0.0
        self.last: FeedbackReport | None = None
        self.received = 0
        self.drops = DropLog(log, "feedback report")

    @property
    def malformed(self) -> int:
        """Reports dropped so far (all kinds; per kind in ``drops.counts``)."""
        return self.drops.total

    def poll(self, timeout_ms: int = 0) -> int:
        """Drain reports (waiting up to ``timeout_ms`` for the first); returns how many arrived."""
        n = 0
        wait = timeout_ms
        while self._sock.poll(wait, zmq.POLLIN):
            wait = 0
            frames = self._sock.recv_multipart()
            try:
                if len(frames) != 1:
                    raise ValueError(f"a feedback report is one frame, got {len(frames)}")
                rep = FeedbackReport.from_bytes(frames[0])
            except ValueError as exc:
                self.drops.drop(_kind(str(exc)), exc)
                continue
            self.last = rep
            self._ewma = rep.snr_db if self._ewma is None else (1 - self.alpha) * self._ewma + self.alpha * rep.snr_db
            self._last_time = time.monotonic()
            self.received += 1
            n += 1
        return n

    @property
    def fresh(self) -> bool:
        """A report arrived within ``stale_s`` seconds (the receiver hears this transmitter)."""
        self.poll(0)
        return self._ewma is not None and time.monotonic() - self._last_time <= self.stale_s

    def snr_db(self) -> float:
        self.poll(0)
        if self._ewma is None or time.monotonic() - self._last_time > self.stale_s:
            return self.initial_snr_db
        return float(self._ewma)

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> FeedbackReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
