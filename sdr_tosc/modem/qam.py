"""Gray-coded square QAM mapping and max-log soft demapping (numpy).

Constellations have unit average power. Each symbol carries ``bits_per_symbol`` bits: the first half on
the in-phase axis, the second half on the quadrature axis, each a Gray-coded PAM, most significant
bit first. LLRs are ``log P(bit=0) / P(bit=1)`` (positive means "0").
"""

from __future__ import annotations

import numpy as np

MODULATIONS = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6}


def bits_per_symbol(modulation: str) -> int:
    """Bits per symbol of ``modulation`` ("bpsk", "qpsk", "16qam", "64qam")."""
    try:
        return MODULATIONS[modulation]
    except KeyError:
        raise ValueError(
            f"unknown modulation {modulation!r}; choose one of {', '.join(MODULATIONS)}"
        ) from None


def _pam(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gray PAM with ``k`` bits: (levels indexed by the bit pattern as an integer, bit table [2**k, k])."""
    m = 1 << k
    idx = np.arange(m)
    gray = idx ^ (idx >> 1)
    levels = np.empty(m)
    levels[gray] = 2 * idx - (m - 1)  # the level at position idx carries the Gray pattern gray[idx]
    bits = ((np.arange(m)[:, None] >> np.arange(k - 1, -1, -1)[None, :]) & 1).astype(np.uint8)
    return levels, bits


def _scale(modulation: str) -> float:
    bps = bits_per_symbol(modulation)
    if bps == 1:
        return 1.0
    m = 1 << bps
    return float(np.sqrt(2.0 * (m - 1) / 3.0))


def qam_map(bits: np.ndarray, modulation: str) -> np.ndarray:
    """Map uint8[n * bps] bits to complex64[n] unit-power symbols. ``len(bits)`` must divide by bps."""
    bps = bits_per_symbol(modulation)
    b = np.asarray(bits, dtype=np.uint8).ravel()
    if b.size % bps:
        raise ValueError(
            f"{b.size} bits is not a multiple of {bps} bits per {modulation} symbol; pad the bits"
        )
    if bps == 1:
        return (1.0 - 2.0 * b).astype(np.complex64)
    half = bps // 2
    levels, _ = _pam(half)
    weights = 1 << np.arange(half - 1, -1, -1)
    b = b.reshape(-1, bps)
    i_idx = b[:, :half] @ weights
    q_idx = b[:, half:] @ weights
    sym = (levels[i_idx] + 1j * levels[q_idx]) / _scale(modulation)
    return sym.astype(np.complex64)


def _pam_llr(y: np.ndarray, noise_var: np.ndarray, k: int, scale: float) -> np.ndarray:
    levels, bits = _pam(k)
    pts = levels / scale
    d2 = (y[:, None] - pts[None, :]) ** 2  # [n, m]
    out = np.empty((y.size, k))
    for j in range(k):
        one = bits[:, j] == 1
        out[:, j] = d2[:, one].min(axis=1) - d2[:, ~one].min(axis=1)
    return out / noise_var[:, None]


def qam_llr(symbols: np.ndarray, noise_var: float | np.ndarray, modulation: str) -> np.ndarray:
    """Max-log LLRs of received ``symbols`` (complex[n]) with complex noise variance ``noise_var``.

    Args:
        symbols: complex[n] equalised symbols.
        noise_var: scalar or float[n]: complex noise variance per symbol (E|noise|^2).
        modulation: "bpsk", "qpsk", "16qam" or "64qam".

    Returns:
        float32[n * bps] LLRs in the bit order of :func:`qam_map` (exact, not max-log, for BPSK/QPSK).
    """
    bps = bits_per_symbol(modulation)
    y = np.asarray(symbols).ravel()
    nv = np.broadcast_to(np.maximum(np.asarray(noise_var, dtype=np.float64), 1e-12), y.shape)
    if bps == 1:
        return (4.0 * y.real / nv).astype(np.float32)
    half = bps // 2
    scale = _scale(modulation)
    li = _pam_llr(y.real.astype(np.float64), nv, half, scale)
    lq = _pam_llr(y.imag.astype(np.float64), nv, half, scale)
    return np.concatenate([li, lq], axis=1).ravel().astype(np.float32)
