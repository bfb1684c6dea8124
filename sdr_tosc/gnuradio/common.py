"""Parts of the GNU Radio blocks that need no GNU Radio: SNR conversions, feedback from messages, scoring.

SNR and gr-channels: ``channels.channel_model(noise_voltage, ...)`` adds circular complex Gaussian noise with
``E|w|^2 = noise_voltage**2`` per sample. The project's SNR is the burst's mean power over its samples divided
by that variance. A modem burst has mean power ``10**(-backoff_db / 10)`` (every OFDM symbol has unit power
before the back-off; the student's symbols have unit mean power), so

    noise_voltage = sqrt(10**(-backoff_db / 10) / 10**(snr_db / 10))

(:func:`noise_voltage_for_snr`; 10 dB with the default 10 dB back-off: 0.1). ``channel_model``'s frequency
offset is in cycles per sample: ``cfo_hz / sample_rate_hz``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..boundary import DropLog, finite, integer, short
from ..link.feedback import MAX_CFO_HZ, SNR_DB_RANGE

log = logging.getLogger(__name__)

#: Block files for GNU Radio Companion (``*.block.yml``), shipped in the package.
GRC_DIR = Path(__file__).resolve().parent / "grc"


def burst_power_nominal(backoff_db: float = 10.0) -> float:
    """Mean power per sample of a modem burst with unit-power payload symbols (``ModemConfig.backoff_db``)."""
    return 10.0 ** (-finite("backoff_db", backoff_db, 0.0, 30.0) / 10.0)


def noise_voltage_for_snr(snr_db: float, backoff_db: float = 10.0) -> float:
    """``channel_model`` ``noise_voltage`` that gives ``snr_db`` (the project's SNR) for modem bursts."""
    snr = finite("snr_db", snr_db, -50.0, 100.0)
    return math.sqrt(burst_power_nominal(backoff_db) / 10.0 ** (snr / 10.0))


def snr_db_for_noise_voltage(noise_voltage: float, backoff_db: float = 10.0) -> float:
    """The project's SNR of modem bursts under ``channel_model`` noise of ``noise_voltage`` (inverse of above)."""
    v = finite("noise_voltage", noise_voltage, 0.0)
    if v == 0.0:
        return math.inf
    return 10.0 * math.log10(burst_power_nominal(backoff_db) / (v * v))


def parse_snr_report(obj: Any) -> tuple[int | None, float, float]:
    """An SNR report from a message (already converted from PMT) -> ``(seq, snr_db, cfo_hz)``.

    Accepted: a number (the SNR in dB); a dict with ``snr_db`` (and optional ``seq``, ``cfo_hz``), which is
    what :class:`~sdr_tosc.gnuradio.rx.semantic_rx` sends; a PDU ``(meta dict, data)`` whose meta is such a
    dict. Limits as the ZMQ feedback (:mod:`sdr_tosc.link.feedback`): ValueError says what is wrong.
    """
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], dict):
        obj = obj[0]  # a PDU: the report is in its metadata
    if isinstance(obj, dict):
        if "snr_db" not in obj:
            raise ValueError(f"SNR report has no 'snr_db' key: {short(obj)}")
        seq = obj.get("seq")
        if seq is not None:
            seq = integer("SNR report seq", seq)
        snr = finite("SNR report snr_db", obj["snr_db"], *SNR_DB_RANGE)
        cfo = finite("SNR report cfo_hz", obj.get("cfo_hz", 0.0), -MAX_CFO_HZ, MAX_CFO_HZ)
        return seq, snr, cfo
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    return None, finite("SNR report", obj, *SNR_DB_RANGE), 0.0


class MessageFeedback:
    """The transmitter's view of SNR reports that arrive as GNU Radio messages.

    The same contract as :class:`sdr_tosc.link.feedback.FeedbackReceiver` (``snr_db()``, ``fresh``,
    ``received``): an EWMA in dB with weight ``alpha``, the initial guess when no report arrived within
    ``stale_s`` seconds. Thread-safe: GNU Radio delivers messages on another thread than ``work``.
    """

    def __init__(self, initial_snr_db: float = 10.0, alpha: float = 0.5, stale_s: float = 10.0) -> None:
        self.initial_snr_db = finite("initial_snr_db", initial_snr_db, *SNR_DB_RANGE)
        self.alpha = finite("alpha", alpha, 0.0, 1.0)
        if self.alpha == 0.0:
            raise ValueError("alpha must be in (0, 1], got 0")
        self.stale_s = finite("stale_s", stale_s, 0.0)
        self._lock = threading.Lock()
        self._ewma: float | None = None
        self._last_time = 0.0
        self.received = 0
        self.last: tuple[int | None, float, float] | None = None
        self.drops = DropLog(log, "SNR report message")

    def report(self, obj: Any) -> bool:
        """Take one report (see :func:`parse_snr_report`); a bad one is dropped, counted and logged once."""
        try:
            rep = parse_snr_report(obj)
        except ValueError as exc:
            self.drops.drop(str(exc).split(" must ")[0].split(":")[0][:40], exc)
            return False
        with self._lock:
            snr = rep[1]
            self._ewma = snr if self._ewma is None else (1 - self.alpha) * self._ewma + self.alpha * snr
            self._last_time = time.monotonic()
            self.received += 1
            self.last = rep
        return True

    @property
    def fresh(self) -> bool:
        with self._lock:
            return self._ewma is not None and time.monotonic() - self._last_time <= self.stale_s

    def snr_db(self) -> float:
        with self._lock:
            if self._ewma is None or time.monotonic() - self._last_time > self.stale_s:
                return self.initial_snr_db
            return float(self._ewma)


class Scoreboard:
    """Received images against the data set's labels: one record per new image, a summary at the end.

    ``labels`` may be empty (the receiver does not know what was sent): then no accuracy is computed.
    Sequence numbers are image positions in the run (as ``sdr-tosc tx`` numbers them), so ``labels[seq]``.
    """

    def __init__(self, labels: np.ndarray, classes: tuple[str, ...] = (), first_image: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.classes = tuple(classes)
        self.first_image = int(first_image)
        self.results: dict[int, dict[str, Any]] = {}
        self.duplicates = 0
        self.other_run = 0
        self.bursts = 0

    @property
    def expected(self) -> int:
        return int(self.labels.size)

    @property
    def complete(self) -> bool:
        return self.expected > 0 and len(self.results) >= self.expected

    def add(self, r: Any) -> dict[str, Any] | None:
        """A :class:`~sdr_tosc.link.session.FrameResult` -> its record (a plain dict), or None if not new."""
        seq = int(r.seq)
        if self.expected and seq >= self.expected:
            self.other_run += 1
            return None
        if seq in self.results:
            self.duplicates += 1
            return None
        pred = int(r.pred)
        rec: dict[str, Any] = {
            "seq": seq, "pred": pred, "class": self.classes[pred] if 0 <= pred < len(self.classes) else str(pred),
            "snr_db": float(r.snr_db), "snr_dec_db": float(r.snr_dec_db), "cfo_hz": float(r.cfo_hz),
            "n_symbols": int(r.n_symbols), "items": int(r.items), "start": int(r.start),
            "snr_tx_db": float(r.snr_tx_db) if r.snr_tx_db is not None else float("nan"),
        }
        if self.expected:
            rec["image"] = self.first_image + seq  # index in the data set's test split
            rec["label"] = int(self.labels[seq])
            rec["correct"] = rec["label"] == pred
        self.results[seq] = rec
        return rec

    def summary(self, **extra: Any) -> dict[str, Any]:
        recs = list(self.results.values())
        n = self.expected
        correct = sum(int(r.get("correct", False)) for r in recs)
        out: dict[str, Any] = {
            "images": n, "received": len(recs),
            "accuracy": correct / n if n else None,
            "accuracy_received": correct / len(recs) if (recs and n) else None,
            "frame_loss": 1.0 - len(recs) / n if n else None,
            "snr_db_mean": float(np.mean([r["snr_db"] for r in recs])) if recs else None,
            "snr_dec_db_mean": float(np.mean([r["snr_dec_db"] for r in recs])) if recs else None,
            "cfo_hz_mean": float(np.mean([r["cfo_hz"] for r in recs])) if recs else None,
            "bursts": self.bursts, "duplicates": self.duplicates,
        }
        out.update(extra)
        return out


def check_params(block: str, **params: tuple[Any, float, float]) -> dict[str, Any]:
    """Block parameters ``name=(value, lo, hi)`` checked at construction: ValueError naming block and value."""
    out = {}
    for name, (value, lo, hi) in params.items():
        try:
            if isinstance(lo, int) and isinstance(hi, int):
                out[name] = integer(name, value, lo, hi)
            else:
                out[name] = finite(name, value, lo, hi)
        except ValueError as exc:
            raise ValueError(f"{block}: {exc}") from None
    return out


def parse_taps(text: str) -> list[complex]:
    """Channel taps from a command line: comma-separated complex numbers, e.g. ``"1, 0.3+0.2j, 0.1j"``.

    Parsed with :func:`complex` (never ``eval``); ValueError says what is wrong.
    """
    if not isinstance(text, str):
        raise TypeError(f"taps must be a string like '1, 0.3+0.2j', got {type(text).__name__}")
    out = []
    for part in text.split(","):
        p = part.strip().replace(" ", "")
        try:
            c = complex(p)
        except ValueError:
            raise ValueError(f"taps {text!r}: {part.strip()!r} is not a complex number (use e.g. '1, 0.3+0.2j')") from None
        if not (math.isfinite(c.real) and math.isfinite(c.imag)):
            raise ValueError(f"taps {text!r}: {part.strip()!r} is not finite")
        out.append(c)
    if not out or len(out) > 64:
        raise ValueError(f"taps {text!r}: give 1 to 64 taps")
    if not any(out):
        raise ValueError(f"taps {text!r}: all taps are zero (nothing would get through)")
    return out
