"""Frame header: fields, bit layout, CRC, and the low-SNR header code.

Layout (64 bits, most significant first)::

    seq (16) | length (13) | items - 1 (7) | kind (3) | robust (1) | SNR report (8) | CRC-16 (16)

* ``length``: payload symbols in the burst (1..8191); ``items`` (1..128) images share them equally, so each
  carries ``length / items`` symbols (aggregation: one preamble and header for a batch).
* ``robust``: the header was sent in the long (low-SNR) form; the receiver needs it to know where the
  payload starts, and the transmitter sets it from the SNR the receiver last reported.
* SNR report: 0.5 dB steps from -20 dB (code 0) to +107 dB (254); 255 = none.
* CRC-16/CCITT-FALSE over the first 6 bytes (``binascii.crc_hqx(data, 0xFFFF)``).

Code: the 64 bits are encoded with the K=7 rate-1/2 convolutional code (140 coded bits, terminated) and
spread over ``2 * n_data`` QPSK bit slots per OFDM symbol: slot ``j`` carries coded bit
``(HDR_MULT * (j mod B) + HDR_SHIFT * (j div B)) mod 140`` with ``B`` the slots of the short form. The short
form is 3 OFDM symbols (~2x repetition: enough above ~3 dB); the long form continues the same pattern over
``ModemConfig.robust_header_symbols`` symbols (16 by default: ~10.5x repetition, +10 dB, enough at -8 dB), so
its first 3 symbols are a valid short header and a receiver tries the short form first. Soft-combined LLRs
of the repeated bits go to a soft Viterbi decoder, all candidates of a buffer at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .fec import conv_generator_matrix, crc16, viterbi_decode
from .sequences import HDR_MULT, HDR_SHIFT

HEADER_BITS = 64
CODED_BITS = 2 * (HEADER_BITS + 6)
SHORT_HEADER_SYMBOLS = 3
MAX_LENGTH = (1 << 13) - 1
MAX_ITEMS = 128
MAX_KIND = 7


@dataclass(frozen=True)
class FrameHeader:
    """The CRC-protected frame header.

    Attributes:
        seq: sequence number, 0..65535 (wrap with ``seq % 65536``); with aggregation, the first item's.
        length: payload symbols in the burst, 1..8191; 0 means "set by :meth:`Modem.modulate`".
        kind: 3-bit frame type for the link layer (0 semantic, 1 digital, 3 calibration, ...).
        snr_report_db: SNR the sender measured on the reverse link (feedback), or None (0.5 dB steps,
            clipped to -20..+107 dB).
        items: number of items (images) sharing the payload equally, 1..128.
        robust: send the long header (for low SNR; see the module docstring).
    """

    seq: int
    length: int = 0
    kind: int = 0
    snr_report_db: float | None = None
    items: int = 1
    robust: bool = False

    def __post_init__(self) -> None:
        for name, lo, hi in (("seq", 0, 65535), ("length", 0, MAX_LENGTH), ("kind", 0, MAX_KIND),
                             ("items", 1, MAX_ITEMS)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
                raise ValueError(f"FrameHeader.{name}={v!r}: must be an integer from {lo} to {hi}")
            object.__setattr__(self, name, int(v))
        if not isinstance(self.robust, (bool, np.bool_)):
            raise TypeError(f"FrameHeader.robust={self.robust!r}: must be True or False")
        object.__setattr__(self, "robust", bool(self.robust))
        if self.length and self.length % self.items:
            raise ValueError(
                f"FrameHeader.length={self.length} is not a multiple of items={self.items}: the items of a burst "
                "share its payload equally (pad each item to the same number of symbols)"
            )
        if self.snr_report_db is not None:
            if not math.isfinite(float(self.snr_report_db)):
                raise ValueError(f"FrameHeader.snr_report_db={self.snr_report_db!r}: must be finite or None")
            object.__setattr__(self, "snr_report_db", float(self.snr_report_db))

    @property
    def item_length(self) -> int:
        """Payload symbols per item."""
        return self.length // self.items

    def _snr_code(self) -> int:
        if self.snr_report_db is None:
            return 255
        return int(np.clip(round((self.snr_report_db + 20.0) * 2.0), 0, 254))

    def to_bytes(self, length: int | None = None) -> bytes:
        """The 6 header bytes without the CRC (``length`` overrides the field)."""
        n = self.length if length is None else int(length)
        if not 0 <= n <= MAX_LENGTH:
            raise ValueError(f"header length {n} must be from 0 to {MAX_LENGTH}")
        mid = (n << 11) | ((self.items - 1) << 4) | (self.kind << 1) | int(self.robust)
        return bytes([self.seq >> 8, self.seq & 255, mid >> 16, (mid >> 8) & 255, mid & 255, self._snr_code()])

    @classmethod
    def from_bytes(cls, data: bytes) -> FrameHeader:
        """Inverse of :meth:`to_bytes`; raises ValueError for inconsistent fields (length, items)."""
        if len(data) != 6:
            raise ValueError(f"a FrameHeader is 6 bytes, got {len(data)}")
        mid = (data[2] << 16) | (data[3] << 8) | data[4]
        code = data[5]
        return cls(
            seq=(data[0] << 8) | data[1],
            length=mid >> 11,
            items=((mid >> 4) & 127) + 1,
            kind=(mid >> 1) & 7,
            robust=bool(mid & 1),
            snr_report_db=None if code == 255 else code / 2.0 - 20.0,
        )


class HeaderCodec:
    """Encode headers to QPSK cells and decode soft cells back, for a numerology with ``n_data`` data bins."""

    def __init__(self, n_data: int, robust_symbols: int) -> None:
        self.n_data = n_data
        self._gen = conv_generator_matrix(HEADER_BITS).astype(np.int64)  # [64, 140]
        # the code is linear over GF(2): per header byte position, the coded bits of each byte value, so a
        # header encodes as the XOR of 8 table rows (no matrix product per burst)
        byte_bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.int64)  # [256, 8]
        code = np.stack([(byte_bits @ self._gen[8 * i : 8 * i + 8]) & 1 for i in range(HEADER_BITS // 8)])
        # ... packed into Python integers (bit 0 of the code = most significant), so encoding is 8 XORs
        weights = [1 << (CODED_BITS - 1 - j) for j in range(CODED_BITS)]
        self._byte_code = [[sum(w for w, b in zip(weights, code[i, v], strict=True) if b) for v in range(256)]
                           for i in range(HEADER_BITS // 8)]
        self._sign = np.array([1.0, -1.0], np.float32) / np.float32(math.sqrt(2.0))
        self.block = 2 * n_data * SHORT_HEADER_SYMBOLS
        self._src = {}
        self._combine = {}
        for n_sym in (SHORT_HEADER_SYMBOLS, robust_symbols):
            j = np.arange(2 * n_data * n_sym)
            src = (HDR_MULT * (j % self.block) + HDR_SHIFT * (j // self.block)) % CODED_BITS
            comb = np.zeros((j.size, CODED_BITS), np.float32)
            comb[j, src] = 1.0
            self._src[n_sym], self._combine[n_sym] = src, comb
        self.robust_symbols = robust_symbols

    def symbols(self, header: FrameHeader, length: int | None = None) -> np.ndarray:
        """complex64[n_sym * n_data] QPSK cells of the header (``n_sym`` by ``header.robust``)."""
        raw = header.to_bytes(length)
        c = crc16(raw)
        acc = 0
        for table, byte in zip(self._byte_code, raw + bytes([c >> 8, c & 255]), strict=True):
            acc ^= table[byte]
        coded = np.unpackbits(np.frombuffer(acc.to_bytes(-(-CODED_BITS // 8), "big"), np.uint8))[-CODED_BITS:]
        n_sym = self.robust_symbols if header.robust else SHORT_HEADER_SYMBOLS
        return self._sign[coded[self._src[n_sym]]].view(np.complex64)

    def cells(self, bits: np.ndarray, n_sym: int) -> np.ndarray:
        """QPSK cells ``complex64[F, n_sym * n_data]`` of 64-bit header words ``bits[F, 64]`` (0/1)."""
        coded = (np.asarray(bits, np.int64) @ self._gen) & 1
        slot = (1.0 - 2.0 * coded[:, self._src[n_sym]]).astype(np.float32) / np.float32(math.sqrt(2.0))
        return np.ascontiguousarray(slot).view(np.complex64)

    def decode(self, cells: np.ndarray, noise_var: np.ndarray) -> tuple[list[FrameHeader | None], np.ndarray]:
        """Soft-decode equalised header cells ``complex[F, n_sym * n_data]`` with per-cell noise variance.

        Returns (header or None per candidate, CRC ok per candidate). ``n_sym`` is 3 or the robust count.
        The decoded bits of the last call stay in ``last_bits`` (for decision-directed re-estimation).
        """
        f, n_cells = cells.shape
        n_sym = n_cells // self.n_data
        scale = (2.0 * math.sqrt(2.0)) / np.maximum(noise_var, 1e-30)
        slot_llr = np.empty((f, 2 * n_cells), np.float32)
        slot_llr[:, 0::2] = cells.real * scale
        slot_llr[:, 1::2] = cells.imag * scale
        llrs = slot_llr @ self._combine[n_sym]
        bits = np.atleast_2d(viterbi_decode(np.clip(llrs, -1e6, 1e6)))
        self.last_bits = bits
        headers: list[FrameHeader | None] = []
        ok = np.zeros(f, bool)
        for i, b in enumerate(bits):
            raw = np.packbits(b).tobytes()
            if crc16(raw[:6]) != ((raw[6] << 8) | raw[7]):
                headers.append(None)
                continue
            try:
                h = FrameHeader.from_bytes(raw[:6])
            except ValueError:
                headers.append(None)
                continue
            if h.length < 1 or (n_sym != SHORT_HEADER_SYMBOLS and not h.robust):
                headers.append(None)  # empty, or a long decode without the robust flag
                continue
            headers.append(h)
            ok[i] = True
        return headers, ok
