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
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..modem import DigitalConfig, DigitalMode, FrameHeader, Modem, ModemConfig, RxFrame, StreamReceiver
from ..modem.digital import KIND_DIGITAL
from ..modem.fec import TAIL_BITS, viterbi_decode
from .feedback import FeedbackReceiver, FeedbackSender
from .session import (
    KIND_SEMANTIC,
    SEQ_MOD,
    FrameResult,
    LinkConfig,
    LinkReport,
    SemanticReceiver,
    SentFrame,
    _report,
    airtime_samples,
    decoder_snr_db,
)

log = logging.getLogger(__name__)

SCHEME_SEMANTIC = "semantic"
SCHEME_LATENT = "digital-latent"
SCHEME_PNG = "digital-png"
DIGITAL_SCHEMES = (SCHEME_LATENT, SCHEME_PNG)
SCHEMES = (SCHEME_SEMANTIC, *DIGITAL_SCHEMES)
SCHEME_CHOICES = ("semantic", "digital", "both", *DIGITAL_SCHEMES)
KIND_LATENT = KIND_DIGITAL
KIND_PNG = 2
MODULATIONS = ("bpsk", "qpsk", "16qam", "64qam")
_BPS = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6}
_FRAMING_BYTES = 6  # DigitalMode.encode_bytes: 16-bit length + CRC-32
# Scrambler: every payload is XORed with this fixed pseudo-random sequence before coding (and after decoding),
# as 802.11 does. Without it a run of equal bytes (the zero padding) maps to one constellation point on every
# subcarrier, an OFDM symbol with a single huge peak that the transmitter's 10 dB back-off clips: that image
# then fails its CRC even at 25 dB.
_WHITENING = np.frombuffer(np.random.default_rng(0x5C4A).bytes(65535), np.uint8)


def scramble(data: bytes) -> bytes:
    """XOR with the fixed whitening sequence (its own inverse)."""
    a = np.frombuffer(data, np.uint8)
    return (a ^ _WHITENING[: a.size]).tobytes()


def schemes_for(choice: str) -> tuple[str, ...]:
    """``--scheme`` value -> scheme names: ``digital`` = both digital baselines, ``both`` = all three."""
    if choice == "semantic":
        return (SCHEME_SEMANTIC,)
    if choice == "digital":
        return DIGITAL_SCHEMES
    if choice == "both":
        return SCHEMES
    if choice in DIGITAL_SCHEMES:
        return (choice,)
    raise ValueError(f"unknown scheme {choice!r}; choose one of {', '.join(SCHEME_CHOICES)}")


def header_snr_db(snr_db: float | None) -> float | None:
    """The SNR report as the header carries it (0.5 dB steps, clipped): what the receiver will read."""
    if snr_db is None:
        return None
    return FrameHeader.from_bytes(FrameHeader(seq=0, snr_report_db=float(snr_db)).to_bytes()).snr_report_db


@dataclass(frozen=True)
class DigitalLinkConfig:
    """Settings of the digital schemes (both link ends must use the same).

    Attributes:
        modulation: "auto" (adaptive, from the fed-back SNR) or one of bpsk, qpsk, 16qam, 64qam.
        thresholds_db: fed-back frame SNR from which QPSK, 16-QAM and 64-QAM are used (below the first,
            BPSK). Set where the K=7 r1/2 code delivers over 95 % of 500-byte frames through AWGN at the
            post-equalisation SNR, which on this OFDM numerology is about 0.4 dB above the frame SNR
            (measured: QPSK 90 % at 3 dB, 100 % at 4; 16-QAM 83 % at 9, 100 % at 10; 64-QAM 100 % at 15).
        latent_bits: bits per latent value (digital-latent).
        latent_clip: quantiser range +-clip (digital-latent).
        latent_source_snr_db: SNR the student's encoder is conditioned on for digital-latent (its symbol
            count follows from it: 16 complex values at 25 dB for the default student).
    """

    modulation: str = "auto"
    thresholds_db: tuple[float, float, float] = (3.5, 10.0, 16.0)
    latent_bits: int = 4
    latent_clip: float = 2.0
    latent_source_snr_db: float = 25.0

    def __post_init__(self) -> None:
        if self.modulation != "auto" and self.modulation not in MODULATIONS:
            raise ValueError(f"digital modulation must be auto or one of {', '.join(MODULATIONS)}, "
                             f"got {self.modulation!r}")
        t = tuple(float(v) for v in self.thresholds_db)
        if len(t) != 3 or not all(math.isfinite(v) for v in t) or list(t) != sorted(t):
            raise ValueError(f"thresholds_db must be three increasing finite SNRs (QPSK, 16-QAM, 64-QAM from), "
                             f"got {self.thresholds_db!r}")
        object.__setattr__(self, "thresholds_db", t)
        if not 1 <= self.latent_bits <= 8:
            raise ValueError(f"latent_bits must be from 1 to 8, got {self.latent_bits}")
        if not (math.isfinite(self.latent_clip) and self.latent_clip > 0):
            raise ValueError(f"latent_clip must be > 0, got {self.latent_clip}")

    def modulation_for(self, snr_report_db: float | None, lowest: str = "bpsk") -> str:
        """Modulation for a (header-quantised) SNR report; no report -> the lowest."""
        if self.modulation != "auto":
            mod = self.modulation
        elif snr_report_db is None:
            mod = lowest
        else:
            mod = MODULATIONS[sum(snr_report_db >= t for t in self.thresholds_db)]
        return mod if _BPS[mod] >= _BPS[lowest] else lowest


def symbols_for_bytes(dm: DigitalMode, n_bytes: int) -> int:
    """Payload symbols ``DigitalMode.encode_bytes`` makes of ``n_bytes`` data bytes."""
    bits = 8 * (n_bytes + _FRAMING_BYTES)
    while dm.n_coded_bits(bits) % dm.bps:
        bits += 1
    return dm.n_coded_bits(bits) // dm.bps


def decode_items(dm: DigitalMode, symbols: np.ndarray, noise_var: np.ndarray) -> list[bytes | None]:
    """``[items, L]`` received symbols (and noise variances) -> each item's bytes, or None (CRC/length failed).

    The batched form of ``DigitalMode.decode_bytes`` (one Viterbi pass for all items of a burst), followed by
    :func:`scramble` (the transmitter scrambles before ``encode_bytes``)."""
    sym = np.atleast_2d(symbols)
    nv = np.atleast_2d(noise_var)
    n_items, length = sym.shape
    total = length * dm.bps
    n_bits = total // 2 - TAIL_BITS if dm.config.coded else total
    if n_bits < 8 * _FRAMING_BYTES:
        return [None] * n_items
    llr = np.stack([dm.llrs(sym[i], nv[i], n_bits) for i in range(n_items)])
    bits = viterbi_decode(llr) if dm.config.coded else (llr < 0).astype(np.uint8)
    out: list[bytes | None] = []
    for row in bits:
        raw = np.packbits(row[: n_bits - n_bits % 8]).tobytes()
        n = int.from_bytes(raw[:2], "big")
        if 6 + n > len(raw):
            out.append(None)
            continue
        data, crc = raw[2:2 + n], int.from_bytes(raw[2 + n:6 + n], "big")
        out.append(scramble(data) if zlib.crc32(data) == crc else None)
    return out


# --------------------------------------------------------------------------------------------- codecs
class LatentCodec:
    """digital-latent: the student's latent, quantised (module docstring)."""

    name = SCHEME_LATENT
    kind = KIND_LATENT
    lowest = "bpsk"

    def __init__(self, student: Any, config: DigitalLinkConfig = DigitalLinkConfig()) -> None:
        self.student, self.config = student, config

    def encode(self, images: np.ndarray) -> list[bytes]:
        from ..semantic.evaluate import _quantise  # noqa: PLC0415

        c = self.config
        sym = np.ascontiguousarray(self.student.encode(images, c.latent_source_snr_db), dtype=np.complex64)
        values = sym.view(np.float32).reshape(sym.shape[0], -1)
        bits = _quantise(values, c.latent_bits, c.latent_clip)
        return [np.packbits(b).tobytes() for b in bits]

    def classify(self, payloads: Sequence[bytes | None]) -> np.ndarray:
        from ..semantic.evaluate import _dequantise  # noqa: PLC0415

        c = self.config
        k = self.student.num_symbols_for(c.latent_source_snr_db)
        n_bits = 2 * k * c.latent_bits
        n_bytes = -(-n_bits // 8)
        preds = np.full(len(payloads), -1, np.int64)
        ok = [i for i, p in enumerate(payloads) if p is not None and len(p) == n_bytes]
        if ok:
            bits = np.stack([np.unpackbits(np.frombuffer(payloads[i], np.uint8))[:n_bits] for i in ok])
            values = _dequantise(bits, 2 * k, c.latent_bits, c.latent_clip).astype(np.float32)
            logits = self.student.decode(np.ascontiguousarray(values).view(np.complex64), c.latent_source_snr_db)
            preds[ok] = np.argmax(np.asarray(logits), axis=1)
        return preds


class PngCodec:
    """digital-png: the image as a lossless PNG (Pillow), classified by the teacher (module docstring)."""

    name = SCHEME_PNG
    kind = KIND_PNG
    lowest = "qpsk"  # a 700-byte PNG at BPSK r1/2 exceeds the modem's longest burst

    def __init__(self, teacher: Any, image_shape: tuple[int, int, int]) -> None:
        if len(image_shape) != 3 or image_shape[2] not in (1, 3):
            raise ValueError(f"image_shape must be (H, W, 1|3), got {image_shape}")
        self.teacher, self.image_shape = teacher, tuple(int(v) for v in image_shape)

    def encode(self, images: np.ndarray) -> list[bytes]:
        from PIL import Image  # noqa: PLC0415

        out = []
        for im in images:
            buf = io.BytesIO()
            Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(buf, format="PNG", optimize=True)
            out.append(buf.getvalue())
        return out

    def decode_image(self, data: bytes | None) -> np.ndarray | None:
        """PNG bytes -> uint8 [H, W, C], or None when they are not a PNG of the expected shape."""
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                a = np.asarray(im.convert("L" if self.image_shape[2] == 1 else "RGB"))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        a = a.reshape(a.shape[0], a.shape[1], -1)
        return a if a.shape == self.image_shape else None

    def classify(self, payloads: Sequence[bytes | None]) -> np.ndarray:
        import torch  # noqa: PLC0415

        preds = np.full(len(payloads), -1, np.int64)
        imgs = [self.decode_image(p) for p in payloads]
        ok = [i for i, im in enumerate(imgs) if im is not None]
        if ok:
            with torch.inference_mode():
                logits, _ = self.teacher.predict(np.stack([imgs[i] for i in ok]))
            preds[ok] = logits.argmax(1).cpu().numpy()
        return preds


def make_codecs(schemes: Sequence[str], student: Any, teacher_loader: Callable[[], Any] | None,
                image_shape: tuple[int, int, int], config: DigitalLinkConfig) -> dict[str, Any]:
    """The codec of every digital scheme in ``schemes`` (the teacher is loaded only for digital-png)."""
    out: dict[str, Any] = {}
    if SCHEME_LATENT in schemes:
        out[SCHEME_LATENT] = LatentCodec(student, config)
    if SCHEME_PNG in schemes:
        if teacher_loader is None:
            raise ValueError("digital-png needs a teacher to classify the received images")
        out[SCHEME_PNG] = PngCodec(teacher_loader(), image_shape)
    return out


def load_default_teacher() -> Any:
    """The shipped fine-tuned EfficientNet-Lite0 Fashion-MNIST teacher (sdr_tosc/zoo)."""
    from importlib import resources  # noqa: PLC0415

    from ..semantic.teachers import load_teacher_file  # noqa: PLC0415

    return load_teacher_file(resources.files("sdr_tosc.zoo") / "teacher-efficientnet-lite0-fashion-mnist.safetensors")


# --------------------------------------------------------------------------------------------- transmitter
@dataclass
class DigitalSent(SentFrame):
    """One digital image sent: :class:`SentFrame` plus the modulation and its byte count."""

    modulation: str = ""
    n_bytes: int = 0


class DigitalTransmitter:
    """Images -> codec bytes -> digital-mode bursts -> radio (same interface as SemanticTransmitter)."""

    def __init__(self, codec: Any, modem: Modem, radio: Any, config: LinkConfig = LinkConfig(),
                 digital: DigitalLinkConfig = DigitalLinkConfig(), feedback: FeedbackReceiver | None = None,
                 after_send: Callable[[], None] | None = None) -> None:
        self.codec, self.modem, self.radio, self.config, self.digital = codec, modem, radio, config, digital
        self.feedback, self.after_send = feedback, after_send
        self.sent = 0
        self.bursts = 0
        self.air_samples = 0

    def current_snr_db(self) -> float:
        return self.feedback.snr_db() if self.feedback is not None else self.config.initial_snr_db

    def robust_header(self, snr_db: float) -> bool:
        if self.feedback is not None and not self.feedback.fresh:
            return True
        return snr_db < self.config.robust_below_db

    def send(self, images: np.ndarray, first_index: int = 0) -> list[DigitalSent]:
        snr = header_snr_db(self.current_snr_db())
        robust = self.robust_header(snr)
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
        if self.config.pack_bursts:
            gap_iq = np.zeros(self.config.gap_samples, np.complex64)
            self.radio.tx(np.concatenate([x for b in bursts for x in (b, gap_iq)]))
        else:
            for b in bursts:
                self.radio.tx(b)
        if self.after_send is not None:
            self.after_send()
        self.sent += len(records)
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
        absorb(rx.receive(airtime))
        idle = 0
        while outstanding and idle < cfg.rx_slack_samples:
            before = len(outstanding)
            absorb(rx.receive(cfg.rx_chunk_samples))
            idle = 0 if len(outstanding) < before else idle + cfg.rx_chunk_samples
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


# --------------------------------------------------------------------------------------------- simulation
def simulate_frames(codec: Any, images: np.ndarray, labels: np.ndarray, frames: Sequence[dict[str, Any]],
                    seed: int = 0) -> dict[str, Any]:
    """A digital scheme's own simulation for a link run: each image coded as the link coded it (its
    modulation, no padding) through AWGN at the post-equalisation SNR the link measured for it (the run's
    mean for images whose burst was lost), decoded and classified the same way. Returns the accuracy and
    the mean simulated SNR."""
    if len(frames) != len(images):
        raise ValueError(f"{len(frames)} frame records for {len(images)} images")
    dec = [f["snr_dec_db"] for f in frames if f.get("received") and f.get("snr_dec_db") is not None]
    if not dec:
        return {"accuracy": None, "snr_dec_db_mean": None}
    fallback = float(np.mean(dec))
    payloads = codec.encode(images)
    rng = np.random.default_rng([seed, 23])
    got: list[bytes | None] = []
    snrs = []
    for p, f in zip(payloads, frames, strict=True):
        snr = f["snr_dec_db"] if f.get("received") and f.get("snr_dec_db") is not None else fallback
        dm = DigitalMode(DigitalConfig(modulation=f["modulation"]))
        x = dm.encode_bytes(scramble(p))
        no = 10.0 ** (-snr / 10.0)
        y = x + (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) * math.sqrt(no / 2)
        got += decode_items(dm, y[None, :], np.full((1, x.size), no))
        snrs.append(snr)
    preds = codec.classify(got)
    return {"accuracy": float(np.mean(preds == labels)), "snr_dec_db_mean": float(np.mean(snrs))}


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
    from ..channel import ChannelSimulator  # noqa: PLC0415
    from ..radio import open_radio  # noqa: PLC0415
    from .loopback import channel_barrier, feedback_pair  # noqa: PLC0415

    fs = modem_config.sample_rate_hz
    if channel_settings.setdefault("sample_rate_hz", fs) != fs:
        raise ValueError(f"channel sample_rate_hz={channel_settings['sample_rate_hz']} differs from the modem's {fs}")
    modem = Modem(modem_config)
    with contextlib.ExitStack() as stack:
        ch = stack.enter_context(ChannelSimulator(**channel_settings))
        txr = stack.enter_context(open_radio("zmq", tx_endpoint=ch.in_endpoint, sample_rate_hz=fs))
        rxr = stack.enter_context(open_radio("zmq", rx_endpoint=ch.out_endpoint, sample_rate_hz=fs))
        fb_rx, fb_tx = feedback_pair(stack, link) if feedback else (None, None)
        txs, rx = build_schemes(schemes, student, codecs, modem, txr, rxr, link, digital, fb_rx, fb_tx,
                                after_send=lambda: channel_barrier(ch, txr))
        yield SchemeLoopback(ch, txs, rx)


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
