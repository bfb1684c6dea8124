"""Separate source and channel coding over the link: the digital baselines beside the semantic scheme.

Schemes (reported by these names):

* ``semantic``: the semantic link of :mod:`sdr_tosc.link.session` (unchanged).
* ``digital-latent``: the student's encoder output at ``DigitalLinkConfig.latent_source_snr_db`` (its ``k``
  complex values, real and imaginary parts) uniformly quantised to ``latent_bits`` bits each (the
  quantiser of :mod:`sdr_tosc.semantic.evaluate`), sent as bytes; the receiver de-quantises and runs the
  student's decoder on it as an error-free input (what ``evaluate`` draws as its digital curve).
* ``digital-png``: the image itself, compressed losslessly as PNG by Pillow (DEFLATE; a 28x28 Fashion-MNIST
  image is 500 bytes on average), sent as bytes; the receiver decodes the PNG and classifies it with the
  teacher (:mod:`sdr_tosc.semantic.teachers`). Lossless, so an image that arrives is exactly the test
  image: the curve tops out at the teacher's accuracy, the fairest form of "send the picture".

Each image's bytes are scrambled (XOR with a fixed pseudo-random sequence, so no run of equal bytes becomes
an OFDM peak that the back-off clips) and go through the modem's digital mode
(:class:`~sdr_tosc.modem.DigitalMode`: a 16-bit length, the data and a CRC-32 -> K=7 rate-1/2 convolutional code -> interleaver -> Gray QAM). Images of
one batch share bursts (``FrameHeader.items``, up to ``LinkConfig.images_per_burst`` and the modem's
``max_payload_symbols``); images of different byte sizes are zero-padded to the longest of their burst
(the padding is sent and counted in ``air_samples_per_image``; PNG ignores bytes after its end chunk).
A burst whose header fails loses its images; an image whose CRC fails counts as wrong (``pred = -1``).

Header fields: ``kind`` = :data:`KIND_LATENT` (the modem's ``KIND_DIGITAL``) or :data:`KIND_PNG`;
``snr_report_db`` = the SNR the transmitter chose the modulation from (the receiver's smoothed report
over the feedback channel, as for the semantic encoder). Adaptive modulation and coding: the code is the
modem's K=7 rate 1/2 (the only rate it offers besides uncoded, which is never safe at these frame sizes);
the modulation is the highest whose threshold (``DigitalLinkConfig.thresholds_db``, on the fed-back frame
SNR) the report reaches, never below the scheme's smallest modulation that fits one image in a burst
(PNG: QPSK). The receiver applies the same rule to the header's (0.5 dB quantised) report, so no extra
field is needed; with ``modulation`` fixed both ends must be given the same one.

:class:`SchemeReceiver` reads one stream for all schemes and dispatches bursts by header ``kind``, so with
several schemes (``--scheme both``) the transmitters take turns batch by batch: each batch of images goes
out once per scheme, back to back (semantic bursts, then latent, then PNG), and every scheme sees the
channel of the same moments. :func:`run_schemes` ties them together and returns one
:class:`~sdr_tosc.link.session.LinkReport` per scheme. :func:`simulate_frames` is each digital scheme's
own simulation: the same images, coded the same way at the modulation the link used, through AWGN at the
post-equalisation SNR the link's receiver measured for that frame.

The pieces that need no radio (names, :class:`DigitalLinkConfig`, the codecs, the simulation) are in
:mod:`sdr_tosc.link.codecs` and re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..modem import DigitalConfig, DigitalMode, FrameHeader, Modem, ModemConfig, RxFrame, StreamReceiver
from .codecs import (  # re-exported: the schemes' public API lives here
    DIGITAL_SCHEMES,
    KIND_LATENT,
    KIND_PNG,
    MODULATIONS,
    SCHEME_CHOICES,
    SCHEME_LATENT,
    SCHEME_PNG,
    SCHEME_SEMANTIC,
    SCHEMES,
    DigitalLinkConfig,
    LatentCodec,
    PngCodec,
    decode_items,
    header_snr_db,
    load_default_teacher,
    make_codecs,
    schemes_for,
    scramble,
    simulate_frames,
    symbols_for_bytes,
)
from .feedback import FeedbackReceiver, FeedbackSender
from .session import (
    KIND_SEMANTIC,
    SEQ_MOD,
    FeedbackTransmitter,
    FrameResult,
    LinkConfig,
    LinkReport,
    SemanticReceiver,
    SentFrame,
    _report,
    airtime_samples,
    decoder_snr_db,
    receive_batch,
)

log = logging.getLogger(__name__)

__all__ = [
    "DIGITAL_SCHEMES", "KIND_LATENT", "KIND_PNG", "MODULATIONS", "SCHEMES", "SCHEME_CHOICES", "SCHEME_LATENT",
    "SCHEME_PNG", "SCHEME_SEMANTIC", "DigitalFrameResult", "DigitalLinkConfig", "DigitalSent", "DigitalTransmitter",
    "LatentCodec", "PngCodec", "SchemeLoopback", "SchemeReceiver", "build_schemes", "decode_items", "header_snr_db",
    "load_default_teacher", "make_codecs", "open_scheme_loopback", "open_scheme_radio_loopback", "run_schemes",
    "schemes_for", "scramble", "simulate_frames", "symbols_for_bytes",
]


# --------------------------------------------------------------------------------------------- transmitter
@dataclass
class DigitalSent(SentFrame):
    """One digital image sent: :class:`SentFrame` plus the modulation and its byte count."""

    modulation: str = ""
    n_bytes: int = 0


class DigitalTransmitter(FeedbackTransmitter):
    """Images -> codec bytes -> digital-mode bursts -> radio (same interface as SemanticTransmitter)."""

    def __init__(self, codec: Any, modem: Modem, radio: Any, config: LinkConfig = LinkConfig(),
                 digital: DigitalLinkConfig = DigitalLinkConfig(), feedback: FeedbackReceiver | None = None,
                 after_send: Callable[[], None] | None = None) -> None:
        super().__init__(modem, radio, config, feedback, after_send)
        self.codec, self.digital = codec, digital

    def send(self, images: np.ndarray, first_index: int = 0) -> list[DigitalSent]:
        snr, robust = self.link_state()
        snr = header_snr_db(snr)
        mod = self.digital.modulation_for(snr, self.codec.lowest)
        dm = DigitalMode(DigitalConfig(modulation=mod))
        payloads = self.codec.encode(images)
        cap = self.modem.config.max_payload_symbols
        gap = self.config.gap_samples if self.config.pack_bursts else 0
        groups: list[list[int]] = []
        for i, p in enumerate(payloads):
            if symbols_for_bytes(dm, len(p)) > cap:
                raise ValueError(f"image {first_index + i}: {len(p)} {self.codec.name} bytes need "
                                 f"{symbols_for_bytes(dm, len(p))} {mod} symbols, more than one burst carries "
                                 f"({cap}); use a higher --digital-modulation or smaller images")
            g = groups[-1] if groups else None
            if g is not None and len(g) < self.config.images_per_burst:
                longest = max(len(payloads[j]) for j in (*g, i))
                if (len(g) + 1) * symbols_for_bytes(dm, longest) <= cap:
                    g.append(i)
                    continue
            groups.append([i])
        bursts, records = [], []
        for g in groups:
            longest = max(len(payloads[j]) for j in g)
            sym = np.concatenate([dm.encode_bytes(scramble(payloads[j] + bytes(longest - len(payloads[j]))))
                                  for j in g])
            seq = (first_index + g[0]) % SEQ_MOD
            header = FrameHeader(seq=seq, kind=self.codec.kind, snr_report_db=snr, items=len(g), robust=robust)
            iq = self.modem.modulate(sym, header)
            bursts.append(iq)
            share = (iq.size + gap) / len(g)
            per = sym.size // len(g)
            for n, j in enumerate(g):
                records.append(DigitalSent((seq + n) % SEQ_MOD, first_index + j, per, snr, int(iq.size), self.bursts,
                                           n == 0, share, robust, mod, len(payloads[j])))
            self.bursts += 1
            self.air_samples += iq.size + gap
        self._emit(bursts, len(records))
        return records


# --------------------------------------------------------------------------------------------- receiver
@dataclass
class DigitalFrameResult(FrameResult):
    """One received digital image: :class:`FrameResult` plus whether its CRC passed and the modulation."""

    crc_ok: bool = True
    modulation: str = ""


class SchemeReceiver:
    """One stream receiver for every scheme; bursts are dispatched by header ``kind``.

    ``receive``/``flush`` return ``(scheme, FrameResult)`` pairs. Semantic bursts are decoded by the
    :class:`SemanticReceiver` given (which sends their feedback); digital ones by the codecs; every burst
    with a good header sends one feedback report."""

    def __init__(self, modem: Modem, radio: Any, config: LinkConfig = LinkConfig(),
                 semantic: SemanticReceiver | None = None, codecs: dict[str, Any] | None = None,
                 digital: DigitalLinkConfig = DigitalLinkConfig(), feedback: FeedbackSender | None = None) -> None:
        self.modem, self.radio, self.config, self.semantic = modem, radio, config, semantic
        self.codecs = {c.kind: c for c in (codecs or {}).values()}
        self.digital, self.feedback = digital, feedback
        if semantic is None and not self.codecs:
            raise ValueError("SchemeReceiver needs a semantic receiver or at least one digital codec")
        self.stream = StreamReceiver(modem, max_frame_samples=modem.max_burst_length)
        self.frames_bad_header = 0
        self.frames_other_kind = 0
        self.last_frames: list[RxFrame] = []
        self.last_chunk: np.ndarray | None = None

    def _decode(self, frames: list[RxFrame]) -> list[tuple[str, FrameResult]]:
        out: list[tuple[str, FrameResult]] = []
        sem, good = [], []
        for f in frames:
            if not f.header_ok:
                self.frames_bad_header += 1
            elif f.header.kind == KIND_SEMANTIC and self.semantic is not None:
                sem.append(f)
            elif f.header.kind in self.codecs:
                good.append(f)
            else:
                self.frames_other_kind += 1
        if sem:
            out += [(SCHEME_SEMANTIC, r) for r in self.semantic._decode(sem)]
        for f in good:
            out += [(self.codecs[f.header.kind].name, r) for r in self._decode_digital(f)]
        if sem or good:
            self.last_frames = sem + good
        return out

    def _decode_digital(self, f: RxFrame) -> list[DigitalFrameResult]:
        h = f.header
        codec = self.codecs[h.kind]
        mod = self.digital.modulation_for(h.snr_report_db, codec.lowest)
        sym, nv = f.items()
        payloads = decode_items(DigitalMode(DigitalConfig(modulation=mod)), sym, nv)
        preds = codec.classify(payloads)
        snr_dec = decoder_snr_db(f)
        if self.feedback is not None:
            self.feedback.send(h.seq, float(f.snr_db), float(f.cfo_hz))
        return [DigitalFrameResult((h.seq + i) % SEQ_MOD, int(preds[i]), float(f.snr_db), snr_dec, float(f.cfo_hz),
                                   int(h.item_length), int(f.start), h.snr_report_db, int(f.end), int(h.items),
                                   payloads[i] is not None, mod) for i in range(h.items)]

    def receive(self, n_samples: int) -> list[tuple[str, FrameResult]]:
        out: list[tuple[str, FrameResult]] = []
        left = int(n_samples)
        while left > 0:
            n = min(left, self.config.rx_chunk_samples)
            chunk = self.radio.rx(n)
            self.last_chunk = chunk
            out += self._decode(self.stream.push(chunk))
            left -= n
        return out

    def flush(self) -> list[tuple[str, FrameResult]]:
        return self._decode(self.stream.flush())


# --------------------------------------------------------------------------------------------- run
def run_schemes(
    txs: dict[str, Any],
    rx: SchemeReceiver,
    images: np.ndarray,
    labels: np.ndarray,
    progress: bool = True,
    truth: Callable[[], list[dict[str, Any]]] | None = None,
) -> dict[str, LinkReport]:
    """Send every image once per scheme (batch by batch, schemes back to back) and read them back.

    Returns one LinkReport per scheme; its ``frames`` carry ``scheme``, and for digital schemes
    ``modulation``, ``n_bytes`` and ``crc_ok`` (a failed CRC is received but wrong)."""
    from tqdm.auto import tqdm  # noqa: PLC0415

    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be [N] for N = {images.shape[0]} images, got {labels.shape}")
    if not txs:
        raise ValueError("run_schemes needs at least one transmitter")
    n = images.shape[0]
    cfg = next(iter(txs.values())).config
    results: dict[str, dict[int, FrameResult]] = {s: {} for s in txs}
    sent_all: dict[str, list[SentFrame]] = {s: [] for s in txs}
    outstanding: dict[tuple[str, int], SentFrame] = {}
    order: list[tuple[str, int]] = []  # (scheme, burst) in the order they went on the air
    t0 = time.perf_counter()
    bar = tqdm(total=n, desc="+".join(txs), unit="img", disable=not progress)

    def absorb(got: list[tuple[str, FrameResult]]) -> None:
        for scheme, r in got:
            s = outstanding.pop((scheme, r.seq), None)
            if s is not None:
                results[scheme][s.index] = r

    for b0 in range(0, n, cfg.batch_size):
        batch = images[b0:b0 + cfg.batch_size]
        airtime = 0
        for scheme, tx in txs.items():
            sent = tx.send(batch, first_index=b0)
            sent_all[scheme] += sent
            order += [(scheme, s.burst) for s in sent if s.first]
            for s in sent:
                if outstanding.pop((scheme, s.seq), None) is not None:
                    log.debug("%s frame with seq %d never arrived", scheme, s.seq)
                outstanding[(scheme, s.seq)] = s
            airtime += airtime_samples(sent, cfg.gap_samples)
        receive_batch(rx, absorb, outstanding, airtime, cfg)
        bar.update(len(batch))
    absorb(rx.flush())
    bar.close()
    wall = time.perf_counter() - t0
    truths = truth() if truth is not None else []
    true_snr: dict[tuple[str, int], float] = {}
    if truths and len(truths) >= len(order):
        for key, t in zip(order, truths[-len(order):], strict=True):
            if t.get("snr_db") is not None:
                true_snr[key] = float(t["snr_db"])
    reports = {}
    for scheme in txs:
        rep = _report(sent_all[scheme], results[scheme], labels, wall, [])
        for rec, s in zip(rep.frames, sent_all[scheme], strict=True):
            rec["scheme"] = scheme
            if (scheme, s.burst) in true_snr:
                rec["snr_true_db"] = true_snr[(scheme, s.burst)]
            if isinstance(s, DigitalSent):
                rec["modulation"], rec["n_bytes"] = s.modulation, s.n_bytes
                r = results[scheme].get(s.index)
                if isinstance(r, DigitalFrameResult):
                    rec["crc_ok"] = r.crc_ok
        reports[scheme] = rep
    return reports


# --------------------------------------------------------------------------------------------- loopback
@dataclass
class SchemeLoopback:
    channel: Any  # sdr_tosc.channel.ChannelSimulator, or None over one real radio
    txs: dict[str, Any]  # scheme -> transmitter, in the order they take turns
    rx: SchemeReceiver


def build_schemes(schemes: Sequence[str], student: Any, codecs: dict[str, Any], modem: Modem, txr: Any, rxr: Any,
                  link: LinkConfig, digital: DigitalLinkConfig, fb_rx: FeedbackReceiver | None,
                  fb_tx: FeedbackSender | None, after_send: Callable[[], None] | None = None
                  ) -> tuple[dict[str, Any], SchemeReceiver]:
    """Transmitters (one per scheme, sharing the feedback) and the one receiver, over radios already open."""
    from .session import SemanticTransmitter  # noqa: PLC0415

    txs: dict[str, Any] = {}
    for s in schemes:
        if s == SCHEME_SEMANTIC:
            txs[s] = SemanticTransmitter(student, modem, txr, link, fb_rx, after_send=after_send)
        else:
            txs[s] = DigitalTransmitter(codecs[s], modem, txr, link, digital, fb_rx, after_send=after_send)
    sem = SemanticReceiver(student, modem, rxr, link, fb_tx) if SCHEME_SEMANTIC in schemes else None
    return txs, SchemeReceiver(modem, rxr, link, sem, codecs, digital, fb_tx)


@contextlib.contextmanager
def open_scheme_loopback(schemes: Sequence[str], student: Any, codecs: dict[str, Any], link: LinkConfig = LinkConfig(),
                         digital: DigitalLinkConfig = DigitalLinkConfig(), modem_config: ModemConfig = ModemConfig(),
                         feedback: bool = True, **channel_settings: Any) -> Iterator[SchemeLoopback]:
    """Like :func:`sdr_tosc.link.loopback.open_loopback` (channel process + zmq radios + feedback) for
    any set of schemes."""
    from .loopback import simulated_air  # noqa: PLC0415

    with simulated_air(link, modem_config, feedback, channel_settings) as air:
        txs, rx = build_schemes(schemes, student, codecs, air.modem, air.tx_radio, air.rx_radio, link, digital,
                                air.fb_rx, air.fb_tx, after_send=air.barrier)
        yield SchemeLoopback(air.channel, txs, rx)


@contextlib.contextmanager
def open_scheme_radio_loopback(schemes: Sequence[str], student: Any, codecs: dict[str, Any], radio: Any,
                               link: LinkConfig = LinkConfig(pack_bursts=True),
                               digital: DigitalLinkConfig = DigitalLinkConfig(),
                               modem_config: ModemConfig = ModemConfig(), feedback: bool = True
                               ) -> Iterator[SchemeLoopback]:
    """One full-duplex radio cabled TX to RX (as :func:`~sdr_tosc.link.loopback.open_radio_loopback`)."""
    from .loopback import feedback_pair  # noqa: PLC0415

    modem = Modem(modem_config)
    with contextlib.ExitStack() as stack:
        stack.enter_context(radio)
        radio.rx(1024)
        fb_rx, fb_tx = feedback_pair(stack, link) if feedback else (None, None)
        txs, rx = build_schemes(schemes, student, codecs, modem, radio, radio, link, digital, fb_rx, fb_tx)
        yield SchemeLoopback(None, txs, rx)
