"""The semantic link: transmitter, receiver and a run that ties them to radios.

Transmitter (:class:`SemanticTransmitter`): images -> ``student.encode(images, snr_fb)`` -> modem bursts of
up to ``LinkConfig.images_per_burst`` (128) images each (aggregation: one preamble and header per burst; header
``seq`` = the first image's, ``items`` = images in the burst, ``length`` = their symbols,
``kind=KIND_SEMANTIC``, ``snr_report_db`` = the SNR the encoder was conditioned on, ``robust`` = the long
low-SNR header) -> ``radio.tx``. ``snr_fb`` is the receiver's smoothed report from the feedback channel
(:mod:`sdr_tosc.link.feedback`), or the initial guess before any report arrived. The long header is used
below ``LinkConfig.robust_below_db`` and whenever no fresh report arrives (the receiver may not hear us).

Receiver (:class:`SemanticReceiver`): ``radio.rx`` chunks -> :class:`~sdr_tosc.modem.StreamReceiver`
-> for every burst whose header CRC passed: ``student.decode(symbols, snr_dec)`` for each of its images ->
classes, and one feedback report ``(seq, snr_db, cfo_hz)`` per burst to the transmitter. A lost burst loses
all of its images.

``snr_dec`` is the frame's post-equalisation SNR: the modem reports, per payload symbol, the noise variance
after zero-forcing (``RxFrame.noise_var``, unit-power symbols), so ``snr_dec = -10 log10(mean(noise_var))``.
On a flat channel it equals the frame SNR (docs/design.md definition) plus the OFDM spreading term
``10 log10(fft_size / used_bins)``; on a frequency-selective channel it includes the ZF noise enhancement,
which is what the decoder actually faces. The frame SNR (``RxFrame.snr_db``) is what is reported and fed
back, so every figure the user sees uses the one SNR definition.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..modem import FrameHeader, Modem, RxFrame, StreamReceiver
from .feedback import FeedbackReceiver, FeedbackSender

log = logging.getLogger(__name__)

KIND_SEMANTIC = 0
SEQ_MOD = 65536


@dataclass(frozen=True)
class LinkConfig:
    """Settings of a link run (saved beside results).

    Attributes:
        batch_size: images encoded per call (with one SNR from the feedback).
        images_per_burst: images aggregated into one burst (1..128; fewer when their symbols exceed the
            modem's ``max_payload_symbols``, 8191). 128 puts about 52 % of the air on payload symbols at 10 dB
            (40 symbols per image) and 47 % at 20 dB (16 symbols per image).
        robust_below_db: fed-back SNR below which bursts carry the long (low-SNR) header.
        initial_snr_db: SNR the transmitter assumes before the first feedback report.
        pack_bursts: send a batch as one ``tx`` call with ``gap_samples`` zeros between bursts (real radios);
            otherwise one ``tx`` call per burst (the channel simulator then spaces bursts itself and reports
            a true SNR per burst).
        gap_samples: zeros between packed bursts.
        rx_chunk_samples: samples per ``radio.rx`` call.
        rx_slack_samples: extra samples read after a batch's airtime before declaring missing frames lost.
        feedback_alpha: EWMA weight of a new SNR report at the transmitter.
    """

    batch_size: int = 128
    images_per_burst: int = 128
    robust_below_db: float = 5.0
    initial_snr_db: float = 10.0
    pack_bursts: bool = False
    gap_samples: int = 400
    rx_chunk_samples: int = 32768
    rx_slack_samples: int = 60000
    feedback_alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"LinkConfig.batch_size must be >= 1, got {self.batch_size}")
        if not 1 <= self.images_per_burst <= 128:
            raise ValueError(f"LinkConfig.images_per_burst must be from 1 to 128, got {self.images_per_burst}")
        if not math.isfinite(self.robust_below_db):
            raise ValueError(f"LinkConfig.robust_below_db must be finite, got {self.robust_below_db}")
        if not math.isfinite(self.initial_snr_db):
            raise ValueError(f"LinkConfig.initial_snr_db must be finite, got {self.initial_snr_db}")
        if self.gap_samples < 0 or self.rx_chunk_samples < 1 or self.rx_slack_samples < 0:
            raise ValueError("LinkConfig: gap_samples/rx_slack_samples must be >= 0 and rx_chunk_samples >= 1")
        if not 0 < self.feedback_alpha <= 1:
            raise ValueError(f"LinkConfig.feedback_alpha must be in (0, 1], got {self.feedback_alpha}")


@dataclass
class SentFrame:
    """One image sent (several share a burst)."""

    seq: int
    index: int  # position of the image in the run
    n_symbols: int
    snr_tx_db: float  # SNR the encoder was conditioned on
    burst_samples: int  # samples of the burst that carried it (counted once per burst: see ``first``)
    burst: int = 0  # burst number in the run
    first: bool = True  # the first image of its burst
    air_samples: float = 0.0  # this image's share of the air: (burst + gap) / images in the burst
    robust: bool = False


@dataclass
class FrameResult:
    """One received semantic frame."""

    seq: int
    pred: int
    snr_db: float  # frame SNR estimate (docs/design.md definition)
    snr_dec_db: float  # post-equalisation SNR given to the decoder
    cfo_hz: float
    n_symbols: int
    start: int  # first sample of the burst that carried it
    snr_tx_db: float | None  # what the encoder assumed (from the header)
    end: int = 0  # one past the burst's last sample
    items: int = 1  # images in that burst


def decoder_snr_db(frame: RxFrame) -> float:
    """Post-equalisation SNR of a frame's payload symbols (see the module docstring)."""
    nv = np.asarray(frame.noise_var, dtype=np.float64)
    if nv.size == 0 or not np.all(np.isfinite(nv)):
        return float(frame.snr_db)
    return float(-10.0 * np.log10(max(float(nv.mean()), 1e-12)))


class FeedbackTransmitter:
    """What every transmitter of the link shares: a modem and a radio, the fed-back SNR and the header form
    it implies, and counters of images, bursts and air samples sent."""

    def __init__(self, modem: Modem, radio: Any, config: LinkConfig = LinkConfig(),
                 feedback: FeedbackReceiver | None = None, after_send: Callable[[], None] | None = None):
        """``after_send`` runs after each batch (the loopback uses it to wait for the simulator)."""
        self.modem, self.radio, self.config, self.feedback = modem, radio, config, feedback
        self.after_send = after_send
        self.events: Any = None  # sdr_tosc.link.events.LinkEvents (live monitor), or None
        self.sent = 0
        self.bursts = 0
        self.air_samples = 0

    def current_snr_db(self) -> float:
        return self.feedback.snr_db() if self.feedback is not None else self.config.initial_snr_db

    def link_state(self) -> tuple[float, bool]:
        """(SNR to send for, long header?) from one look at the feedback: the long header when the fed-back SNR
        is low, or when no fresh report says the receiver hears us.

        Freshness is read first: a report that lands between the two reads then only pairs a long header with
        the new SNR (safe). Read the other way round, the initial guess (10 dB, no report yet) could pair with
        'fresh' and send a short header into -5 dB, which the receiver loses (seen ~1 run in 15 at -5 dB).
        """
        fresh = self.feedback.fresh if self.feedback is not None else True
        snr = self.current_snr_db()
        return snr, not fresh or snr < self.config.robust_below_db

    def _emit(self, bursts: list[np.ndarray], n_images: int) -> None:
        """Put a batch's bursts on the radio (one call with gaps when packing, else one call each), run
        ``after_send`` and count the images."""
        if self.config.pack_bursts:
            gap_iq = np.zeros(self.config.gap_samples, np.complex64)
            self.radio.tx(np.concatenate([x for b in bursts for x in (b, gap_iq)]))
        else:
            for b in bursts:
                self.radio.tx(b)
        if self.after_send is not None:
            self.after_send()
        self.sent += n_images


class SemanticTransmitter(FeedbackTransmitter):
    def __init__(self, student: Any, modem: Modem, radio: Any, config: LinkConfig = LinkConfig(),
                 feedback: FeedbackReceiver | None = None, after_send: Callable[[], None] | None = None):
        super().__init__(modem, radio, config, feedback, after_send)
        self.student = student

    def images_per_burst(self, n_symbols: int) -> int:
        return max(1, min(self.config.images_per_burst, self.modem.config.max_payload_symbols // max(n_symbols, 1)))

    def send(self, images: np.ndarray, first_index: int = 0) -> list[SentFrame]:
        """Encode and transmit a batch of uint8 images ``[B, H, W, C]``, aggregated into bursts.

        The header's ``seq`` is the first image's index in the run (``first_index + i``) modulo 65536 and
        the burst's images follow it, so a receiver on another host that knows the data set can score its
        predictions.
        """
        t0 = time.perf_counter()
        snr, robust = self.link_state()
        symbols = np.ascontiguousarray(self.student.encode(images, snr), dtype=np.complex64)
        t_enc = time.perf_counter()
        k = int(symbols.shape[1])
        per = self.images_per_burst(k)
        gap = self.config.gap_samples if self.config.pack_bursts else 0
        bursts, records = [], []
        for b0 in range(0, symbols.shape[0], per):
            chunk = symbols[b0:b0 + per]
            seq = (first_index + b0) % SEQ_MOD
            header = FrameHeader(seq=seq, kind=KIND_SEMANTIC, snr_report_db=snr, items=len(chunk), robust=robust)
            iq = self.modem.modulate(chunk.reshape(-1), header)
            bursts.append(iq)
            share = (iq.size + gap) / len(chunk)
            for i in range(len(chunk)):
                records.append(SentFrame((seq + i) % SEQ_MOD, first_index + b0 + i, k, snr, int(iq.size),
                                         self.bursts, i == 0, share, robust))
            self.bursts += 1
            self.air_samples += iq.size + gap
        t_mod = time.perf_counter()
        self._emit(bursts, len(records))
        if self.events is not None:
            self.events.on_sent(records, symbols, t0, t_enc, t_mod, time.perf_counter())
        return records


def airtime_samples(sent: list[SentFrame], gap_samples: int) -> int:
    """Samples on the air for ``sent`` (each burst once, plus one gap after it)."""
    return sum(s.burst_samples + gap_samples for s in sent if s.first)


class SemanticReceiver:
    def __init__(self, student: Any, modem: Modem, radio: Any, config: LinkConfig = LinkConfig(),
                 feedback: FeedbackSender | None = None):
        self.student, self.modem, self.radio, self.config, self.feedback = student, modem, radio, config, feedback
        longest = student.k_max * min(config.images_per_burst, modem.config.max_payload_symbols // student.k_max)
        self.stream = StreamReceiver(modem, max_frame_samples=modem.burst_length(max(longest, 1), robust=True))
        self.frames_bad_header = 0
        self.frames_other_kind = 0
        self.last_frames: list[RxFrame] = []
        self.last_chunk: np.ndarray | None = None
        self.events: Any = None  # sdr_tosc.link.events.LinkEvents (live monitor), or None

    def _decode(self, frames: list[RxFrame]) -> list[FrameResult]:
        good = []
        for f in frames:
            if not f.header_ok:
                self.frames_bad_header += 1
                continue
            h = f.header
            if h.kind != KIND_SEMANTIC or not 1 <= h.item_length <= self.student.k_max:
                self.frames_other_kind += 1
                continue
            good.append(f)
        if good:
            self.last_frames = good
        out = []
        for f in good:
            snr_dec = decoder_snr_db(f)
            sym, _ = f.items()
            t_dec = time.perf_counter()
            logits = self.student.decode(sym, snr_dec)
            preds = np.argmax(np.asarray(logits), axis=1)
            h = f.header
            for i in range(h.items):
                out.append(FrameResult((h.seq + i) % SEQ_MOD, int(preds[i]), float(f.snr_db), snr_dec, float(f.cfo_hz),
                                       int(h.item_length), int(f.start), h.snr_report_db, int(f.end), int(h.items)))
            if self.events is not None:
                self.events.on_frame(f, out[-h.items:], t_dec, time.perf_counter())
            if self.feedback is not None:
                self.feedback.send(h.seq, float(f.snr_db), float(f.cfo_hz))
        return out

    def receive(self, n_samples: int) -> list[FrameResult]:
        """Read ``n_samples`` from the radio (in chunks) and return the semantic frames completed."""
        out: list[FrameResult] = []
        left = int(n_samples)
        while left > 0:
            n = min(left, self.config.rx_chunk_samples)
            chunk = self.radio.rx(n)
            self.last_chunk = chunk
            if self.events is None:
                out += self._decode(self.stream.push(chunk))
            else:
                self.events.on_chunk(chunk, time.perf_counter())
                frames = self.stream.push(chunk)
                self.events.on_demodulated(time.perf_counter())
                out += self._decode(frames)
            left -= n
        return out

    def flush(self) -> list[FrameResult]:
        return self._decode(self.stream.flush())


@dataclass
class LinkReport:
    """What a link run measured. Accuracies are fractions; lost frames count as wrong in ``accuracy``."""

    images: int
    received: int
    correct: int
    accuracy: float
    accuracy_received: float
    frame_loss: float
    snr_db_mean: float
    snr_db_median: float
    cfo_hz_mean: float
    symbols_mean: float
    air_samples_per_image: float
    bursts: int
    wall_s: float
    images_per_s: float
    frames: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("frames")
        return d


def receive_batch(rx: Any, absorb: Callable[[Any], None], outstanding: dict, airtime: int, cfg: LinkConfig) -> None:
    """Read a batch's ``airtime`` samples, then keep reading chunks while frames keep arriving, until nothing
    is ``outstanding`` or ``cfg.rx_slack_samples`` pass without a frame (``absorb`` pops what arrived)."""
    absorb(rx.receive(airtime))
    idle = 0
    while outstanding and idle < cfg.rx_slack_samples:
        before = len(outstanding)
        absorb(rx.receive(cfg.rx_chunk_samples))
        idle = 0 if len(outstanding) < before else idle + cfg.rx_chunk_samples


def run_link(
    tx: SemanticTransmitter,
    rx: SemanticReceiver,
    images: np.ndarray,
    labels: np.ndarray,
    progress: bool = True,
    on_batch: Callable[[list[FrameResult]], None] | None = None,
    truth: Callable[[], list[dict[str, Any]]] | None = None,
    overlap: bool = False,
) -> LinkReport:
    """Send every image through ``tx``, read it back with ``rx`` (same process, one batch at a time).

    With ``overlap`` a worker thread encodes, modulates and sends batch n+1 while this thread receives and
    decodes batch n (torch and numpy release the GIL in their kernels, so the two overlap on two cores).
    The transmitter then conditions batch n+1 on the feedback of batches up to n-1, one batch older than
    in the sequential loop; frames of batch n+1 that arrive before it is registered are kept and matched.
    ``tx`` and its radio and feedback receiver are used by the worker only while the run lasts.
    """
    from tqdm.auto import tqdm  # noqa: PLC0415

    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be [N] for N = {images.shape[0]} images, got {labels.shape}")
    n = images.shape[0]
    cfg = tx.config
    results: dict[int, FrameResult] = {}
    sent_all: list[SentFrame] = []
    outstanding: dict[int, SentFrame] = {}  # seq -> frame sent and not yet received
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc="link", unit="img", disable=not progress)

    early: dict[int, FrameResult] = {}  # overlap: frames of a batch received before it was registered

    def absorb(got: list[FrameResult]) -> None:
        for r in got:
            s = outstanding.pop(r.seq, None)
            if s is not None:
                results[s.index] = r
            elif overlap:
                early[r.seq] = r
        if on_batch is not None:
            on_batch(got)

    def register(sent: list[SentFrame]) -> None:
        sent_all.extend(sent)
        for s in sent:
            lost = outstanding.pop(s.seq, None)  # a seq number reused after 65536 frames: the old one is lost
            if lost is not None:
                log.debug("frame %d never arrived", lost.index)
            r = early.pop(s.seq, None)
            if r is not None:
                results[s.index] = r
            else:
                outstanding[s.seq] = s
        # only this batch was in flight besides the registered ones when those frames came: anything left is
        # not a frame of ours (a stale seq must not match an image 65536 later)
        early.clear()

    def batch_at(b0: int) -> np.ndarray:
        return images[b0:b0 + cfg.batch_size]

    pool = ThreadPoolExecutor(1, thread_name_prefix="link-tx") if overlap else None
    try:
        pending = pool.submit(tx.send, batch_at(0), 0) if pool is not None else None
        for b0 in range(0, n, cfg.batch_size):
            if pool is not None:
                sent = pending.result()
                nxt = b0 + cfg.batch_size
                pending = pool.submit(tx.send, batch_at(nxt), nxt) if nxt < n else None
            else:
                sent = tx.send(batch_at(b0), first_index=b0)
            register(sent)
            receive_batch(rx, absorb, outstanding, airtime_samples(sent, cfg.gap_samples), cfg)
            bar.update(len(sent))
            if progress and results:
                correct = sum(int(r.pred == labels[i]) for i, r in results.items())
                last = results[max(results)]
                bar.set_postfix(acc=f"{correct / (b0 + len(sent)):.3f}", snr=f"{last.snr_db:.1f}dB", k=last.n_symbols)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    absorb(rx.flush())
    bar.close()
    wall = time.perf_counter() - t0
    truths = truth() if truth is not None else []
    return _report(sent_all, results, labels, wall, truths)


def _report(sent: list[SentFrame], results: dict[int, FrameResult], labels: np.ndarray, wall: float,
            truths: list[dict[str, Any]]) -> LinkReport:
    n = len(sent)
    correct = sum(int(r.pred == labels[i]) for i, r in results.items())
    snrs = np.array([r.snr_db for r in results.values()]) if results else np.zeros(0)
    frames = []
    for s in sent:
        r = results.get(s.index)
        rec: dict[str, Any] = {"index": s.index, "seq": s.seq, "label": int(labels[s.index]),
                               "snr_tx_db": s.snr_tx_db, "n_symbols": s.n_symbols, "burst": s.burst,
                               "robust": s.robust, "air_samples": s.air_samples, "received": r is not None}
        if r is not None:
            rec.update(pred=r.pred, snr_db=r.snr_db, snr_dec_db=r.snr_dec_db, cfo_hz=r.cfo_hz, start=r.start)
        frames.append(rec)
    n_bursts = len({s.burst for s in sent})
    if truths and len(truths) >= n_bursts and sent:
        # the channel simulator reports one record per burst, in send order
        first_burst = min(s.burst for s in sent)
        per_burst = truths[-n_bursts:]
        for rec, s in zip(frames, sent, strict=True):
            t = per_burst[s.burst - first_burst] if 0 <= s.burst - first_burst < n_bursts else {}
            if t.get("snr_db") is not None:
                rec["snr_true_db"] = float(t["snr_db"])
    return LinkReport(
        images=n,
        received=len(results),
        correct=correct,
        accuracy=correct / n if n else 0.0,
        accuracy_received=correct / len(results) if results else 0.0,
        frame_loss=1.0 - len(results) / n if n else 0.0,
        snr_db_mean=float(snrs.mean()) if snrs.size else float("nan"),
        snr_db_median=float(np.median(snrs)) if snrs.size else float("nan"),
        cfo_hz_mean=float(np.mean([r.cfo_hz for r in results.values()])) if results else float("nan"),
        symbols_mean=float(np.mean([s.n_symbols for s in sent])) if sent else 0.0,
        air_samples_per_image=float(np.mean([s.air_samples for s in sent])) if sent else 0.0,
        bursts=n_bursts,
        wall_s=wall,
        images_per_s=n / wall if wall > 0 else float("inf"),
        frames=frames,
    )
