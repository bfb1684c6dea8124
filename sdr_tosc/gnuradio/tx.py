"""``semantic_tx``: a GNU Radio source block that sends data-set images as semantic bursts.

The block is the link's :class:`~sdr_tosc.link.session.SemanticTransmitter` (student encoder, images
aggregated into bursts, header form chosen from the fed-back SNR) writing its bursts to a complex stream
instead of a radio. Each burst is preceded by ``gap_samples`` zeros (silence the receiver's frame search
and a hardware receiver's gain control see before the burst); gap plus burst is one packet of a tagged
stream:

* ``len_tag_key`` (default ``packet_len``) = packet length, at the packet's first sample (for sinks that
  send bursts by length tag; '' for none);
* ``tx_sob`` = True at the first and ``tx_eob`` = True at the last sample (gr-uhd burst tags);
* ``sdr_tosc_burst`` = ``{seq, items, n_symbols, snr_tx_db, robust, samples}`` at the first sample.

``images_per_burst`` and ``batch_size`` 0 take the link's defaults (``LinkConfig``, as ``sdr-tosc tx``).

Message input ``snr``: SNR reports (a number, or a dict/PDU meta with ``snr_db``; what ``semantic_rx``
sends on its ``snr`` port). With ``feedback_bind`` set the block also listens there for ``sdr-tosc rx``'s
ZMQ reports (``--feedback``); the source with a fresh report steers (the port when both are fresh). The stream ends after ``repeat`` rounds of ``images`` images (``repeat`` 0:
until the flowgraph is stopped), followed by ``tail_samples`` zeros.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import numpy as np
import pmt
from gnuradio import gr

from .common import MessageFeedback, check_params

log = logging.getLogger(__name__)


class _BurstQueue:
    """The "radio" the transmitter writes to: keeps each burst for the block's output."""

    def __init__(self, sample_rate_hz: float) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.bursts: list[np.ndarray] = []

    def tx(self, iq: np.ndarray) -> None:
        self.bursts.append(np.asarray(iq, np.complex64))


class _EitherFeedback:
    """Reports from the ``snr`` port and from ZMQ: the fresh source steers (the port when both are fresh)."""

    def __init__(self, port: MessageFeedback, zmq: Any) -> None:
        self.port, self.zmq = port, zmq

    @property
    def received(self) -> int:
        return self.port.received + self.zmq.received

    @property
    def fresh(self) -> bool:
        return self.port.fresh or self.zmq.fresh

    def snr_db(self) -> float:
        if self.port.fresh or not self.zmq.fresh:
            return self.port.snr_db()  # the initial guess when neither is fresh
        return self.zmq.snr_db()


class semantic_tx(gr.sync_block):  # noqa: N801 (GNU Radio block naming)
    """Images of ``dataset`` -> tagged complex stream of semantic bursts (see the module docstring)."""

    def __init__(self, checkpoint: str = "", dataset: str = "fashion-mnist", first_image: int = 0,
                 images: int = 200, repeat: int = 1, images_per_burst: int = 0, batch_size: int = 0,
                 robust_below_db: float = 5.0, initial_snr_db: float = 10.0, adaptive: bool = True,
                 sample_rate_hz: float = 1e6, gap_samples: int = 400, tail_samples: int = 400,
                 len_tag_key: str = "packet_len", feedback_bind: str = "", stale_s: float = 10.0) -> None:
        gr.sync_block.__init__(self, name="sdr_tosc_semantic_tx", in_sig=None, out_sig=[np.complex64])
        p = check_params("semantic_tx", first_image=(first_image, 0, 10**9), images=(images, 1, 10**9),
                         repeat=(repeat, 0, 10**9), gap_samples=(gap_samples, 0, 1 << 24),
                         tail_samples=(tail_samples, 0, 1 << 24), sample_rate_hz=(sample_rate_hz, 1.0, 1e10),
                         stale_s=(stale_s, 0.0, 1e9))
        from ..link import FeedbackReceiver, LinkConfig, SemanticTransmitter
        from ..modem import Modem, ModemConfig
        from .loaders import load_images, load_student

        self.student = load_student(checkpoint)
        self.images, self.labels, self.classes = load_images(dataset, p["first_image"], p["images"])
        try:
            sizes = {k: v for k, v in (("batch_size", batch_size), ("images_per_burst", images_per_burst)) if v}
            self.link = LinkConfig(robust_below_db=robust_below_db, initial_snr_db=initial_snr_db, **sizes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"semantic_tx: {exc}") from None
        self.modem = Modem(ModemConfig(sample_rate_hz=p["sample_rate_hz"]))
        self.repeat, self.gap, self.tail = p["repeat"], p["gap_samples"], p["tail_samples"]
        self.len_tag_key = str(len_tag_key or "")
        self.port_feedback = MessageFeedback(self.link.initial_snr_db, self.link.feedback_alpha, p["stale_s"])
        self.zmq_feedback = None
        if feedback_bind:
            self.zmq_feedback = FeedbackReceiver(feedback_bind, bind=True, initial_snr_db=self.link.initial_snr_db,
                                                 alpha=self.link.feedback_alpha, stale_s=p["stale_s"])
        fb = _EitherFeedback(self.port_feedback, self.zmq_feedback) if self.zmq_feedback else self.port_feedback
        self._radio = _BurstQueue(p["sample_rate_hz"])
        self.link_tx = SemanticTransmitter(self.student, self.modem, self._radio, self.link, fb if adaptive else None)
        self._queue: collections.deque[tuple[np.ndarray, dict[str, Any] | None]] = collections.deque()
        self._pos = 0  # samples of the queue's first packet already written
        self._round = 0
        self._b0 = 0  # next image of the current round
        self._ended = False
        self.bursts_out = 0
        self.burst_power_sum = 0.0  # for the mean power of the bursts sent (checks the SNR conversion)
        self.message_port_register_in(pmt.intern("snr"))
        self.set_msg_handler(pmt.intern("snr"), self._on_snr)

    # -- messages ---------------------------------------------------------------------------------------
    def _on_snr(self, msg: Any) -> None:
        try:
            obj = pmt.to_python(msg)
        except Exception as exc:  # noqa: BLE001 - a PMT type pmt cannot convert: dropped like any bad report
            self.port_feedback.drops.drop("unconvertible PMT", exc)
            return
        self.port_feedback.report(obj)

    @property
    def reports_received(self) -> int:
        """SNR reports taken so far (messages and ZMQ)."""
        return self.port_feedback.received + (self.zmq_feedback.received if self.zmq_feedback else 0)

    @property
    def burst_power_mean(self) -> float:
        return self.burst_power_sum / self.bursts_out if self.bursts_out else float("nan")

    # -- stream -----------------------------------------------------------------------------------------
    def _refill(self) -> bool:
        """Encode the next batch into packets; False when the run is over (tail queued once)."""
        if self._ended:
            return False
        if self.repeat and self._round >= self.repeat:
            self._ended = True
            if self.tail:
                self._queue.append((np.zeros(self.tail, np.complex64), None))
                return True
            return False
        b0 = self._b0
        batch = self.images[b0:b0 + self.link.batch_size]
        self._radio.bursts.clear()
        sent = self.link_tx.send(batch, first_index=b0)
        firsts = [s for s in sent if s.first]
        items = collections.Counter(s.burst for s in sent)
        gap = np.zeros(self.gap, np.complex64)
        for iq, s in zip(self._radio.bursts, firsts, strict=True):
            meta = {"seq": int(s.seq), "items": int(items[s.burst]), "n_symbols": int(s.n_symbols),
                    "snr_tx_db": float(s.snr_tx_db), "robust": bool(s.robust), "samples": int(iq.size)}
            p = iq.real.astype(np.float64) ** 2 + iq.imag.astype(np.float64) ** 2
            self.burst_power_sum += float(p.mean())
            self.bursts_out += 1
            self._queue.append((np.concatenate([gap, iq]) if self.gap else iq, meta))
        self._b0 += len(batch)
        if self._b0 >= len(self.images):
            self._b0 = 0
            self._round += 1
        return True

    def _tag(self, offset: int, key: str, value: Any) -> None:
        self.add_item_tag(0, offset, pmt.intern(key), pmt.to_pmt(value), pmt.intern(self.alias()))

    def work(self, input_items, output_items):  # noqa: ANN001 (GNU Radio signature)
        out = output_items[0]
        n, w = len(out), 0
        base = self.nitems_written(0)
        while w < n:
            if not self._queue and not self._refill():
                break
            pkt, meta = self._queue[0]
            if self._pos == 0:
                if self.len_tag_key:
                    self._tag(base + w, self.len_tag_key, int(pkt.size))
                self._tag(base + w, "tx_sob", True)
                if meta is not None:
                    self._tag(base + w, "sdr_tosc_burst", meta)
            take = min(n - w, pkt.size - self._pos)
            out[w:w + take] = pkt[self._pos:self._pos + take]
            self._pos += take
            w += take
            if self._pos == pkt.size:
                self._tag(base + w - 1, "tx_eob", True)
                self._queue.popleft()
                self._pos = 0
        if w == 0:
            return -1  # WORK_DONE: every round sent
        return w

    def stop(self) -> bool:
        if self.zmq_feedback is not None:  # free the port; reports from now on come only as messages
            if isinstance(self.link_tx.feedback, _EitherFeedback):
                self.link_tx.feedback = self.port_feedback
            self.zmq_feedback.close()
            self.zmq_feedback = None
        return True
