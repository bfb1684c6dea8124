"""Frame synchronisation: detection at low SNR with any CFO up to +-8 % of fs, then timing, CFO and DC.

Sync field: ``sync_periods`` (48) repetitions of one 8-sample period (6 QPSK tones on bins +-8, +-16, +-24).

Detection (:func:`detect`), in three passes over the buffer:

1. Per-period matched filter ``c(t) = sum_m conj(s[m]) x[t + m]`` (8 taps) for every sample ``t``. The tones
   have no DC component, so a receiver DC offset does not enter.
2. For windows of 32 periods (256 samples) starting every 64 samples, and each of the 8 sample phases
   ``rho`` of the period, the non-coherent energy ``sum_j |c(w + 8 j + rho)|^2`` normalised by the window's
   power (mean removed): about 1 on noise, up to ``(1 + 8 snr) / (1 + snr)`` on a sync field. Summed over
   two adjacent phases (a fractional delay splits the energy between them), it is cheap and only prunes:
   the best pair of windows above ``_PRUNE`` goes on.
3. Coherent combining with a CFO search: the 32 values ``c(w + 8 j + rho)`` of a window rotate by
   ``2 pi f 8`` per period under a CFO ``f``; a zero-padded 64-point FFT over ``j`` sums them coherently for
   every CFO in range at once (segmented matched filtering: 8-sample segments lose at most 1.5 dB at 4 % of
   fs). ``|C(f)|^2 / P`` summed over the two phases is a sum of two exponentials with mean 1 on noise and
   about ``256 snr / (1 + snr)`` on a frame (35 at -8 dB), compared with ``ModemConfig.detect_threshold``.

Synchronisation (:func:`synchronise`), vectorised over the detections of a buffer: coarse CFO from the FFT
peak (interpolated); timing by correlating with the preamble's tail (last 8 sync periods, 4 of them negated, + LTF with its
CP, 224 samples: the sign flip and the LTF tell shifts of 8 and of 64 samples apart, so the peak is unique) over every
lag the detection window allows; the earliest path within ``cp - 4`` samples of the peak is taken (the FFT
window starts 2 samples early); fine CFO by an ML phase-slope fit over the whole known preamble (data
aided: 544 samples); receiver DC as the mean over the sync field; a gate on the tail correlation and on
the spread of energy over the sync tones (a CW tone puts it all in one; a frame spreads it over six).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft as sp_fft

from .grid import SYNC_PERIOD, ResourceGrid

_BLOCK = 64  # samples per detection block (8 periods)
_WIN_BLOCKS = 4  # detection window = 4 blocks = 32 periods
_NFFT = 64  # CFO search FFT over the window's 32 periods (2x zero padding)
_PRUNE = 2.15  # non-coherent pre-test on two adjacent phases (a loose cut: noise median 2.31; -8 dB: 2.6-2.9)
_TAIL_SYNC = 64  # sync samples in the timing template (they do not tell shifts of 8 samples apart)
_GATE = 8.5  # tail correlation gate (about 6 on noise at the best of ~330 lags; 11-35 at -8 dB)
_TONE_SHARE = 0.9  # largest share of the sync energy one tone may hold (CW: > 0.99; multipath: < 0.8)
_FIRST_PATH_FRACTION = 0.45
TIMING_BACKOFF = 2  # FFT windows start this many samples before the detected first path


@dataclass
class Detection:
    window: int  # sample index of the detection window's start (aligned to the period phase)
    cfo: float  # coarse CFO, cycles per sample
    metric: float


@dataclass
class Candidate:
    start: int  # first sample of the sync field
    t_fft: int  # LTF1 FFT window start
    cfo: float  # cycles per sample
    dc: complex
    metric: float  # tail correlation gate value


def gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``x[idx]`` (complex64, any index shape) with zeros where ``idx`` falls outside ``x``."""
    if idx.size == 0 or (idx.min() >= 0 and idx.max() < x.size):
        return x[idx]
    inside = (idx >= 0) & (idx < x.size)
    out = x[np.clip(idx, 0, x.size - 1)]
    out[~inside] = 0
    return out


def detect(x: np.ndarray, grid: ResourceGrid, threshold: float, max_cfo: float) -> list[Detection]:
    """Candidate sync fields in ``x`` (see the module docstring), one per sync field, in order."""
    nblk = (x.size - SYNC_PERIOD) // _BLOCK
    if nblk < _WIN_BLOCKS:
        return []
    ns = nblk * _BLOCK
    # per-period matched filter as one GEMM: row j of [X_j | X_{j+1}] (two periods) times a 16 x 8 band
    # matrix gives c(8 j + rho) for the 8 sample phases rho
    xp = x[: ns + SYNC_PERIOD].reshape(-1, SYNC_PERIOD)
    pairs = np.concatenate([xp[:-1], xp[1:]], axis=1)  # [periods, 16]
    cc = (pairs @ grid.sync_filter).reshape(nblk, SYNC_PERIOD, SYNC_PERIOD)  # [block, period, phase]
    e = np.einsum("bjr,bjr->br", cc.real, cc.real) + np.einsum("bjr,bjr->br", cc.imag, cc.imag)
    xf = x[:ns].view(np.float32).reshape(nblk, 2 * _BLOCK)
    pw = np.einsum("ij,ij->i", xf, xf).astype(np.float64)
    sm = x[:ns].reshape(nblk, _BLOCK).sum(axis=1, dtype=np.complex128)

    def wsum(a: np.ndarray, blocks: int = _WIN_BLOCKS) -> np.ndarray:
        cs = np.concatenate([np.zeros((1,) + a.shape[1:], a.dtype), np.cumsum(a, axis=0)])
        return cs[blocks:] - cs[:-blocks]

    # window power, DC removed, over the window and the block after it (the window's last correlations
    # reach 15 samples past it: where silence turns into a loud burst, the window's own power would be
    # the noise alone while its correlations already hold the burst), scaled to the window's length
    n_win = _WIN_BLOCKS * _BLOCK
    n_ext = n_win + _BLOCK
    p_w = (wsum(pw, _WIN_BLOCKS + 1) - np.abs(wsum(sm, _WIN_BLOCKS + 1)) ** 2 / n_ext) * (n_win / n_ext)
    p_w = np.maximum(p_w, 1e-30)
    nc = wsum(e.astype(np.float64))[: p_w.size] / p_w[:, None]  # [W, 8]: ~1 per phase on noise
    nc2 = nc + np.roll(nc, -1, axis=1)  # phases rho and rho + 1 (a fractional delay splits between them)
    rho = np.argmax(nc2, axis=1)
    wi = np.flatnonzero(nc2[np.arange(nc2.shape[0]), rho] > _PRUNE)
    if wi.size == 0:
        return []
    rho = rho[wi]
    # coherent stage over the two phases: their CFO-searched powers add (noise: a sum of two exponentials)
    # the window's 32 per-period values of each phase: a strided view [window, phase, period], no copy
    vw = sliding_window_view(cc.reshape(-1, SYNC_PERIOD), _WIN_BLOCKS * SYNC_PERIOD, axis=0)[::SYNC_PERIOD]
    # (phase 7's neighbour is phase 0 one period later: the same window's phase 0 has the same |FFT| but for
    # one of 32 periods)
    seg = np.stack([vw[wi, rho], vw[wi, (rho + 1) % SYNC_PERIOD]], axis=1)  # [K, 2, 32]
    spec = sp_fft.fft(seg, _NFFT, axis=2, overwrite_x=True).view(np.float32)
    np.square(spec, out=spec)
    tot = spec[:, 0] + spec[:, 1]
    pwr = tot[:, 0::2] + tot[:, 1::2]  # |C(f)|^2 summed over the two phases, [K, 64]
    kmax = min(int(np.ceil(max_cfo * SYNC_PERIOD * _NFFT)) + 1, _NFFT // 2)  # past fs/16: every bin (aliases)
    valid = np.abs(np.fft.fftfreq(_NFFT, 1.0 / _NFFT)) <= kmax
    pwr[:, ~valid] = 0.0
    k = np.argmax(pwr, axis=1)
    rows = np.arange(k.size)
    metric = pwr[rows, k] / p_w[wi]
    hit = metric > threshold
    if not hit.any():
        return []
    wi, rho, k, metric, pwr = wi[hit], rho[hit], k[hit], metric[hit], pwr[hit]
    rows = np.arange(k.size)
    y0, y1, y2 = (np.sqrt(pwr[rows, (k + d) % _NFFT]) for d in (-1, 0, 1))
    den = y0 - 2 * y1 + y2
    frac = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    kf = k + frac
    kf = np.where(kf > _NFFT / 2, kf - _NFFT, kf)
    cfo = kf / (SYNC_PERIOD * _NFFT)
    # one detection per sync field: cluster windows closer than a sync field, keep the strongest
    order = np.lexsort((-metric, wi))
    span = grid.sync_len // _BLOCK + 2
    out: list[Detection] = []
    first = -(10**9)
    for i in order:
        w = int(wi[i])
        d = Detection(window=w * _BLOCK + int(rho[i]), cfo=float(cfo[i]), metric=float(metric[i]))
        if w - first > span:
            out.append(d)
            first = w
        elif d.metric > out[-1].metric:
            out[-1] = d
    return out


def _phase_slope(corr: np.ndarray, max_slope: float = np.pi) -> np.ndarray:
    """ML slopes b (rad per step) of ``corr[f, m] ~ c_f e^{j b_f m}``: peak of a zero-padded FFT, refined.

    ``max_slope`` limits the search to ``|b| <= max_slope`` (a prior on the residual CFO: at low SNR a
    noise peak elsewhere would otherwise win now and then).
    """
    f, m = corr.shape
    if m < 2:
        return np.zeros(f)
    nfft = 1 << max(10, int(np.ceil(np.log2(8 * m))))
    spec = np.abs(np.fft.fft(corr, nfft, axis=1))
    if max_slope < np.pi:
        b = 2 * np.pi * np.fft.fftfreq(nfft)
        spec[:, np.abs(b) > max_slope] = 0.0
    k = np.argmax(spec, axis=1)
    rows = np.arange(f)
    y0, y1, y2 = spec[rows, k - 1], spec[rows, k], spec[rows, (k + 1) % nfft]
    den = y0 - 2 * y1 + y2
    frac = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    kf = k + frac
    kf = np.where(kf > nfft / 2, kf - nfft, kf)
    return 2 * np.pi * kf / nfft


phase_slope = _phase_slope


def synchronise(x: np.ndarray, dets: list[Detection], grid: ResourceGrid, sync_periods: int,
                max_cfo: float = 0.044) -> list[Candidate]:
    """Timing, fine CFO and DC for every detection at once; drops those that fail the gates.

    The detection's CFO is known modulo fs / 8 (the sync period); when ``max_cfo`` reaches past fs / 16, the
    aliases ``cfo +- fs / 8`` within range are tried as well and the one whose timing correlation is best kept
    (the LTF is not 8-periodic, so only the right one correlates).
    """
    if not dets:
        return []
    cp = grid.cp
    hyp = [(i, d.cfo + k / SYNC_PERIOD) for i, d in enumerate(dets) for k in (0, -1, 1)
           if k == 0 or abs(d.cfo + k / SYNC_PERIOD) <= max_cfo]
    orig = np.array([h[0] for h in hyp])
    w0 = np.array([dets[i].window for i in orig], dtype=np.int64)
    cfo = np.array([h[1] for h in hyp])
    n_win = _WIN_BLOCKS * _BLOCK
    # LTF-CP start: the window lies mostly inside the sync field: it starts between 12 periods early
    # (partial overlap wins now and then at low SNR) and 12 periods after the last full-window position.
    k_hi = sync_periods - _WIN_BLOCKS * SYNC_PERIOD + 12
    lo = w0 + grid.sync_len - SYNC_PERIOD * k_hi - 4
    n_lags = SYNC_PERIOD * (k_hi + 12) + 9
    tail_t = np.concatenate([grid.sync_td[-_TAIL_SYNC:], grid.preamble_td[grid.sync_len:]])
    tl = tail_t.size
    t = np.arange(-_TAIL_SYNC, n_lags + tl - _TAIL_SYNC)
    dc0 = gather(x, w0[:, None] + np.arange(n_win)[None, :]).mean(axis=1)
    seg = gather(x, lo[:, None] + t[None, :]) - dc0[:, None].astype(np.complex64)
    seg *= np.exp(-2j * np.pi * cfo[:, None] * t[None, :]).astype(np.complex64)
    # correlations at every lag through FFTs (one per candidate and template)
    nfft = sp_fft.next_fast_len(seg.shape[1] + tl)
    spec = sp_fft.fft(seg, nfft, axis=1)
    n_out = n_lags + 1
    c_full = sp_fft.ifft(spec * np.conj(sp_fft.fft(tail_t, nfft))[None, :], axis=1)[:, :n_out]
    ltf_pad = np.concatenate([np.zeros(_TAIL_SYNC), tail_t[_TAIL_SYNC:]])
    c_ltf = sp_fft.ifft(spec * np.conj(sp_fft.fft(ltf_pad, nfft))[None, :], axis=1)[:, :n_out]
    a_full = np.abs(c_full) ** 2
    tp = np.argmax(a_full, axis=1)
    rows = np.arange(orig.size)
    e = np.abs(seg.astype(np.complex128)) ** 2
    ce = np.concatenate([np.zeros((orig.size, 1)), np.cumsum(e, axis=1)], axis=1)
    p_tail = (ce[rows, tp + tl] - ce[rows, tp]) / tl
    gate = a_full[rows, tp] / (np.sum(np.abs(tail_t) ** 2) * np.maximum(p_tail, 1e-30))
    # first path: the earliest lag within cp - 4 before the peak with enough LTF correlation power
    a_ltf = np.abs(c_ltf) ** 2
    back = np.arange(-(cp - 4), 1)
    idx = np.maximum(tp[:, None] + back[None, :], 0)
    floor = 10.0 * (tl - _TAIL_SYNC) * p_tail
    above = (a_ltf[rows[:, None], idx] >= _FIRST_PATH_FRACTION**2 * a_ltf[rows, tp][:, None]) & (
        a_ltf[rows[:, None], idx] >= floor[:, None]
    )
    above[:, -1] = True
    t_ltf = lo + idx[rows, np.argmax(above, axis=1)]  # LTF CP start of the first path
    start = t_ltf - grid.sync_len
    if orig.size > len(dets):  # CFO aliases: keep each detection's best
        best = np.zeros(len(dets), np.int64)
        for j in np.argsort(gate):  # ascending: the best overwrites
            best[orig[j]] = j
        gate, start, cfo, t_ltf = gate[best], start[best], cfo[best], t_ltf[best]
    keep = (gate >= _GATE) & (start >= -TIMING_BACKOFF)
    if not keep.any():
        return []
    start, cfo, metric, t_ltf = start[keep], cfo[keep], gate[keep], t_ltf[keep]
    nf = start.size
    # DC: the mean over the sync field (its tones have none)
    dc = gather(x, start[:, None] + np.arange(cp, grid.sync_len - 16)[None, :]).astype(np.complex128).mean(axis=1)
    # fine CFO: phase slope of the known preamble's correlation, in 16-sample chunks
    L = grid.preamble_len - cp
    tt = np.arange(cp, grid.preamble_len)
    z = (gather(x, start[:, None] + tt[None, :]) - dc[:, None].astype(np.complex64)) * np.conj(
        grid.preamble_td[cp:]
    ).astype(np.complex64)
    z *= np.exp(-2j * np.pi * cfo[:, None] * tt[None, :]).astype(np.complex64)
    chunks = z[:, : (L // 16) * 16].reshape(nf, -1, 16).sum(axis=2)
    cfo = cfo + _phase_slope(chunks) / (2 * np.pi * 16)
    # tone gate: share of the period-averaged sync energy in the strongest tone
    tt2 = np.arange(2 * SYNC_PERIOD, grid.sync_plus_len)
    per = gather(x, start[:, None] + tt2[None, :]) - dc[:, None].astype(np.complex64)
    per = per * np.exp(-2j * np.pi * cfo[:, None] * tt2[None, :]).astype(np.complex64)
    avg = per.reshape(nf, -1, SYNC_PERIOD).mean(axis=1)
    tones = np.abs(np.fft.fft(avg, axis=1)) ** 2
    tone_bins = np.unique(grid.sync_bins // (grid.n_fft // SYNC_PERIOD))
    tp_ = tones[:, tone_bins]
    share = tp_.max(axis=1) / np.maximum(tp_.sum(axis=1), 1e-30)
    ok = share <= _TONE_SHARE
    t_fft = t_ltf + grid.ltf_cp - TIMING_BACKOFF
    return [
        Candidate(start=int(max(start[i], 0)), t_fft=int(t_fft[i]), cfo=float(cfo[i]), dc=complex(dc[i]),
                  metric=float(metric[i]))
        for i in range(nf)
        if ok[i]
    ]
