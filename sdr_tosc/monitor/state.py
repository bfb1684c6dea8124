"""What the monitor knows about a running link: a bounded history fed by the link's events.

:class:`MonitorState` takes the JSON messages of :mod:`sdr_tosc.link.events` (:meth:`ingest`), keeps the
newest ``history`` frames in fixed-size arrays (memory and work per page update stay flat however long the
link runs) and answers :meth:`snapshot`: the figures' data, binned to at most ``bins`` points per curve.
Received messages are data from the network: anything malformed is counted (``bad_messages``) and dropped.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any

import numpy as np

from ..link.events import STAGES

WATERFALL_ROWS = 120
LAST_IMAGES = 12
MAX_POINTS = 4096


def _num(x: Any) -> float:
    """A finite float from a received value, else NaN."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return math.nan
    x = float(x)
    return x if math.isfinite(x) else math.nan


def _int(x: Any, default: int = -1) -> int:
    return int(x) if isinstance(x, int) and not isinstance(x, bool) and -2**62 < x < 2**62 else default


def _points(v: Any) -> list[list[float]] | None:
    """``[[re...], [im...]]`` of equal lengths, finite, at most MAX_POINTS; None if not that."""
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(p, list) for p in v)):
        return None
    if len(v[0]) != len(v[1]) or len(v[0]) > MAX_POINTS:
        return None
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        return None
    return a.tolist() if a.ndim == 2 and np.all(np.isfinite(a)) else None


class MonitorState:
    """Thread-safe: the subscriber thread ingests while the web server takes snapshots."""

    def __init__(self, history: int = 100_000) -> None:
        if not isinstance(history, int) or history < 1:
            raise ValueError(f"monitor history must be an integer >= 1, got {history!r}")
        self.history = history
        self._lock = threading.Lock()
        self._t_stream = np.full(history, np.nan)
        self._snr = np.full(history, np.nan, np.float32)
        self._k = np.zeros(history, np.int32)
        self._cum_correct = np.zeros(history, np.int64)
        self._cum_scored = np.zeros(history, np.int64)
        self._cum_recv = np.zeros(history, np.int64)
        self._lost_at = np.full(history, -1, np.int64)
        self._lat = np.full((history, len(STAGES)), np.nan, np.float32)
        self.frames = 0  # frames received since the monitor started
        self.correct = 0
        self.scored = 0
        self.sent: int | None = None
        self.lost: int | None = None
        self.truth: collections.deque[tuple[float, float]] = collections.deque(maxlen=history)
        self.constellation: dict[str, Any] | None = None
        self.spectrum: dict[str, Any] | None = None
        self.waterfall: collections.deque[list[float]] = collections.deque(maxlen=WATERFALL_ROWS)
        self.images: collections.deque[dict[str, Any]] = collections.deque(maxlen=LAST_IMAGES)
        self.status: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.channel: dict[str, Any] | None = None  # the simulator's settings, when it is reachable
        self.messages = 0
        self.bad_messages = 0
        self.last_message_t: float | None = None

    # -- input --------------------------------------------------------------------------------------
    def ingest(self, msg: Any) -> bool:
        """Take one decoded message; False (and counted) when it is not a well-formed event."""
        if not isinstance(msg, dict) or not isinstance(msg.get("k"), str):
            self.bad_messages += 1
            return False
        kind = msg["k"]
        with self._lock:
            ok = True
            if kind == "frame":
                self._frame(msg)
            elif kind == "constellation":
                rx = _points(msg.get("rx"))
                tx = _points(msg.get("tx")) if msg.get("tx") is not None else None
                if rx is None:
                    ok = False
                else:
                    self.constellation = {"rx": rx, "tx": tx, "evm_pct": _none(msg.get("evm_pct")),
                                          "snr_db": _none(msg.get("snr_db"))}
            elif kind == "spectrum":
                ok = self._spectrum(msg)
            elif kind == "image":
                ok = self._image(msg)
            elif kind in ("status", "end"):
                self.status = {k: msg.get(k) for k in ("source", "sent", "received", "correct", "counters",
                                                       "events_dropped", "events_sent", "channel_control",
                                                       "sample_rate_hz", "classes", "latency_ms")}
                if _int(msg.get("sent")) >= 0:
                    self.sent = _int(msg.get("sent"))
                if _int(msg.get("lost")) >= 0:
                    self.lost = _int(msg.get("lost"))
                if kind == "end":
                    self.end = msg.get("summary") if isinstance(msg.get("summary"), dict) else {}
            else:
                ok = False
            if ok:
                self.messages += 1
                self.last_message_t = time.time()
            else:
                self.bad_messages += 1
            return ok

    def _frame(self, msg: dict[str, Any]) -> None:
        i = self.frames % self.history
        pred, label = _int(msg.get("pred")), _int(msg.get("label"))
        if label >= 0:
            self.scored += 1
            self.correct += int(pred == label)
        sent, lost = _int(msg.get("sent")), _int(msg.get("lost"))
        if sent >= 0:
            self.sent = max(self.sent or 0, sent)
        if lost >= 0:
            self.lost = max(self.lost or 0, lost)
        self.frames += 1
        self._t_stream[i] = _num(msg.get("t_stream"))
        self._snr[i] = _num(msg.get("snr_db"))
        self._k[i] = max(_int(msg.get("n_symbols"), 0), 0)
        self._cum_correct[i] = self.correct
        self._cum_scored[i] = self.scored
        self._cum_recv[i] = self.frames
        self._lost_at[i] = lost
        lat = msg.get("lat") if isinstance(msg.get("lat"), dict) else {}
        self._lat[i] = [_num(lat.get(s)) for s in STAGES]

    def _spectrum(self, msg: dict[str, Any]) -> bool:
        psd = msg.get("psd_db")
        f0, df = _num(msg.get("f0_hz")), _num(msg.get("df_hz"))
        if not (isinstance(psd, list) and 8 <= len(psd) <= MAX_POINTS) or not (math.isfinite(f0) and df > 0):
            return False
        vals = [_num(v) for v in psd]
        if not all(math.isfinite(v) for v in vals):
            return False
        freqs = [(f0 + j * df) / 1e3 for j in range(len(vals))]
        if self.spectrum is not None and len(self.spectrum["psd_db"]) != len(vals):
            self.waterfall.clear()
        self.spectrum = {"f_khz": freqs, "psd_db": vals, "burst": bool(msg.get("burst"))}
        self.waterfall.append(vals)
        return True

    def _image(self, msg: dict[str, Any]) -> bool:
        shape = msg.get("shape")
        data = msg.get("data")
        if not (isinstance(shape, list) and len(shape) == 3 and all(_int(s) > 0 for s in shape)
                and shape[2] in (1, 3) and shape[0] * shape[1] <= 256 * 256 and isinstance(data, str)):
            return False
        if len(data) != 4 * math.ceil(shape[0] * shape[1] * shape[2] / 3):
            return False
        self.images.append({"index": _int(msg.get("index")), "label": _int(msg.get("label")),
                            "pred": _int(msg.get("pred")), "shape": shape, "data": data})
        return True

    def add_truth(self, records: list[dict[str, Any]], sample_rate_hz: float) -> None:
        """Per-burst truth records of the channel simulator (arrival sample, snr_db)."""
        with self._lock:
            for r in records:
                t, snr = _num(r.get("arrival")), _num(r.get("snr_db"))
                if math.isfinite(t) and math.isfinite(snr) and not r.get("dropped"):
                    self.truth.append((t / sample_rate_hz, snr))

    # -- output -------------------------------------------------------------------------------------
    def snapshot(self, bins: int = 300) -> dict[str, Any]:
        """Everything the page draws, binned to at most ``bins`` points per curve."""
        with self._lock:
            n = min(self.frames, self.history)
            order = (np.arange(self.frames - n, self.frames) % self.history) if n else np.zeros(0, np.int64)
            series = self._series(order, bins)
            lat = self._lat[order] if n else np.zeros((0, len(STAGES)))
            latency = {"p50": {}, "p99": {}}
            for j, stage in enumerate(STAGES):
                col = lat[:, j]
                col = col[np.isfinite(col)]
                for q in (50, 99):
                    latency[f"p{q}"][stage] = round(float(np.percentile(col, q)), 3) if col.size else None
            truth = list(self.truth)
            if len(truth) > 2 * bins:
                truth = truth[:: math.ceil(len(truth) / (2 * bins))] + [truth[-1]]
            # images accounted for: received or known lost (at the end of a run: every image sent)
            done = self.frames + self.lost if self.lost is not None else None
            return {
                "t": time.time(),
                "frames": self.frames, "correct": self.correct, "scored": self.scored, "sent": self.sent,
                "lost": self.lost,
                "accuracy": self.correct / done if done else None,
                "accuracy_received": self.correct / self.scored if self.scored else None,
                "frame_loss": self.lost / done if done else None,
                "series": series,
                "truth": {"t_s": [t for t, _ in truth], "snr_db": [s for _, s in truth]},
                "latency_ms": latency,
                "constellation": self.constellation, "spectrum": self.spectrum,
                "waterfall": list(self.waterfall), "images": list(self.images),
                "status": self.status, "end": self.end, "channel": self.channel,
                "messages": self.messages, "bad_messages": self.bad_messages, "history": self.history,
                "last_message_t": self.last_message_t,
            }

    def _series(self, order: np.ndarray, bins: int) -> dict[str, list]:
        n = order.size
        if n == 0:
            return {"frame": [], "t_s": [], "snr_db": [], "k": [], "accuracy": [], "frame_loss": []}
        edges = np.unique(np.linspace(0, n, min(bins, n) + 1).astype(np.int64))
        starts, ends = edges[:-1], edges[1:]

        def mean(a: np.ndarray) -> list[float | None]:
            sums = np.add.reduceat(np.nan_to_num(a, nan=0.0).astype(np.float64), starts)
            cnt = np.add.reduceat(np.isfinite(a).astype(np.int64), starts)
            return [round(float(s / c), 3) if c else None for s, c in zip(sums, cnt, strict=True)]

        last = order[ends - 1]
        scored = self._cum_scored[last]
        acc = [round(float(c / s), 4) if s else None for c, s in zip(self._cum_correct[last], scored, strict=True)]
        lost = self._lost_at[last]
        recv = self._cum_recv[last]
        loss = [round(float(x) / float(x + r), 4) if x >= 0 else None for r, x in zip(recv, lost, strict=True)]
        return {
            "frame": recv.tolist(),
            "t_s": mean(self._t_stream[order]),
            "snr_db": mean(self._snr[order].astype(np.float64)),
            "k": mean(self._k[order].astype(np.float64)),
            "accuracy": acc,
            "frame_loss": loss,
        }


def _none(x: Any) -> float | None:
    v = _num(x)
    return v if math.isfinite(v) else None
