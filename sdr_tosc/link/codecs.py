"""The digital schemes' pieces that do not touch a radio: names, settings, adaptive modulation, the codecs,
the bytes <-> symbols helpers and each scheme's own simulation. The link that uses them, and the full
description of the schemes, is :mod:`sdr_tosc.link.digital`."""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..modem import DigitalConfig, DigitalMode, FrameHeader
from ..modem.digital import KIND_DIGITAL
from ..modem.fec import TAIL_BITS, viterbi_decode

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


# --------------------------------------------------------------------------------------------- simulation
def simulate_frames(codec: Any, images: np.ndarray, labels: np.ndarray, frames: Sequence[dict[str, Any]],
                    seed: int = 0, snr_db: float | None = None) -> dict[str, Any]:
    """A digital scheme's own simulation for a link run: each image coded as the link coded it (its
    modulation, no padding) through AWGN at the post-equalisation SNR the link measured for it (the run's
    mean for images whose burst was lost), decoded and classified the same way; or, with ``snr_db``, every
    image at that post-equalisation SNR (e.g. the channel's true SNR plus the OFDM spreading term, when the
    receiver's estimate is in doubt). Returns the accuracy and the mean simulated SNR."""
    if len(frames) != len(images):
        raise ValueError(f"{len(frames)} frame records for {len(images)} images")
    dec = [f["snr_dec_db"] for f in frames if f.get("received") and f.get("snr_dec_db") is not None]
    if not dec and snr_db is None:
        return {"accuracy": None, "snr_dec_db_mean": None}
    fallback = float(np.mean(dec)) if snr_db is None else float(snr_db)
    payloads = codec.encode(images)
    rng = np.random.default_rng([seed, 23])
    got: list[bytes | None] = []
    snrs = []
    for p, f in zip(payloads, frames, strict=True):
        snr = f["snr_dec_db"] if snr_db is None and f.get("received") and f.get("snr_dec_db") is not None \
            else fallback
        dm = DigitalMode(DigitalConfig(modulation=f["modulation"]))
        x = dm.encode_bytes(scramble(p))
        no = 10.0 ** (-snr / 10.0)
        y = x + (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) * math.sqrt(no / 2)
        got += decode_items(dm, y[None, :], np.full((1, x.size), no))
        snrs.append(snr)
    preds = codec.classify(got)
    return {"accuracy": float(np.mean(preds == labels)), "snr_dec_db_mean": float(np.mean(snrs))}
