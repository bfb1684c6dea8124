"""``semantic_rx``: a GNU Radio sink block that decodes semantic bursts from a complex stream.

The block is the link's :class:`~sdr_tosc.link.session.SemanticReceiver` (stream frame search across
buffer boundaries, header check, student decoder at the frame's post-equalisation SNR) reading the block's
input instead of a radio. Input is decoded in chunks of ``chunk_samples`` (fewer repeated searches than
GNU Radio's small work calls). What is left when a finite stream ends is decoded in ``stop``: it counts in
the summary, but its messages may no longer reach other blocks (GNU Radio is shutting down); a transmitter
whose ``tail_samples`` exceed ``chunk_samples`` has every burst decoded while the flowgraph runs.

Message outputs:

* ``frames``: one dict per new image: ``seq, pred, class, snr_db, snr_dec_db, cfo_hz, n_symbols, items,
  start, snr_tx_db`` (+ ``image`` (index in the data set), ``label``, ``correct`` when the block knows the
  images: ``images`` > 0);
* ``snr``: one SNR report per burst ``{seq, snr_db, cfo_hz}``, for ``semantic_tx``'s ``snr`` input;
  with ``feedback`` set the reports also go to that ZMQ endpoint (``sdr-tosc tx --feedback-bind``);
* ``symbols``: a PDU per burst (meta ``{seq, items, snr_db}``, the equalised payload symbols) for a
  constellation sink;
* ``snr_history``: a PDU per burst with the SNR of the last ``history`` bursts (float32), for a time sink.

``images_per_burst`` (0 = the link's default, ``LinkConfig.images_per_burst``) is the most images a burst may
carry: it sizes the frame search, so it must not be below what the transmitter aggregates.

At the end (``stop``) the block writes a JSON summary (images, received, accuracy, mean SNR/CFO, plus
``report_extra``) to ``report``: '-' = one line on stdout, a path = that file (written atomically), '' =
nowhere; the same dict is ``block.summary``. ``stop_when_done`` ends the flowgraph once every one of the
``images`` images arrived; ``timeout_s`` > 0 ends it when no new image arrived for that long.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import time
from typing import Any

import numpy as np
import pmt
from gnuradio import gr

from .common import Scoreboard, check_params

log = logging.getLogger(__name__)


class _Feed:
    """The "radio" the receiver reads: hands out the samples the block was given, in order."""

    def __init__(self, sample_rate_hz: float) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.buf = np.zeros(0, np.complex64)
        self.pos = 0

    def load(self, x: np.ndarray) -> None:
        self.buf, self.pos = x, 0

    def rx(self, n: int) -> np.ndarray:
        out = self.buf[self.pos:self.pos + n]
        if out.size != n:
            raise RuntimeError(f"semantic_rx asked its feed for {n} samples, {out.size} left")
        self.pos += n
        return out


class _Reports:
    """The receiver's feedback sender: each report goes out on the ``snr`` port (and to ZMQ if asked)."""

    def __init__(self, block: semantic_rx, zmq_sender: Any | None) -> None:
        self.block, self.zmq = block, zmq_sender
        self.sent = 0

    def send(self, seq: int, snr_db: float, cfo_hz: float = 0.0) -> bool:
        self.block._burst(int(seq), float(snr_db), float(cfo_hz))
        if self.zmq is not None:
            self.zmq.send(seq, snr_db, cfo_hz)
        self.sent += 1
        return True


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


class semantic_rx(gr.sync_block):  # noqa: N801 (GNU Radio block naming)
    """Complex stream -> semantic frames -> classes and SNR reports as messages (see the module docstring)."""

    def __init__(self, checkpoint: str = "", dataset: str = "fashion-mnist", first_image: int = 0,
                 images: int = 200, images_per_burst: int = 0, sample_rate_hz: float = 1e6,
                 feedback: str = "", stop_when_done: bool = False, timeout_s: float = 0.0, report: str = "",
                 report_extra: dict[str, Any] | None = None, chunk_samples: int = 32768, history: int = 200) -> None:
        gr.sync_block.__init__(self, name="sdr_tosc_semantic_rx", in_sig=[np.complex64], out_sig=None)
        p = check_params("semantic_rx", first_image=(first_image, 0, 10**9), images=(images, 0, 10**9),
                         sample_rate_hz=(sample_rate_hz, 1.0, 1e10), timeout_s=(timeout_s, 0.0, 1e9),
                         chunk_samples=(chunk_samples, 1024, 1 << 24), history=(history, 1, 100_000))
        if report_extra is not None and not isinstance(report_extra, dict):
            raise TypeError(f"semantic_rx: report_extra must be a dict of extra summary fields, "
                            f"got {type(report_extra).__name__}")
        from ..link import FeedbackSender, LinkConfig, SemanticReceiver
        from ..modem import Modem, ModemConfig
        from .loaders import load_images, load_student

        self.student = load_student(checkpoint)
        labels, classes = np.zeros(0, np.int64), ()
        if p["images"]:
            _, labels, classes = load_images(dataset, p["first_image"], p["images"])
        self.board = Scoreboard(labels, classes, p["first_image"])
        try:
            link = {"images_per_burst": images_per_burst} if images_per_burst else {}  # 0: the link's default
            self.link = LinkConfig(rx_chunk_samples=p["chunk_samples"], **link)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"semantic_rx: {exc}") from None
        self.modem = Modem(ModemConfig(sample_rate_hz=p["sample_rate_hz"]))
        self.zmq_sender = FeedbackSender(feedback) if feedback else None
        self.reports = _Reports(self, self.zmq_sender)
        self._feed = _Feed(p["sample_rate_hz"])
        self.link_rx = SemanticReceiver(self.student, self.modem, self._feed, self.link, self.reports)
        self.stop_when_done, self.timeout_s = bool(stop_when_done), p["timeout_s"]
        self.report, self.report_extra = str(report or ""), dict(report_extra or {})
        self.chunk = p["chunk_samples"]
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._history: collections.deque[float] = collections.deque(maxlen=p["history"])
        self._last_new: float | None = None
        self._t0: float | None = None
        self.summary: dict[str, Any] | None = None
        for port in ("frames", "snr", "symbols", "snr_history"):
            self.message_port_register_out(pmt.intern(port))

    # -- decoding ---------------------------------------------------------------------------------------
    def _burst(self, seq: int, snr_db: float, cfo_hz: float) -> None:
        """One burst decoded (called by the link receiver): SNR report and history."""
        self.board.bursts += 1
        self.message_port_pub(pmt.intern("snr"), pmt.to_pmt({"seq": seq, "snr_db": snr_db, "cfo_hz": cfo_hz}))
        self._history.append(snr_db)
        self.message_port_pub(pmt.intern("snr_history"), pmt.cons(
            pmt.make_dict(), pmt.init_f32vector(len(self._history), np.asarray(self._history, np.float32))))

    def _decode(self, x: np.ndarray) -> None:
        self._feed.load(x)
        rx = self.link_rx
        for a in range(0, x.size, self.chunk):
            before = rx.last_frames
            got = rx.receive(min(self.chunk, x.size - a))
            self._publish(got, rx.last_frames if rx.last_frames is not before else [])

    def _publish(self, results: list, frames: list) -> None:  # noqa: ANN001
        for f in frames:
            meta = pmt.to_pmt({"seq": int(f.header.seq), "items": int(f.header.items), "snr_db": float(f.snr_db)})
            sym = np.ascontiguousarray(f.symbols, np.complex64)
            self.message_port_pub(pmt.intern("symbols"), pmt.cons(meta, pmt.init_c32vector(sym.size, sym)))
        for r in results:
            rec = self.board.add(r)
            if rec is None:
                continue
            self._last_new = time.monotonic()
            self.message_port_pub(pmt.intern("frames"), pmt.to_pmt(rec))

    def _drain(self) -> None:
        if self._pending_n:
            x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending, self._pending_n = [], 0
            self._decode(x)

    def work(self, input_items, output_items):  # noqa: ANN001 (GNU Radio signature)
        x = input_items[0]
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        self._pending.append(np.array(x, np.complex64))  # GNU Radio reuses its buffer: keep a copy
        self._pending_n += x.size
        if self._pending_n >= self.chunk:
            self._drain()
        if self.stop_when_done and self.board.complete:
            return -1  # WORK_DONE
        if self.timeout_s and now - (self._last_new or self._t0) > self.timeout_s:
            log.warning("semantic_rx: no new image for %g s; stopping", self.timeout_s)
            return -1
        return len(x)

    def stop(self) -> bool:
        if self.summary is None:
            self._drain()
            self._publish(self.link_rx.flush(), [])
            self._finish()
        if self.zmq_sender is not None:
            self.zmq_sender.close()
            self.reports.zmq = self.zmq_sender = None
        return True

    def _finish(self) -> None:
        s = self.board.summary(bad_headers=self.link_rx.frames_bad_header,
                               wall_s=time.monotonic() - self._t0 if self._t0 is not None else 0.0)
        s.update(self.report_extra)
        self.summary = {k: (_finite(v) if isinstance(v, float) else v) for k, v in s.items()}
        if self.report == "-":  # on a line of its own (gr-iio and UHD write overflow marks like 'O' to stdout)
            print("\n" + json.dumps(self.summary), flush=True)
        elif self.report:
            from ..fileio import atomic_write_json

            try:
                atomic_write_json(self.report, self.summary)
            except OSError as exc:
                log.error("semantic_rx: cannot write the report to %s: %s", self.report, exc)
