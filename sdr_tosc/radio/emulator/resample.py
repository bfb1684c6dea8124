"""The emulated radios' continuous resampler (a sample-clock offset between two radios)."""

from __future__ import annotations

import math

import numpy as np


class StreamResampler:
    """Continuous resampling of a stream by ``ratio`` = output rate / input rate, state kept between chunks
    (a stream cut into chunks comes out as if resampled in one piece).

    A clock offset of a few ppm moves the fractional delay slowly, so the stream is cut into runs of
    equal delay and each run is one convolution with a windowed-sinc fractional-delay filter from a bank
    of ``phases`` (``taps`` long, Blackman window; a matrix product over a sliding window of the input):
    about -50 dB of error on a band-limited signal.
    Radios set to different sample rates (a ratio far from 1) get cubic interpolation instead.
    """

    def __init__(self, ratio: float, taps: int = 24, phases: int = 128) -> None:
        if not (math.isfinite(ratio) and 1e-3 < ratio < 1e3):
            raise ValueError(f"resampling ratio {ratio} is out of range")
        self.ratio = float(ratio)
        self.clock_offset = abs(self.ratio - 1.0) < 1e-3
        self.taps, self.phases = taps, phases
        half = taps // 2
        k = np.arange(taps) - (half - 1)  # filter for output at x[i + mu]: taps x[i - half + 1 .. i + half]
        mu = np.arange(phases + 1)[:, None] / phases
        h = np.sinc(k[None, :] - mu) * np.blackman(taps + 2)[1:-1][None, :]
        self.fir = (h / h.sum(axis=1, keepdims=True)).astype(np.complex64)  # row p: delay p / phases
        self.hist = np.zeros(taps, np.complex64)
        self.t = float(taps)  # position of the next output in [hist, x] coordinates

    def __call__(self, x: np.ndarray) -> np.ndarray:
        half = self.taps // 2
        xp = np.concatenate([self.hist, x])
        size = xp.size
        r, t0 = self.ratio, self.t
        # outputs need x up to floor(t) + half, with t rounded up by at most 1/phases on the filter grid
        margin = 1.0 / self.phases if self.clock_offset else 0.0
        m = max(0, math.ceil((size - half - t0 - margin) * r))
        while m and t0 + (m - 1) / r + margin >= size - half:
            m -= 1
        out = self._polyphase(xp, t0, m) if self.clock_offset else self._cubic(xp, t0 + np.arange(m) / r)
        self.t = t0 + m / r - (size - self.taps)
        self.hist = xp[-self.taps:].copy()
        return out

    @staticmethod
    def _cubic(xp: np.ndarray, ts: np.ndarray) -> np.ndarray:
        i = np.floor(ts).astype(np.int64)
        mu = (ts - i).astype(np.float32)
        out = xp[i] * ((mu + 1) * (mu - 1) * (mu - 2) / 2)
        out += xp[i - 1] * (-mu * (mu - 1) * (mu - 2) / 6)
        out += xp[i + 1] * (-(mu + 1) * mu * (mu - 2) / 2)
        out += xp[i + 2] * ((mu + 1) * mu * (mu - 1) / 6)
        return out.astype(np.complex64, copy=False)

    def _runs(self, t0: float, m: int) -> tuple[list[int], list[int]]:
        """Output ``k`` sits at ``t = k + u_k``, ``u_k = t0 - k eps``; ``q_k = rint(u_k P)`` is its delay on the
        filter bank's grid. Returns the first output of each run of equal ``q`` and that ``q``: the run
        boundaries are where ``u_k P`` crosses a half-integer, solved for ``k`` (no per-sample work)."""
        P, eps = self.phases, 1.0 - 1.0 / self.ratio
        q0 = int(np.rint(t0 * P))
        q1 = int(np.rint((t0 - (m - 1) * eps) * P))
        if q1 == q0 or m <= 1:
            return [0], [q0]
        step = -1 if q1 < q0 else 1
        qs = np.arange(q0, q1 + step, step)
        half = (qs[:-1] + qs[1:]) / 2.0  # the half-integers crossed
        x = (t0 - half / P) / eps
        ks = np.floor(x) + 1 if eps > 0 else np.ceil(x)
        ks = np.clip(ks, 1, m - 1).astype(np.int64)
        keep = np.concatenate([[True], np.diff(ks) > 0])  # runs that would be empty (rounding) merge
        return [0, *ks[keep].tolist()], [q0, *qs[1:][keep].tolist()]

    def _polyphase(self, xp: np.ndarray, t0: float, m: int) -> np.ndarray:
        half, P = self.taps // 2, self.phases
        out = np.empty(m, np.complex64)
        if not m:
            return out
        starts, qs = self._runs(t0, m)
        windows = np.lib.stride_tricks.sliding_window_view(xp, self.taps)  # row j: xp[j : j + taps]
        for n, (a, qa) in enumerate(zip(starts, qs, strict=True)):
            b = starts[n + 1] if n + 1 < len(starts) else m
            lo = a + qa // P - half + 1
            np.matmul(windows[lo:lo + b - a], self.fir[qa % P], out=out[a:b])
        return out
