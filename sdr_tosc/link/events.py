"""Per-frame link events for the live monitor (``sdr-tosc monitor``), and per-stage latency figures.

:class:`LinkEvents` hangs on a :class:`~sdr_tosc.link.session.SemanticTransmitter` and/or
:class:`~sdr_tosc.link.session.SemanticReceiver` (``attach``: it sets their ``events`` attribute) and
times each image through the five stages of the link:

* ``encode``: the student's encoder call for the image's batch;
* ``modulate``: building the batch's bursts (the modem);
* ``air``: from handing the bursts to the TX radio until the RX chunk that completed the burst was read
  (radio queues, the channel, the receiver's buffering);
* ``demodulate``: the stream receiver's work on that chunk (detection, sync, equalisation);
* ``decode``: the student's decoder call for the burst;
* ``end_to_end``: per image, from the batch entering the transmitter to the class being known.

The stages that happen on the transmitter are known only when both ends run in one process (``demo``,
``measure``); a receiver alone (``rx``) reports ``demodulate`` and ``decode``.

With a :class:`EventPublisher` it also publishes what the monitor draws, as JSON (never pickle) on a ZMQ
XPUB socket, one message per ZMQ frame, each an object with a kind ``k``:

* ``frame``: one per received image: ``seq``, ``index``, ``pred``, ``label`` (when the data set is
  known), ``snr_db`` (frame SNR, the project definition), ``snr_dec_db``, ``snr_tx_db``, ``cfo_hz``,
  ``n_symbols``, ``items``, ``t_stream`` (seconds of received stream at the burst's start), ``sent``
  and ``lost`` (images sent so far, and known lost: a later burst arrived first; both only when the
  transmitter is in this process) and ``lat`` (ms per stage);
* ``constellation`` (a few per second): received semantic symbols of one burst and, when the transmitter
  is in this process, the transmitted ones at the same positions, with their EVM;
* ``spectrum`` (a few per second): Welch PSD (dB, centred) of the last received burst;
* ``image`` (a few per second, misclassified ones first): the image sent, its label and prediction;
* ``status`` (once a second) and ``end``: counters of the radios, of events dropped, the channel
  simulator's control endpoint when there is one, and (``end``) the run's summary.

Publishing never slows the link: a message goes out with ``NOBLOCK`` past a send high-water mark and is
dropped (and counted) when the queue is full or the rate budget (``max_rate`` messages per second) is spent.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import math
import threading
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STAGES = ("encode", "modulate", "air", "demodulate", "decode", "end_to_end")
#: Messages a publisher sends per second at most; more are dropped (the link is never slowed).
DEFAULT_MAX_RATE = 5000.0
DEFAULT_HWM = 20000
#: Images whose transmit-side record is kept while they are in flight (older ones are forgotten).
MAX_IN_FLIGHT = 8192
CONSTELLATION_POINTS = 512


class EventPublisher:
    """JSON messages on a ZMQ XPUB socket (bound), dropped rather than queued past ``hwm``/``max_rate``."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:0", hwm: int = DEFAULT_HWM,
                 max_rate: float = DEFAULT_MAX_RATE) -> None:
        import zmq  # noqa: PLC0415

        from ..auth import secure_server  # noqa: PLC0415
        from ..radio.zmq import normalize_endpoint  # noqa: PLC0415

        if not (isinstance(hwm, int) and hwm >= 1):
            raise ValueError(f"event publisher hwm must be an integer >= 1, got {hwm!r}")
        if not (isinstance(max_rate, int | float) and math.isfinite(max_rate) and max_rate > 0):
            raise ValueError(f"event publisher max_rate must be a finite number > 0, got {max_rate!r}")
        endpoint = normalize_endpoint(endpoint, for_bind=True, what="events endpoint")
        self._zmq = zmq
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue answers EAGAIN (counted) instead of a silent drop
        self._sock.setsockopt(zmq.LINGER, 0)
        secure_server(self._sock, endpoint, what="events endpoint")
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.max_rate = float(max_rate)
        self._tokens = self.max_rate
        self._t_tokens = time.monotonic()
        self.sent = 0
        self.dropped = 0
        self.subscribers = 0

    def _poll_subscriptions(self, timeout_ms: int = 0) -> None:
        zmq = self._zmq
        while self._sock.poll(timeout_ms, zmq.POLLIN):
            msg = self._sock.recv(zmq.NOBLOCK)
            if msg[:1] == b"\x01":
                self.subscribers += 1
            elif msg[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)
            timeout_ms = 0

    def wait_subscriber(self, timeout_s: float = 10.0) -> bool:
        """Block until a subscriber is connected (so the first messages are not lost); False on timeout."""
        deadline = time.monotonic() + float(timeout_s)
        while self.subscribers == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._poll_subscriptions(int(min(left, 0.1) * 1000) + 1)
        return True

    def publish(self, msg: dict[str, Any]) -> bool:
        """Send one message now or drop it (False); never blocks."""
        return self.publish_raw(json.dumps(msg, separators=(",", ":"), allow_nan=False).encode())

    def publish_raw(self, data: bytes) -> bool:
        """Send one already encoded JSON message now or drop it (False); never blocks."""
        now = time.monotonic()
        self._tokens = min(self.max_rate, self._tokens + (now - self._t_tokens) * self.max_rate)
        self._t_tokens = now
        if self._tokens < 1.0:
            self.dropped += 1
            return False
        try:
            self._sock.send(data, self._zmq.NOBLOCK)
        except self._zmq.Again:
            self.dropped += 1
            return False
        self._tokens -= 1.0
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
            self._ctx.term()

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _finite(x: Any) -> float | None:
    x = float(x)
    return round(x, 3) if math.isfinite(x) else None


def _json_int(x: int | None) -> str:
    return "null" if x is None else str(int(x))


def _complex_list(z: np.ndarray) -> list[list[float]]:
    z = np.asarray(z, np.complex64)
    return np.round(np.stack([z.real, z.imag]), 4).tolist()


def evm_percent(rx: np.ndarray, tx: np.ndarray) -> float:
    """RMS error of ``rx`` against ``tx`` relative to the RMS of ``tx``, in percent (no gain fitted)."""
    tx = np.asarray(tx, np.complex128)
    p = float(np.mean(np.abs(tx) ** 2))
    if tx.size == 0 or p <= 0:
        return math.nan
    return 100.0 * math.sqrt(float(np.mean(np.abs(np.asarray(rx, np.complex128) - tx) ** 2)) / p)


class _Every:
    """True at most ``hz`` times a second."""

    def __init__(self, hz: float) -> None:
        self.period = 1.0 / hz if hz > 0 else math.inf
        self.next = 0.0

    def __call__(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next = now + self.period
        return True


class LinkEvents:
    """Times the link's stages per image and (with a publisher) publishes the monitor's messages.

    Args:
        publisher: where messages go; None only collects latencies (``latency_ms()``).
        source: the command running the link (shown by the monitor).
        labels: true class per image index (the data set's test labels), to score predictions.
        images: uint8 ``[N, H, W, C]`` images by index, for the monitor's last-images panel.
        classes: class names.
        sample_rate_hz: the modem's sample rate (stream time, spectrum axis).
        channel_control: the channel simulator's control endpoint, announced so the monitor can steer it.
        history: latencies kept for the percentiles (the newest).
    """

    def __init__(self, publisher: EventPublisher | None = None, *, source: str = "link",
                 labels: np.ndarray | None = None, images: np.ndarray | None = None,
                 classes: list[str] | None = None, sample_rate_hz: float = 1e6,
                 channel_control: str | None = None, history: int = 100_000,
                 constellation_hz: float = 4.0, spectrum_hz: float = 8.0, image_hz: float = 3.0,
                 status_hz: float = 1.0) -> None:
        if history < 1:
            raise ValueError(f"LinkEvents history must be >= 1, got {history}")
        self.publisher = publisher
        self.source = source
        self.labels = None if labels is None else np.asarray(labels)
        self.images = images
        self.classes = list(classes) if classes is not None else None
        self.fs = float(sample_rate_hz)
        self.channel_control = channel_control
        self.tx_radio: Any = None
        self.rx_radio: Any = None
        self._sent: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._sent_lock = threading.Lock()  # on_sent runs in the TX worker thread of an overlapped run
        self.sent = 0
        self.lost = 0  # images known lost (a later burst arrived first); at the end: sent - received
        self.received = 0
        self.correct = 0
        self._lat = np.full((history, len(STAGES)), np.nan, np.float32)
        self._n_lat = 0
        self._t_read = 0.0
        self._dem_ms = math.nan
        self._chunk: np.ndarray | None = None
        self._rx_pos = 0  # stream samples read, up to the end of the last chunk
        self._last: tuple | None = None  # (frame, transmitted rows, chunk, stream index of chunk[0])
        self._every_const = _Every(constellation_hz)
        self._every_spec = _Every(spectrum_hz)
        self._every_img = _Every(image_hz)
        self._every_wrong = _Every(2 * image_hz)
        self._every_status = _Every(status_hz)

    # -- wiring -----------------------------------------------------------------------------------
    def attach(self, tx: Any = None, rx: Any = None) -> LinkEvents:
        if tx is not None:
            tx.events = self
            self.tx_radio = tx.radio
        if rx is not None:
            rx.events = self
            self.rx_radio = rx.radio
        return self

    # -- hooks called by the link -----------------------------------------------------------------
    def on_sent(self, records: list[Any], symbols: np.ndarray, t0: float, t_enc: float, t_mod: float,
                t_end: float) -> None:
        enc_ms = (t_enc - t0) * 1e3
        mod_ms = (t_mod - t_enc) * 1e3
        with self._sent_lock:
            for i, r in enumerate(records):
                self._sent[r.seq] = (r.index, t0, enc_ms, mod_ms, t_mod, symbols[i])
            while len(self._sent) > MAX_IN_FLIGHT:
                self._sent.popitem(last=False)
                self.lost += 1
            self.sent += len(records)

    def on_chunk(self, chunk: np.ndarray, t_read: float) -> None:
        self._t_read = t_read
        self._chunk = chunk
        self._rx_pos += int(chunk.size)

    def on_demodulated(self, t: float) -> None:
        self._dem_ms = (t - self._t_read) * 1e3

    def on_frame(self, frame: Any, results: list[Any], t_dec: float, t_done: float) -> None:
        dec_ms = (t_done - t_dec) * 1e3
        now = time.monotonic()
        pub = self.publisher
        tx_rows: list[np.ndarray] = []
        scored: list[tuple[int, int, int]] = []
        wrong: list[tuple[int, int, int]] = []
        with self._sent_lock:
            first = self._sent.get(results[0].seq) if results else None
            if first is not None:  # bursts arrive in order: images sent before this one and still missing are lost
                while self._sent:
                    seq, rec = next(iter(self._sent.items()))
                    if rec[0] >= first[0]:
                        break
                    del self._sent[seq]
                    self.lost += 1
            sent_recs = [self._sent.pop(r.seq, None) for r in results]
        # everything but the image's seq/index/pred/label is the burst's: encoded once, one message per image
        lat_rx = (math.nan, math.nan, math.nan, self._dem_ms, dec_ms, math.nan)
        lat_burst = prefix = prefix_rx = None
        rows = []
        for r, s in zip(results, sent_recs, strict=True):
            if s is not None:
                index, t0, enc_ms, mod_ms, t_mod, row = s
                tx_rows.append(row)
                if lat_burst is None:
                    lat_burst = (enc_ms, mod_ms, (self._t_read - t_mod) * 1e3, self._dem_ms, dec_ms, (t_done - t0) * 1e3)
                lat = lat_burst
            else:
                index = r.seq if self.labels is not None and r.seq < len(self.labels) else None
                lat = lat_rx
            rows.append(lat)
            label = int(self.labels[index]) if index is not None and self.labels is not None else None
            if label is not None:
                self.correct += int(label == r.pred)
                scored.append((index, label, r.pred))
                if label != r.pred:
                    wrong.append((index, label, r.pred))
            if pub is not None:
                if lat is lat_rx:
                    prefix_rx = prefix_rx or self._frame_prefix(r, lat)
                    head = prefix_rx
                else:
                    prefix = prefix or self._frame_prefix(r, lat)
                    head = prefix
                pub.publish_raw(f'{head},"seq":{r.seq},"index":{_json_int(index)},"pred":{r.pred},'
                                f'"label":{_json_int(label)}}}'.encode())
        self._last = (frame, tx_rows if len(tx_rows) == len(results) else None, self._chunk,
                      self._rx_pos - (self._chunk.size if self._chunk is not None else 0))
        if rows:
            n_hist = self._lat.shape[0]
            self._lat[np.arange(self._n_lat, self._n_lat + len(rows)) % n_hist] = rows
            self._n_lat += len(rows)
            self.received += len(rows)
        if pub is None:
            return
        if self._every_const(now):
            self._publish_constellation(frame, tx_rows if len(tx_rows) == len(results) else None)
        if self._every_spec(now):
            self._publish_spectrum(frame)
        if self.images is not None and scored:
            if wrong and self._every_wrong(now):
                self._publish_image(*wrong[-1])
            elif self._every_img(now):
                self._publish_image(*scored[-1])
        if self._every_status(now):
            self.publish_status()

    # -- messages ---------------------------------------------------------------------------------
    def _frame_prefix(self, r: Any, lat: tuple[float, ...]) -> str:
        """The JSON of a frame message's burst-wide fields, without its closing brace."""
        tx_here = self.tx_radio is not None
        head = json.dumps({
            "k": "frame", "t": round(time.time(), 4), "snr_db": _finite(r.snr_db), "snr_dec_db": _finite(r.snr_dec_db),
            "snr_tx_db": None if r.snr_tx_db is None else _finite(r.snr_tx_db), "cfo_hz": _finite(r.cfo_hz),
            "n_symbols": r.n_symbols, "items": r.items, "t_stream": round(r.start / self.fs, 6),
            "sent": self.sent if tx_here else None, "lost": self.lost if tx_here else None,
            "lat": dict(zip(STAGES, (_finite(x) for x in lat), strict=True)),
        }, separators=(",", ":"), allow_nan=False)
        return head[:-1]

    def _publish_constellation(self, frame: Any, tx_rows: list[np.ndarray] | None) -> None:
        rx = np.asarray(frame.symbols, np.complex64).reshape(-1)[:CONSTELLATION_POINTS]
        msg: dict[str, Any] = {"k": "constellation", "t": round(time.time(), 4), "snr_db": _finite(frame.snr_db),
                               "rx": _complex_list(rx), "tx": None, "evm_pct": None}
        if tx_rows:
            tx = np.concatenate(tx_rows).reshape(-1)[:rx.size]
            msg["tx"] = _complex_list(tx)
            msg["evm_pct"] = _finite(evm_percent(rx, tx))
        self.publisher.publish(msg)

    def _publish_spectrum(self, frame: Any) -> None:
        from scipy.signal import welch  # noqa: PLC0415

        chunk = self._chunk
        if chunk is None or chunk.size < 256:
            return
        c0 = self._rx_pos - chunk.size  # stream index of chunk[0]
        a, b = max(int(frame.start) - c0, 0), min(int(frame.end) - c0, chunk.size)
        seg = chunk[a:b] if b - a >= 256 else chunk
        f, pxx = welch(seg, fs=self.fs, nperseg=256, return_onesided=False, detrend=False)
        pxx = np.fft.fftshift(pxx)
        self.publisher.publish({"k": "spectrum", "t": round(time.time(), 4), "burst": bool(b - a >= 256),
                                "f0_hz": float(np.fft.fftshift(f)[0]), "df_hz": float(self.fs / 256),
                                "psd_db": np.round(10 * np.log10(pxx + 1e-20), 1).tolist()})

    def _publish_image(self, index: int, label: int, pred: int) -> None:
        if not 0 <= index < len(self.images):
            return
        img = np.ascontiguousarray(self.images[index], np.uint8)
        if img.ndim == 2:
            img = img[:, :, None]
        self.publisher.publish({"k": "image", "t": round(time.time(), 4), "index": int(index), "label": label,
                                "pred": int(pred), "shape": list(img.shape),
                                "data": base64.b64encode(img.tobytes()).decode()})

    def counters(self) -> dict[str, Any]:
        out = {}
        for name, radio in (("tx", self.tx_radio), ("rx", self.rx_radio)):
            if radio is not None and hasattr(radio, "counters"):
                out[name] = radio.counters.as_dict()
        return out

    def publish_status(self, kind: str = "status", summary: dict[str, Any] | None = None) -> None:
        if self.publisher is None:
            return
        msg: dict[str, Any] = {
            "k": kind, "t": round(time.time(), 4), "source": self.source, "sent": self.sent,
            "lost": (self.sent - self.received) if kind == "end" else self.lost,
            "received": self.received, "correct": self.correct, "counters": self.counters(),
            "events_dropped": self.publisher.dropped, "events_sent": self.publisher.sent,
            "channel_control": self.channel_control, "sample_rate_hz": self.fs, "classes": self.classes,
        }
        if kind == "end":
            msg["latency_ms"] = self.latency_ms()
        if summary is not None:
            msg["summary"] = json.loads(json.dumps(summary, default=float).replace("NaN", "null"))
        self.publisher.publish(msg)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Publish the final status (kind ``end``) with the run's summary."""
        self.publish_status("end", summary)

    # -- figures ----------------------------------------------------------------------------------
    def last_burst(self) -> dict[str, Any] | None:
        """The last burst received: its equalised symbols, the transmitted ones (None when the transmitter
        is elsewhere), its EVM (%), its SNR and its samples (the part in the last chunk read)."""
        if self._last is None:
            return None
        frame, rows, chunk, c0 = self._last
        rx = np.asarray(frame.symbols, np.complex64).reshape(-1)
        tx = np.concatenate(rows).reshape(-1)[:rx.size] if rows else None
        iq = None
        if chunk is not None:
            a, b = max(int(frame.start) - c0, 0), min(int(frame.end) - c0, chunk.size)
            iq = chunk[a:b] if b > a else None
        return {"rx": rx, "tx": tx, "evm_pct": evm_percent(rx, tx) if tx is not None else None,
                "snr_db": float(frame.snr_db), "iq": iq, "start": int(frame.start), "end": int(frame.end)}

    def latency_ms(self) -> dict[str, dict[str, float | None]]:
        """``{"p50": {stage: ms}, "p99": {...}}`` over the newest ``history`` images (None: not measured)."""
        lat = self._lat[:min(self._n_lat, self._lat.shape[0])]
        out: dict[str, dict[str, float | None]] = {"p50": {}, "p99": {}}
        for j, stage in enumerate(STAGES):
            col = lat[:, j]
            col = col[np.isfinite(col)]
            for q in (50, 99):
                out[f"p{q}"][stage] = round(float(np.percentile(col, q)), 3) if col.size else None
        return out


def add_events_args(p: Any, monitor: bool = False) -> None:
    """``--events ENDPOINT`` (and, for ``demo``, ``--monitor [PORT]``) on a link command."""
    g = p.add_argument_group("live monitor (sdr-tosc monitor)")
    g.add_argument("--events", metavar="ENDPOINT",
                   help="publish per-frame events on this ZMQ endpoint (bound here, e.g. tcp://127.0.0.1:5610) "
                        "for 'sdr-tosc monitor --connect ENDPOINT'")
    g.add_argument("--events-wait-s", type=float, default=3.0, metavar="S",
                   help="with --events, wait this long for a monitor to subscribe before starting "
                        "(default %(default)s s; 0: start at once)")
    if monitor:
        g.add_argument("--monitor", nargs="?", type=int, const=0, metavar="PORT",
                       help="also start the monitor page on 127.0.0.1:PORT (default any free port) and print its URL")
        g.add_argument("--monitor-keep", action="store_true",
                       help="with --monitor, keep the page served after the run until Ctrl-C")


def publisher_from_args(args: Any) -> EventPublisher | None:
    """The publisher ``--events``/``--monitor`` ask for (None when neither is given)."""
    endpoint = getattr(args, "events", None)
    if endpoint is None and getattr(args, "monitor", None) is None:
        return None
    wait = getattr(args, "events_wait_s", 3.0)
    if not (isinstance(wait, int | float) and math.isfinite(wait) and wait >= 0):
        raise ValueError(f"--events-wait-s {wait!r}: must be a finite number >= 0")
    return EventPublisher(endpoint or "tcp://127.0.0.1:0")
