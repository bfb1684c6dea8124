"""The PHY's fixed sequences, written out as constants (pinned by golden-vector tests).

They were chosen once (low peak-to-average power, low correlation sidelobes) and are part of the air
interface: a receiver built from another version of this package must find the same values here. They are
not drawn from a random generator at import time, because numpy does not promise its streams across
versions.

Conventions: subcarriers are signed bin indices ``k`` of a 64-point FFT (``-32 <= k < 32``); QPSK phase
indices ``q`` mean ``exp(j * pi/2 * q)`` for the sync tones and ``exp(j * (pi/4 + pi/2 * q))`` for the
filler; BPSK signs are written as ``+``/``-`` strings.
"""

from __future__ import annotations

import numpy as np

#: Sync (short training) tones: only bins that are multiples of 8 carry energy, so the time signal repeats
#: every 8 samples. Bins and their QPSK phase indices (lowest PAPR of the candidates tried).
SYNC_BINS = (-24, -16, -8, 8, 16, 24)
SYNC_PHASES = (1, 2, 1, 3, 2, 3)

#: Long training symbol: BPSK on the 50 used bins -26..-2, 2..26 (in increasing frequency).
LTF_SIGNS = "+++---+-+-+---++++++-++-+++---+--++-++-++-+---++-+"

#: Pilot polarity per OFDM symbol (127-periodic, applied to every pilot of the symbol).
PILOT_PN = (
    "-+-+-++-+---+-++-++--+++++-+-++--+++++-+--+++--+--++---+--+-+-----++---+-+--+++-+---++++++----+-+++"
    "---+-++++-++-+-+++-+-+++---+"
)

#: Known QPSK filler for the unused data cells of the last payload symbol (phase indices, 46 data bins).
PAD_PHASES = "2023333233301123003013313211031302033322320230"

#: Header interleaver: slot ``j`` of a block of ``2 * n_data * n_symbols`` QPSK bit slots carries coded bit
#: ``(HDR_MULT * j + HDR_SHIFT * (j // block)) % n_coded``  (a multiplicative interleaver: a formula,
#: so it is a constant for every numerology).
HDR_MULT = 97
HDR_SHIFT = 37


def signs(s: str) -> np.ndarray:
    """``"+-+"`` -> float64[3] of +-1."""
    return np.array([1.0 if c == "+" else -1.0 for c in s])


def qpsk_phases(s: str | tuple[int, ...], offset: float = 0.0) -> np.ndarray:
    """Phase indices -> complex128 unit symbols ``exp(j * (offset + pi/2 * q))``."""
    q = np.array([int(c) for c in s])
    return np.exp(1j * (offset + np.pi / 2 * q))
