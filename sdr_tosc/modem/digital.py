"""Digital mode (separate source/channel coding baseline): bits -> FEC -> QAM -> OFDM frame, and back.

Chain: message bits -> K=7 rate-1/2 convolutional code (133, 171 octal; see :mod:`sdr_tosc.modem.fec`
for why this code and not a library) -> pseudo-random bit interleaver (spreads coded bits over
subcarriers and symbols against frequency-selective fades) -> Gray QAM (QPSK, 16-QAM, 64-QAM) ->
payload symbols of :meth:`Modem.modulate` (header ``kind = KIND_DIGITAL``). The receiver computes
max-log LLRs with the per-symbol noise variance of :class:`RxFrame` (zero-forcing noise enhancement
included, so faded subcarriers count less), de-interleaves and runs the soft Viterbi decoder.
With ``coded=False`` the chain is plain QAM (used to check the BER against theory).

Two levels of API: bits (the caller knows how many bits were sent) and bytes (self-delimiting: a
16-bit length, the data and a CRC-32 are sent, so the receiver gets the bytes back, or ``None`` when
residual errors remain: the "cliff" of separate source/channel coding).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .fec import TAIL_BITS, conv_encode, viterbi_decode
from .frame import FrameHeader, Modem, RxFrame
from .qam import bits_per_symbol, qam_llr, qam_map


def _pn127() -> np.ndarray:
    state, out = 0b1011101, []
    for _ in range(127):
        bit = ((state >> 6) ^ (state >> 3)) & 1
        out.append(bit)
        state = ((state << 1) | bit) & 0x7F
    return np.array(out, np.uint8)


_PN127 = _pn127()

KIND_DIGITAL = 1


@dataclass(frozen=True)
class DigitalConfig:
    """Digital-mode parameters.

    Attributes:
        modulation: "bpsk", "qpsk", "16qam" or "64qam".
        coded: use the K=7 rate-1/2 convolutional code (else uncoded QAM).
        interleave: interleave coded bits with a fixed pseudo-random permutation.
    """

    modulation: Literal["bpsk", "qpsk", "16qam", "64qam"] = "qpsk"
    coded: bool = True
    interleave: bool = True

    def __post_init__(self) -> None:
        try:
            bits_per_symbol(self.modulation)
        except ValueError as exc:
            raise ValueError(f"DigitalConfig.modulation: {exc}") from None


class DigitalMode:
    """Bits <-> payload symbols (and frames through a :class:`Modem`)."""

    def __init__(self, config: DigitalConfig | None = None) -> None:
        self.config = DigitalConfig() if config is None else config
        self.bps = bits_per_symbol(self.config.modulation)

    # sizes ------------------------------------------------------------------------------------
    def n_coded_bits(self, n_bits: int) -> int:
        """Coded bits for ``n_bits`` message bits (before padding to whole symbols)."""
        return 2 * (n_bits + TAIL_BITS) if self.config.coded else n_bits

    def n_symbols(self, n_bits: int) -> int:
        """Payload symbols that carry ``n_bits`` message bits."""
        return -(-self.n_coded_bits(n_bits) // self.bps)

    def _perm(self, n: int) -> np.ndarray:
        """Interleaver: coded bit ``j`` goes to slot ``(a * j) mod n`` with ``a`` the first integer from
        ``0.618 n`` that is coprime with ``n`` (a formula, so it is the same for every numpy version)."""
        if not self.config.interleave or n < 3:
            return np.arange(n)
        a = max(int(0.618 * n), 1)
        while math.gcd(a, n) != 1:
            a += 1
        return (a * np.arange(n, dtype=np.int64)) % n

    @staticmethod
    def _scrambler(n: int) -> np.ndarray:
        """uint8[n] whitening sequence (802.11's x^7 + x^4 + 1, state 1011101), XORed onto the coded bits:
        without it a run of zeros (padding) maps to one constellation point on every subcarrier, a large
        OFDM peak that the back-off clips."""
        seq = _PN127[np.arange(n) % 127]
        return seq

    # encode / decode ---------------------------------------------------------------------------
    def encode(self, bits: np.ndarray) -> np.ndarray:
        """Message bits (uint8[n] of 0/1, n >= 1) -> complex64[n_symbols(n)] unit-power payload symbols."""
        b = np.asarray(bits)
        if b.ndim != 1 or b.size == 0:
            raise ValueError(f"bits must be a non-empty 1-D array of 0/1, got shape {b.shape}")
        if not np.isin(b, (0, 1)).all():
            raise ValueError("bits must contain only 0 and 1 (unpack bytes with np.unpackbits)")
        b = b.astype(np.uint8)
        coded = conv_encode(b) if self.config.coded else b
        coded = coded[self._perm(coded.size)]
        pad = (-coded.size) % self.bps
        coded = np.concatenate([coded, np.zeros(pad, np.uint8)])
        return qam_map(coded ^ self._scrambler(coded.size), self.config.modulation)

    def llrs(self, symbols: np.ndarray, noise_var: float | np.ndarray, n_bits: int) -> np.ndarray:
        """Coded-bit LLRs (de-interleaved, float32[n_coded_bits(n_bits)]) from received symbols."""
        if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < 1:
            raise ValueError(f"n_bits must be a positive integer (the number of bits sent), got {n_bits!r}")
        n_coded = self.n_coded_bits(n_bits)
        y = np.asarray(symbols).ravel()
        if y.size < self.n_symbols(n_bits):
            raise ValueError(f"{y.size} symbols cannot carry {n_bits} bits; need {self.n_symbols(n_bits)}")
        nv = np.asarray(noise_var, dtype=np.float64)
        if nv.ndim:
            nv = nv.ravel()[: self.n_symbols(n_bits)]
        lam = qam_llr(y[: self.n_symbols(n_bits)], nv, self.config.modulation)[:n_coded]
        lam = np.where(self._scrambler(n_coded) == 1, -lam, lam)  # undo the whitening on the LLRs
        out = np.empty(n_coded, np.float32)
        out[self._perm(n_coded)] = lam
        return out

    def decode(self, symbols: np.ndarray, noise_var: float | np.ndarray, n_bits: int) -> np.ndarray:
        """Received symbols -> uint8[n_bits] message bits (soft Viterbi, or hard decisions if uncoded)."""
        lam = self.llrs(symbols, noise_var, n_bits)
        if not self.config.coded:
            return (lam < 0).astype(np.uint8)
        return viterbi_decode(lam)

    # through the modem -------------------------------------------------------------------------
    def modulate(
        self, modem: Modem, bits: np.ndarray, seq: int, snr_report_db: float | None = None
    ) -> np.ndarray:
        """Bits -> one burst of IQ samples (header ``kind = KIND_DIGITAL``)."""
        sym = self.encode(bits)
        return modem.modulate(sym, FrameHeader(seq=seq, kind=KIND_DIGITAL, snr_report_db=snr_report_db))

    def decode_frame(self, frame: RxFrame, n_bits: int) -> np.ndarray:
        """Bits from a received frame (uses its per-symbol noise variance for the LLRs)."""
        if not frame.header_ok:
            raise ValueError(
                "frame.header_ok is False: the frame's payload length is unknown; skip the frame"
            )
        return self.decode(frame.symbols, frame.noise_var, n_bits)

    # bytes (self-delimiting, CRC-32 checked) ---------------------------------------------------
    def _n_bits_for(self, n_symbols: int) -> int:
        """Message bits carried by ``n_symbols`` when the sender padded to whole symbols (bytes API)."""
        total = n_symbols * self.bps
        return total // 2 - TAIL_BITS if self.config.coded else total

    def encode_bytes(self, data: bytes) -> np.ndarray:
        """``data`` (up to 65535 bytes) -> complex64 payload symbols: [length16][data][crc32], padded."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > 65535:
            raise ValueError(f"{len(data)} bytes is too long for one frame (max 65535); split it")
        msg = len(data).to_bytes(2, "big") + data + zlib.crc32(data).to_bytes(4, "big")
        bits = np.unpackbits(np.frombuffer(msg, np.uint8))
        # pad so that the coded (or raw) bits fill whole symbols exactly: the receiver can then infer
        # the message length from the number of symbols
        while self.n_coded_bits(bits.size) % self.bps:
            bits = np.concatenate([bits, np.zeros(1, np.uint8)])
        return self.encode(bits)

    def decode_bytes(self, symbols: np.ndarray, noise_var: float | np.ndarray) -> bytes | None:
        """Inverse of :meth:`encode_bytes`; ``None`` if the length or the CRC-32 does not check out."""
        n_bits = self._n_bits_for(np.asarray(symbols).size)
        if n_bits < 48:
            return None
        bits = self.decode(symbols, noise_var, n_bits)
        raw = np.packbits(bits[: n_bits - n_bits % 8]).tobytes()
        n = int.from_bytes(raw[:2], "big")
        if 2 + n + 4 > len(raw):
            return None
        data, crc = raw[2 : 2 + n], int.from_bytes(raw[2 + n : 6 + n], "big")
        return data if zlib.crc32(data) == crc else None

    def modulate_bytes(
        self, modem: Modem, data: bytes, seq: int, snr_report_db: float | None = None
    ) -> np.ndarray:
        """Bytes -> one burst (header ``kind = KIND_DIGITAL``)."""
        return modem.modulate(
            self.encode_bytes(data), FrameHeader(seq=seq, kind=KIND_DIGITAL, snr_report_db=snr_report_db)
        )

    def decode_frame_bytes(self, frame: RxFrame) -> bytes | None:
        """Bytes from a received frame, or ``None`` (header failed, or residual bit errors)."""
        if not frame.header_ok:
            return None
        return self.decode_bytes(frame.symbols, frame.noise_var)
