"""The project's one numpy channel model: pure, vectorised impairments (no sockets, torch or radio libraries).

It serves the channel simulator (:mod:`sdr_tosc.channel.core`), the modem's tests and benchmarks, and the
evaluation baselines (:mod:`sdr_tosc.semantic.evaluate`); the differentiable torch channel used for
training lives in :mod:`sdr_tosc.semantic.channels`. ``sdr_tosc.modem`` does not import this module (the
modem stays free of the simulator); tests and benchmarks import both.

All signals are ``complex64`` 1-D arrays at one sample rate; units are in argument names. Every random
function takes a ``numpy.random.Generator`` so results are reproducible from a seed. No function modifies
its input.

SNR (docs/design.md, one definition everywhere): average received signal power over the burst's samples
(after the channel, before noise) divided by the complex noise variance per sample, ``E|w|^2``.
:func:`awgn` applies exactly that to a buffer that may hold zero gaps between bursts: the power is
measured over the non-zero samples (:func:`burst_power`) and noise is added to *every* sample.

Two families of helpers share the same kernels:

* streaming, as the simulator uses them: :func:`delay` and :func:`resample_sco` grow the output,
  :class:`PhaseRotator` keeps phase across blocks, :class:`TapDelayLine` / :func:`apply_taps` (in
  :mod:`.multipath`, with the profiles, fading and path loss; re-exported here);
* fixed-length buffer helpers for tests and benchmarks (output length = input length)::

    buf = place_bursts([burst], n_total=20_000, offsets=[1234])
    buf = fractional_delay(buf, 0.37)                 # sub-sample timing offset
    buf = multipath(buf, random_multipath_taps(rng, delay_spread=8))
    buf = sample_clock_offset(buf, ppm=20.0)           # independent sample clocks
    buf = apply_cfo(buf, cfo_hz=25e3, sample_rate_hz=1e6)
    buf = awgn(buf, snr_db=10.0, rng=rng)
"""

from __future__ import annotations

import numpy as np

#: Block length (samples) for cache-friendly streaming arithmetic: 8192 complex64 = 64 KiB, fits in L2.
BLOCK = 8192


def signal_power(x: np.ndarray) -> float:
    """Mean power ``mean(|x|^2)`` of ``x: complex[n]`` (0.0 for an empty array)."""
    if x.size == 0:
        return 0.0
    f = x.view(np.float32) if x.dtype == np.complex64 else np.ascontiguousarray(x).view(np.float64)
    return float(np.dot(f, f)) / x.size


def burst_power(x: np.ndarray) -> float:
    """Mean ``|x|^2`` over the non-zero samples of ``x`` (0.0 if all are zero): a burst's power in a buffer.

    "Non-zero" means above 1e-12 of the peak power (-120 dB), so floating-point dust left by filters does
    not count as signal while zero gaps between bursts are excluded.
    """
    x = _as_iq(x)
    if x.size == 0:
        return 0.0
    p = x.real.astype(np.float64) ** 2 + x.imag.astype(np.float64) ** 2
    nz = p > 1e-12 * p.max()
    return float(p[nz].mean()) if nz.any() else 0.0


def noise_variance_for_snr(signal_power_lin: float, snr_db: float) -> float:
    """Complex noise variance ``E|w|^2`` that gives ``snr_db`` for a signal of mean power ``signal_power_lin``."""
    return float(signal_power_lin) / (10.0 ** (float(snr_db) / 10.0))


def complex_noise(n: int, noise_var: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Circular complex Gaussian noise ``complex64[n]`` with ``E|w|^2 = noise_var`` (scalar or float32[n])."""
    w = rng.standard_normal(2 * n, dtype=np.float32).view(np.complex64)
    std = np.sqrt(np.asarray(noise_var, dtype=np.float32) / np.float32(2.0))
    w *= std
    return w


def awgn(x: np.ndarray, snr_db: float, rng: np.random.Generator,
         signal_power_w: float | None = None) -> np.ndarray:
    """``x + w`` at ``snr_db`` by the one SNR definition, ``complex64[n]``.

    Args:
        x: complex[n] noiseless received signal (after the channel); may hold zero gaps between bursts.
        snr_db: signal power / complex noise variance per sample, in dB.
        rng: numpy random generator.
        signal_power_w: the signal power to reference; default :func:`burst_power` of ``x``.

    ``E|w|^2 = signal_power_w / 10**(snr_db / 10)`` (:func:`noise_variance_for_snr`).
    """
    x = _as_iq(x)
    p = burst_power(x) if signal_power_w is None else float(signal_power_w)
    if not p > 0:
        raise ValueError("awgn: the signal is all zeros; pass signal_power_w to set the noise level")
    return (x + complex_noise(x.size, noise_variance_for_snr(p, snr_db), rng)).astype(np.complex64, copy=False)


def _as_iq(iq: np.ndarray) -> np.ndarray:
    x = np.asarray(iq)
    if x.ndim != 1:
        raise ValueError(f"iq must be a 1-D array, got shape {x.shape}")
    return x.astype(np.complex64, copy=False)


class PhaseRotator:
    """Continuous-phase frequency offset: multiplies successive blocks by ``exp(j(phi0 + 2 pi f k / fs))``.

    Keeps the phase between calls (a continuous sample timeline) and caches the per-sample phasor table, so
    a block costs one complex64 multiply per sample.
    """

    def __init__(self, cfo_hz: float, sample_rate_hz: float, phase_rad: float = 0.0) -> None:
        self.sample_rate_hz = float(sample_rate_hz)
        self.phase_rad = float(phase_rad)
        self._table: np.ndarray | None = None
        self.cfo_hz = float(cfo_hz)

    @property
    def cfo_hz(self) -> float:
        return self._cfo_hz

    @cfo_hz.setter
    def cfo_hz(self, value: float) -> None:
        self._cfo_hz = float(value)
        self._table = None

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rotate ``x: complex64[n]`` (in place if ``out is x``) and advance the phase by n samples.

        Block-wise: a cached table ``exp(j w k)``, k < BLOCK, times one scalar per block, so the data is
        touched once.
        """
        n = x.size
        if out is None:
            out = np.empty_like(x)
        if self._cfo_hz == 0.0:
            if self.phase_rad == 0.0:
                if out is not x:
                    out[...] = x
            else:
                np.multiply(x, np.complex64(np.exp(1j * self.phase_rad)), out=out)
            return out
        w = self._phase_step()
        tmp = self._tmp
        phase = self.phase_rad
        for a in range(0, n, BLOCK):
            b = min(a + BLOCK, n)
            t = tmp[: b - a]
            np.multiply(self._table[: b - a], np.complex64(np.exp(1j * phase)), out=t)
            np.multiply(x[a:b], t, out=out[a:b])
            phase = (phase + w * (b - a)) % (2.0 * np.pi)
        self.phase_rad = float(phase)
        return out


    def _phase_step(self) -> float:
        """Radians per sample; builds the per-block phasor table on first use."""
        w = 2.0 * np.pi * self._cfo_hz / self.sample_rate_hz
        if self._table is None:
            self._table = np.exp(1j * w * np.arange(BLOCK)).astype(np.complex64)
            self._tmp = np.empty(BLOCK, np.complex64)
        return w

    def mix_add(self, x: np.ndarray, nz: np.ndarray, scale, out: np.ndarray) -> np.ndarray:
        """``out = rotate(x) + scale * nz`` for ``x, nz: complex64[n]`` and ``scale`` a float or
        ``float32[n]``; advances the phase by n samples like :meth:`__call__` (``out`` must not overlap
        ``x`` or ``nz``).

        Per block: one table multiply, one BLAS caxpy applying the block's phasor while adding, and one
        float32 pass scaling the noise: about a third fewer passes than scaling, adding and rotating.
        """
        n = x.size
        if n == 0:
            return out
        if np.ndim(scale) == 0:
            np.multiply(nz.view(np.float32), np.float32(scale), out=out.view(np.float32))
        else:
            np.multiply(nz, scale, out=out)
        caxpy = _caxpy()
        if self._cfo_hz == 0.0:
            caxpy(x, out, a=complex(np.complex64(np.exp(1j * self.phase_rad))))
            return out
        w = self._phase_step()
        phase = self.phase_rad
        for a in range(0, n, BLOCK):
            b = min(a + BLOCK, n)
            t = self._tmp[: b - a]
            np.multiply(x[a:b], self._table[: b - a], out=t)
            caxpy(t, out[a:b], a=complex(np.complex64(np.exp(1j * phase))))
            phase = (phase + w * (b - a)) % (2.0 * np.pi)
        self.phase_rad = float(phase)
        return out


def apply_cfo(x: np.ndarray, cfo_hz: float, sample_rate_hz: float, start_sample: int = 0,
              phase_rad: float = 0.0) -> np.ndarray:
    """Frequency offset: ``x[k] exp(j (2 pi cfo_hz (start_sample + k) / sample_rate_hz + phase_rad))``."""
    x = _as_iq(x)
    k = np.arange(x.size, dtype=np.float64) + float(start_sample)
    return (x * np.exp(1j * (2.0 * np.pi * cfo_hz / sample_rate_hz * k + phase_rad))).astype(np.complex64)


def wiener_phase(n: int, linewidth_hz: float, sample_rate_hz: float, rng: np.random.Generator,
                 phase0_rad: float = 0.0) -> np.ndarray:
    """Phase-noise trajectory ``float64[n]`` (radians) of an oscillator with 3 dB ``linewidth_hz``.

    Wiener process: increments ~ N(0, 2 pi linewidth / fs).
    """
    if n == 0:
        return np.zeros(0)
    step = np.sqrt(2.0 * np.pi * linewidth_hz / sample_rate_hz)
    return phase0_rad + np.cumsum(rng.standard_normal(n) * step)


def phase_noise(x: np.ndarray, linewidth_hz: float, sample_rate_hz: float,
                rng: np.random.Generator) -> np.ndarray:
    """``x exp(j phi)`` with ``phi`` a :func:`wiener_phase` trajectory (Lorentzian line of ``linewidth_hz``)."""
    x = _as_iq(x)
    return (x * np.exp(1j * wiener_phase(x.size, linewidth_hz, sample_rate_hz, rng))).astype(np.complex64)


def iq_imbalance(x: np.ndarray, amplitude_db: float, phase_deg: float) -> np.ndarray:
    """Receiver IQ imbalance: ``y = mu x + nu conj(x)`` with gain mismatch ``amplitude_db`` and ``phase_deg``.

    ``mu = (1 + g e^{-j phi}) / 2``, ``nu = (1 - g e^{j phi}) / 2``, ``g = 10^(amplitude_db / 20)``; image
    rejection ratio ``|mu|^2 / |nu|^2``.
    """
    if amplitude_db == 0.0 and phase_deg == 0.0:
        return x
    g = 10.0 ** (amplitude_db / 20.0)
    phi = np.deg2rad(phase_deg)
    mu = np.complex64((1.0 + g * np.exp(-1j * phi)) / 2.0)
    nu = np.complex64((1.0 - g * np.exp(1j * phi)) / 2.0)
    return (mu * x + nu * np.conj(x)).astype(np.complex64, copy=False)


def image_rejection_db(amplitude_db: float, phase_deg: float) -> float:
    """Image rejection ratio in dB of :func:`iq_imbalance` with these parameters (inf when ideal)."""
    g = 10.0 ** (amplitude_db / 20.0)
    phi = np.deg2rad(phase_deg)
    mu = (1.0 + g * np.exp(-1j * phi)) / 2.0
    nu = (1.0 - g * np.exp(1j * phi)) / 2.0
    return float("inf") if abs(nu) == 0 else float(20 * np.log10(abs(mu) / abs(nu)))


def fractional_delay_filter(frac: float, half_taps: int = 16) -> np.ndarray:
    """Kaiser-windowed sinc FIR ``float64[2*half_taps+1]`` delaying by ``half_taps + frac`` samples."""
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"fractional delay must be in [0, 1), got {frac}")
    k = np.arange(-half_taps, half_taps + 1, dtype=np.float64)
    h = np.sinc(k - frac) * np.kaiser(2 * half_taps + 1, 8.0)
    return h / h.sum()


def delay(x: np.ndarray, delay_samples: float, half_taps: int = 16) -> np.ndarray:
    """Delay ``x: complex64[n]`` by ``delay_samples >= 0`` (integer + fractional); output length grows.

    The integer part prepends zeros; a fractional part is a windowed-sinc interpolator (band-limited,
    accurate below ~0.9 of Nyquist).
    """
    if delay_samples < 0:
        raise ValueError(f"delay_samples must be >= 0, got {delay_samples}")
    d_int = int(np.floor(delay_samples))
    frac = float(delay_samples - d_int)
    if frac < 1e-9:
        return np.concatenate([np.zeros(d_int, np.complex64), x.astype(np.complex64, copy=False)])
    h = fractional_delay_filter(frac, half_taps)
    y = np.convolve(x, h.astype(np.complex64))  # delayed by half_taps + frac
    pad = d_int - half_taps
    if pad >= 0:
        return np.concatenate([np.zeros(pad, np.complex64), y]).astype(np.complex64, copy=False)
    return y[-pad:].astype(np.complex64, copy=False)


def fractional_delay(x: np.ndarray, delay_samples: float, n_taps: int = 33) -> np.ndarray:
    """:func:`delay` cut to the input's length (zeros shift in, the tail falls off): a buffer helper.

    Put bursts inside zero gaps first; the FIR has finite support (``n_taps`` taps), so gaps stay exactly
    zero beyond ``n_taps // 2`` samples of a burst and :func:`burst_power` stays meaningful.
    """
    x = _as_iq(x)
    y = delay(x, delay_samples, half_taps=n_taps // 2)[: x.size]
    return y if y.size == x.size else np.concatenate([y, np.zeros(x.size - y.size, np.complex64)])


def resample_sco(x: np.ndarray, ppm: float, n_taps: int = 0) -> np.ndarray:
    """Sample-clock offset: the receiver's clock runs ``ppm`` parts per million fast.

    Output sample m is the input evaluated at ``t = m / (1 + ppm 1e-6)``, so a positive ppm yields more
    samples (length ``~ n (1 + ppm 1e-6)``). ``n_taps = 0``: cubic Lagrange (fast, what the simulator uses);
    ``n_taps > 0``: a raised-cosine-windowed sinc of that many taps (reference quality, slower).
    """
    if ppm == 0.0 or x.size < 4:
        return x
    ratio = 1.0 + ppm * 1e-6
    m = int(np.floor((x.size - 1) * ratio)) + 1
    t = np.arange(m, dtype=np.float64) / ratio
    if n_taps > 0:
        return _sinc_interp(_as_iq(x), t, n_taps)
    i = np.floor(t).astype(np.int64)
    mu = t - i
    xp = np.concatenate([np.zeros(1, x.dtype), x, np.zeros(2, x.dtype)])  # xp[i+1] == x[i]
    xm1, x0, x1, x2 = xp[i], xp[i + 1], xp[i + 2], xp[i + 3]
    c_m1 = -mu * (mu - 1) * (mu - 2) / 6
    c_0 = (mu + 1) * (mu - 1) * (mu - 2) / 2
    c_1 = -(mu + 1) * mu * (mu - 2) / 2
    c_2 = (mu + 1) * mu * (mu - 1) / 6
    return (c_m1 * xm1 + c_0 * x0 + c_1 * x1 + c_2 * x2).astype(np.complex64)


def _sinc_interp(x: np.ndarray, t: np.ndarray, n_taps: int) -> np.ndarray:
    """``x`` evaluated at fractional times ``t`` with a raised-cosine-windowed sinc of ``n_taps`` taps."""
    half = n_taps // 2
    out = np.empty(t.size, np.complex64)
    k = np.arange(-half, half + 1)
    for a in range(0, t.size, BLOCK):  # blockwise: the [n, taps] index matrix stays cache-sized
        tb = t[a : a + BLOCK]
        idx = np.floor(tb).astype(np.int64)[:, None] + k[None, :]
        d = tb[:, None] - idx
        h = np.sinc(d) * (0.5 + 0.5 * np.cos(np.pi * np.clip(d / (half + 1), -1, 1)))
        valid = (idx >= 0) & (idx < x.size)
        vals = np.where(valid, x[np.clip(idx, 0, x.size - 1)], 0)
        out[a : a + BLOCK] = np.sum(vals * h, axis=1)
    return out


def sample_clock_offset(x: np.ndarray, ppm: float, n_taps: int = 17) -> np.ndarray:
    """:func:`resample_sco` with a windowed sinc of ``n_taps`` taps, cut/zero-padded to the input's length.

    Two radios with independent crystals have both a CFO and this offset; on AD936x radios they come from
    the same crystal, so ``ppm = cfo_hz / center_freq_hz * 1e6``.
    """
    x = _as_iq(x)
    if ppm == 0.0 or x.size < 4:
        return x.copy()
    t = np.arange(x.size, dtype=np.float64) / (1.0 + ppm * 1e-6)
    return _sinc_interp(x, t, n_taps)


def place_bursts(bursts: list[np.ndarray], n_total: int, offsets: list[int]) -> np.ndarray:
    """A zero buffer of ``n_total`` samples with ``bursts[i]`` added at ``offsets[i]`` (overlaps add)."""
    out = np.zeros(n_total, dtype=np.complex64)
    for b, off in zip(bursts, offsets, strict=True):
        b = _as_iq(b)
        if off < 0 or off + b.size > n_total:
            raise ValueError(f"burst of {b.size} samples at offset {off} does not fit in {n_total} samples")
        out[off : off + b.size] += b
    return out


def _caxpy():
    from scipy.linalg.blas import caxpy  # scipy is a dependency; imported lazily to keep imports light

    return caxpy


# the multipath / fading / path-loss half of the model lives in .multipath; its names stay importable from here
from .multipath import (  # noqa: E402, F401
    FADING_KINDS,
    MULTIPATH_PROFILES,
    TapDelayLine,
    apply_taps,
    custom_taps,
    draw_taps,
    flat_fading,
    free_space_path_loss_db,
    log_distance_path_loss_db,
    multipath,
    profile_taps,
    random_multipath_taps,
)
