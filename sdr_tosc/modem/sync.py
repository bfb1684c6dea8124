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

The three passes run over ``_CHUNK_WINDOWS`` windows (128 k samples) at a time, so their arrays stay in the
cache: the matched filter as two BLAS GEMMs (``X_j @ top + X_{j+1} @ bottom``) written as a [phase, period]
array, whose windows of one phase are contiguous runs of 32 for the FFT; on noise about 85 % of the windows
pass the pre-test and the FFT is the largest cost (~35-45 % of the detector).

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
from scipy.linalg.blas import cgemm as _cgemm

from .grid import SYNC_PERIOD, ResourceGrid

_BLOCK = 64  # samples per detection block (8 periods)
_WIN_BLOCKS = 4  # detection window = 4 blocks = 32 periods
_NFFT = 64  # CFO search FFT over the window's 32 periods (2x zero padding)
_CHUNK_WINDOWS = 2048  # detection windows per pass (128 k samples: few Python calls, arrays in the cache)
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


def segments(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``x[s : s + length]`` for every ``s`` in ``starts`` as a [len(starts), length] copy, zeros outside ``x``.

    Rows inside ``x`` are copied from a sliding-window view (no index arrays); only the others are gathered.
    """
    starts = np.asarray(starts, np.int64)
    offsets = np.arange(length)
    inside = (starts >= 0) & (starts + length <= x.size)
    if inside.all():
        return sliding_window_view(x, length)[starts] if starts.size else np.zeros((0, length), x.dtype)
    if not inside.any():
        return gather(x, starts[:, None] + offsets[None, :])
    out = np.empty((starts.size, length), x.dtype)
    out[inside] = sliding_window_view(x, length)[starts[inside]]
    out[~inside] = gather(x, starts[~inside, None] + offsets[None, :])
    return out


def cis(theta: np.ndarray) -> np.ndarray:
    """``exp(1j * theta)`` as complex64 from float32 cos and sin (numpy's SIMD loops: several times faster than
    the complex exponential)."""
    t = np.asarray(theta, np.float32)
    out = np.empty(t.shape, np.complex64)
    np.cos(t, out=out.real)
    np.sin(t, out=out.imag)
    return out


def _rotator(cfo: np.ndarray, t0: int, n: int) -> np.ndarray:
    """``exp(-2j pi cfo t)`` for ``t = t0 .. t0 + n - 1`` as complex64 [len(cfo), n]: the outer product of a
    coarse (every 32 samples) and a fine (32 samples) rotator, so that cos/sin run on 1/16 of the cells."""
    cfo = np.asarray(cfo, np.float64)[:, None]
    fine = np.arange(32, dtype=np.float64)
    coarse = float(t0) + 32.0 * np.arange(-(-n // 32), dtype=np.float64)
    ph_c, ph_f = cfo * coarse, cfo * fine
    ph_c -= np.rint(ph_c)
    rot = cis(ph_c * (-2 * np.pi))[:, :, None] * cis(ph_f * (-2 * np.pi))[:, None, :]
    return rot.reshape(cfo.shape[0], -1)[:, :n]


def power(z: np.ndarray) -> np.ndarray:
    """``|z|^2`` of a complex array whose last axis is contiguous, in its real dtype (no square root; an einsum
    over the (re, im) pairs is ~6x slower)."""
    q = z.view(z.real.dtype)
    q = q * q
    return q[..., 0::2] + q[..., 1::2]


def _filters(grid: ResourceGrid) -> tuple[np.ndarray, np.ndarray]:
    """The band matrix's two 8 x 8 halves, Fortran-ordered for BLAS."""
    f = grid.sync_filter
    return np.asfortranarray(f[:SYNC_PERIOD]), np.asfortranarray(f[SYNC_PERIOD:])


def _matched_filter(xc: np.ndarray, n_periods: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """c(8 j + rho) for periods j < n_periods as a [phase rho, period j] array: ``X_j @ top + X_{j+1} @ bottom``
    (two GEMMs into one output; ``xc`` holds n_periods + 1 periods)."""
    xp = xc[: (n_periods + 1) * SYNC_PERIOD].reshape(-1, SYNC_PERIOD)
    # BLAS sees the row-major [period, 8] blocks as column-major [8, period] matrices: op(a) = a^T;
    # the column-major [period, phase] result is the row-major [phase, period] array
    c = _cgemm(1.0, xp[:-1].T, top, trans_a=1)
    c = _cgemm(1.0, xp[1:].T, bottom, beta=1.0, c=c, trans_a=1, overwrite_c=1)
    return c.T


def detect(x: np.ndarray, grid: ResourceGrid, threshold: float, max_cfo: float) -> list[Detection]:
    """Candidate sync fields in ``x`` (see the module docstring), one per sync field, in order."""
    nblk = (x.size - SYNC_PERIOD) // _BLOCK
    n_windows = nblk - _WIN_BLOCKS  # a window's power reaches one block past it
    if n_windows <= 0:
        return []
    top, bottom = _filters(grid)
    kmax = min(int(np.ceil(max_cfo * SYNC_PERIOD * _NFFT)) + 1, _NFFT // 2)  # past fs/16: every bin (aliases)
    valid = np.abs(np.fft.fftfreq(_NFFT, 1.0 / _NFFT)) <= kmax
    mask = None if valid.all() else valid.astype(np.float32)
    n_win = _WIN_BLOCKS * _BLOCK
    n_ext = n_win + _BLOCK
    # FFT input: each passing window's two phases, 32 periods zero-padded to 64 (the zeros stay: the FFT
    # writes its own output)
    pad = np.zeros((min(n_windows, _CHUNK_WINDOWS), 2, _NFFT), np.complex64)
    hits: list[tuple[np.ndarray, ...]] = []
    for w0 in range(0, n_windows, _CHUNK_WINDOWS):
        nw = min(_CHUNK_WINDOWS, n_windows - w0)
        nb = nw + _WIN_BLOCKS  # blocks the chunk's windows touch (power: one block past the last window)
        xc = x[w0 * _BLOCK : (w0 + nb) * _BLOCK + SYNC_PERIOD]
        cc = _matched_filter(xc, nb * SYNC_PERIOD, top, bottom)  # [phase, period]
        ccf = cc.view(np.float32).reshape(SYNC_PERIOD, nb, 2 * SYNC_PERIOD)
        e = np.einsum("rbk,rbk->rb", ccf, ccf)  # [phase, block]: non-coherent energy
        xb = xc[: nb * _BLOCK]
        xbf = xb.view(np.float32).reshape(nb, 2 * _BLOCK)
        pw = np.einsum("ij,ij->i", xbf, xbf).astype(np.float64)
        sm = xb.reshape(nb, _BLOCK).sum(axis=1).astype(np.complex128)
        # window power, DC removed, over the window and the block after it (the window's last correlations
        # reach 15 samples past it: where silence turns into a loud burst, the window's own power would be
        # the noise alone while its correlations already hold the burst), scaled to the window's length
        pw5 = pw[0:nw] + pw[1 : nw + 1] + pw[2 : nw + 2] + pw[3 : nw + 3] + pw[4 : nw + 4]
        sm5 = sm[0:nw] + sm[1 : nw + 1] + sm[2 : nw + 2] + sm[3 : nw + 3] + sm[4 : nw + 4]
        p_w = np.maximum((pw5 - (sm5.real**2 + sm5.imag**2) / n_ext) * (n_win / n_ext), 1e-30)
        e4 = e[:, 0:nw] + e[:, 1 : nw + 1]
        e4 += e[:, 2 : nw + 2]
        e4 += e[:, 3 : nw + 3]  # [phase, window]: about p_w per phase on noise
        e2 = np.empty_like(e4)  # phases rho and rho + 1 (a fractional delay splits between them)
        np.add(e4[:-1], e4[1:], out=e2[:-1])
        np.add(e4[-1], e4[0], out=e2[-1])
        wi = np.flatnonzero(e2.max(axis=0) > _PRUNE * p_w)
        if wi.size == 0:
            continue
        rho = np.argmax(e2.T[wi], axis=1)
        # coherent stage over the two phases: their CFO-searched powers add (noise: a sum of two exponentials);
        # a window's 32 per-period values of one phase are contiguous in cc (phase 7's neighbour is phase 0 one
        # period later: the same window's phase 0 has the same |FFT| but for one of 32 periods)
        vw = sliding_window_view(cc, _WIN_BLOCKS * SYNC_PERIOD, axis=1)[:, ::SYNC_PERIOD]  # [phase, window, 32]
        k_n = wi.size
        seg = pad[:k_n]
        seg[:, :, : _WIN_BLOCKS * SYNC_PERIOD] = vw[np.stack([rho, (rho + 1) % SYNC_PERIOD], axis=1), wi[:, None]]
        spec = sp_fft.fft(seg, axis=2).view(np.float32)  # [K, 2, 128]: (re, im) of 64 bins
        ri = np.einsum("kpf,kpf->kf", spec, spec)  # re^2 and im^2 summed over the two phases
        pwr = ri[:, 0::2] + ri[:, 1::2]  # |C(f)|^2 summed over the two phases, [K, 64]
        if mask is not None:
            pwr *= mask
        metric = pwr.max(axis=1) / p_w[wi]
        hit = np.flatnonzero(metric > threshold)
        if hit.size:
            hits.append((wi[hit] + w0, rho[hit], metric[hit], pwr[hit]))
    if not hits:
        return []
    wi, rho, metric, pwr = (np.concatenate(a) for a in zip(*hits, strict=True))
    k = np.argmax(pwr, axis=1)
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
    ws, ms = wi[order].tolist(), metric[order].tolist()
    keep: list[int] = []  # positions in ``order`` of each cluster's strongest window
    first = -(10**9)
    for j, w in enumerate(ws):
        if w - first > span:
            keep.append(j)
            first = w
        elif ms[j] > ms[keep[-1]]:
            keep[-1] = j
    return [Detection(window=int(wi[i]) * _BLOCK + int(rho[i]), cfo=float(cfo[i]), metric=float(metric[i]))
            for i in order[keep]]


def _phase_slope(corr: np.ndarray, max_slope: float = np.pi) -> np.ndarray:
    """ML slopes b (rad per step) of ``corr[f, m] ~ c_f e^{j b_f m}``: peak of a zero-padded FFT, refined.

    ``max_slope`` limits the search to ``|b| <= max_slope`` (a prior on the residual CFO: at low SNR a
    noise peak elsewhere would otherwise win now and then).
    """
    f, m = corr.shape
    if m < 2:
        return np.zeros(f)
    nfft = 1 << max(10, int(np.ceil(np.log2(8 * m))))
    spec = power(sp_fft.fft(corr.astype(np.complex64), nfft, axis=1))  # |.|^2: the same peak, no square roots
    if max_slope < np.pi:
        out = np.flatnonzero(np.abs(2 * np.pi * np.fft.fftfreq(nfft)) > max_slope)  # one run around nfft / 2
        if out.size:
            spec[:, out[0] : out[-1] + 1] = 0.0
    k = np.argmax(spec, axis=1)
    rows = np.arange(f)
    y0, y1, y2 = (np.sqrt(spec[rows, (k + d) % nfft].astype(np.float64)) for d in (-1, 0, 1))
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
    tail_t = np.concatenate([grid.sync_td[-_TAIL_SYNC:], grid.preamble_td[grid.sync_len:]]).astype(np.complex64)
    tl = tail_t.size
    t = np.arange(-_TAIL_SYNC, n_lags + tl - _TAIL_SYNC)
    dc0 = segments(x, w0, n_win).mean(axis=1, dtype=np.complex128).astype(np.complex64)
    seg = segments(x, lo - _TAIL_SYNC, t.size)
    seg -= dc0[:, None]
    seg *= _rotator(cfo, t[0], t.size)
    # correlations at every lag through FFTs (one per candidate and template)
    nfft = sp_fft.next_fast_len(seg.shape[1] + tl)
    spec = sp_fft.fft(seg, nfft, axis=1)
    n_out = n_lags + 1
    ltf_pad = np.concatenate([np.zeros(_TAIL_SYNC, np.complex64), tail_t[_TAIL_SYNC:]])
    tmpl = np.conj(sp_fft.fft(np.stack([tail_t, ltf_pad]), nfft, axis=1))  # [2, nfft] complex64
    c_full = sp_fft.ifft(spec * tmpl[0], axis=1, overwrite_x=True)[:, :n_out]
    c_ltf = sp_fft.ifft(spec * tmpl[1], axis=1, overwrite_x=True)[:, :n_out]
    a_full = power(c_full)
    tp = np.argmax(a_full, axis=1)
    rows = np.arange(orig.size)
    p_tail = sliding_window_view(power(seg), tl, axis=1)[rows, tp].sum(axis=1, dtype=np.float64) / tl
    gate = a_full[rows, tp] / (float(np.sum(power(tail_t), dtype=np.float64)) * np.maximum(p_tail, 1e-30))
    # first path: the earliest lag within cp - 4 before the peak with enough LTF correlation power
    back = np.arange(-(cp - 4), 1)
    idx = np.maximum(tp[:, None] + back[None, :], 0)
    a_ltf = power(np.ascontiguousarray(c_ltf[rows[:, None], idx]))  # [H, cp - 3]: lags up to the peak
    floor = 10.0 * (tl - _TAIL_SYNC) * p_tail
    above = (a_ltf >= _FIRST_PATH_FRACTION**2 * a_ltf[:, -1:]) & (a_ltf >= floor[:, None])
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
    dc = segments(x, start + cp, grid.sync_len - 16 - cp).mean(axis=1, dtype=np.complex128)
    dc64 = dc.astype(np.complex64)
    # fine CFO: phase slope of the known preamble's correlation, in 16-sample chunks
    L = grid.preamble_len - cp
    z = segments(x, start + cp, L)
    z -= dc64[:, None]
    z *= np.conj(grid.preamble_td[cp:]).astype(np.complex64)
    z *= _rotator(cfo, cp, L)
    chunks = z[:, : (L // 16) * 16].reshape(nf, -1, 16).sum(axis=2)
    cfo = cfo + _phase_slope(chunks) / (2 * np.pi * 16)
    # tone gate: share of the period-averaged sync energy in the strongest tone
    n_per = grid.sync_plus_len - 2 * SYNC_PERIOD
    per = segments(x, start + 2 * SYNC_PERIOD, n_per)
    per -= dc64[:, None]
    per *= _rotator(cfo, 2 * SYNC_PERIOD, n_per)
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
