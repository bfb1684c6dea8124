"""SNR feedback from the receiver to the transmitter.

The receiver estimates the SNR of every frame (DESIGN.md's definition) and reports it back, so the
transmitter's encoder can condition on the channel it is actually sending through (the channel-adaptive
module chooses its re-weighting and how many symbols to send from that SNR).

The feedback path is a separate, low-rate ZMQ link (PUSH from the receiver, PULL at the transmitter), so it
works the same between two processes on one laptop (channel simulator), or between the two hosts of an
over-the-air demo over Ethernet/Wi-Fi. Messages are small JSON objects (never pickle)::

    {"v": 1, "seq": 17, "snr_db": 11.3, "cfo_hz": 2034.5, "t": 1733000000.123}

The transmitter smooths reports with an exponential moving average in dB (``alpha``) and falls back to its
initial guess when no report has arrived for ``stale_s`` seconds (a receiver that vanished).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass

import zmq

log = logging.getLogger(__name__)

FEEDBACK_VERSION = 1


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
        try:
            obj = json.loads(data.decode("utf-8"))
            if obj.get("v") != FEEDBACK_VERSION:
                raise ValueError(f"unsupported feedback version {obj.get('v')!r}")
            rep = cls(int(obj["seq"]), float(obj["snr_db"]), float(obj.get("cfo_hz", 0.0)), float(obj["t"]))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed feedback message ({exc}): {data[:80]!r}") from None
        if not math.isfinite(rep.snr_db):
            raise ValueError(f"feedback SNR is not finite: {rep.snr_db}")
        return rep


class FeedbackSender:
    """Receiver side: ``send(seq, snr_db, cfo_hz)`` never blocks (reports are dropped if nobody listens)."""

    def __init__(self, endpoint: str, bind: bool = False, context: zmq.Context | None = None):
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, 16)
        self._sock.setsockopt(zmq.SNDTIMEO, 0)
        if bind:
            self._sock.bind(endpoint)
        else:
            self._sock.connect(endpoint)
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
        if bind:
            self._sock.bind(endpoint)
            self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            self._sock.connect(endpoint)
            self.endpoint = endpoint
        self.initial_snr_db = float(initial_snr_db)
        self.alpha = float(alpha)
        self.stale_s = float(stale_s)
        self._ewma: float | None = None
        self._last_time = 0.0
        self.last: FeedbackReport | None = None
        self.received = 0
        self.malformed = 0

    def poll(self, timeout_ms: int = 0) -> int:
        """Drain reports (waiting up to ``timeout_ms`` for the first); returns how many arrived."""
        n = 0
        wait = timeout_ms
        while self._sock.poll(wait, zmq.POLLIN):
            wait = 0
            data = self._sock.recv()
            try:
                rep = FeedbackReport.from_bytes(data)
            except ValueError as exc:
                self.malformed += 1
                log.warning("ignoring feedback: %s", exc)
                continue
            self.last = rep
            self._ewma = rep.snr_db if self._ewma is None else (1 - self.alpha) * self._ewma + self.alpha * rep.snr_db
            self._last_time = time.monotonic()
            self.received += 1
            n += 1
        return n

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
