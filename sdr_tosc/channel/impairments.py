"""Channel impairments as pure, vectorised numpy functions (no sockets, no torch, no radio libraries).

All signals are ``complex64`` 1-D arrays at one sample rate; units are in argument names. Every random
function takes a ``numpy.random.Generator`` so results are reproducible from a seed.

SNR (DESIGN.md, one definition everywhere): average received signal power over the burst's samples
(after the channel, before noise) divided by the complex noise variance per sample, ``E|w|^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Named tapped-delay-line profiles: tuples of (delay_ns, power_db). 3GPP TS 36.101 annex B.2 (EPA, EVA,
#: ETU); ``two_ray`` is a line-of-sight path plus one reflection 3 dB down; ``flat`` is a single tap.
MULTIPATH_PROFILES: dict[str, tuple[tuple[float, float], ...]] = {
    "flat": ((0.0, 0.0),),
    "two_ray": ((0.0, 0.0), (1000.0, -3.0)),
    "epa": ((0, 0.0), (30, -1.0), (70, -2.0), (90, -3.0), (110, -8.0), (190, -17.2), (410, -20.8)),
    "eva": (
        (0, 0.0), (30, -1.5), (150, -1.4), (310, -3.6), (370, -0.6), (710, -9.1), (1090, -7.0),
        (1730, -12.0), (2510, -16.9),
    ),
    "etu": (
        (0, -1.0), (50, -1.0), (120, -1.0), (200, 0.0), (230, 0.0), (500, 0.0), (1600, -3.0),
        (2300, -5.0), (5000, -7.0),
    ),
}

FADING_KINDS = ("none", "rayleigh", "rician")


def signal_power(x: np.ndarray) -> float:
    """Mean power ``mean(|x|^2)`` of ``x: complex[n]`` (0.0 for an empty array)."""
    if x.size == 0:
        return 0.0
    f = x.view(np.float32) if x.dtype == np.complex64 else np.ascontiguousarray(x).view(np.float64)
    return float(np.dot(f, f)) / x.size


def noise_variance_for_snr(signal_power_lin: float, snr_db: float) -> float:
    """Complex noise variance ``E|w|^2`` that gives ``snr_db`` for a signal of mean power ``signal_power_lin``."""
    return float(signal_power_lin) / (10.0 ** (float(snr_db) / 10.0))


def complex_noise(n: int, noise_var: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Circular complex Gaussian noise ``complex64[n]`` with ``E|w|^2 = noise_var`` (scalar or float32[n])."""
    w = rng.standard_normal(2 * n, dtype=np.float32).view(np.complex64)
    std = np.sqrt(np.asarray(noise_var, dtype=np.float32) / np.float32(2.0))
    w *= std
    return w


def awgn(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Add white Gaussian noise at ``snr_db`` (per the one SNR definition); returns ``(y, noise_var)``."""
    nv = noise_variance_for_snr(signal_power(x), snr_db)
    return (x + complex_noise(x.size, nv, rng)).astype(np.complex64, copy=False), nv


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


def apply_cfo(x: np.ndarray, cfo_hz: float, sample_rate_hz: float, start_sample: int = 0) -> np.ndarray:
    """Frequency offset on ``x: complex64[n]`` whose first sample is ``start_sample`` on the timeline."""
    k = np.arange(x.size, dtype=np.float64) + float(start_sample)
    return (x * np.exp(2j * np.pi * cfo_hz / sample_rate_hz * k)).astype(np.complex64)


def wiener_phase(n: int, linewidth_hz: float, sample_rate_hz: float, rng: np.random.Generator,
                 phase0_rad: float = 0.0) -> np.ndarray:
    """Phase-noise trajectory ``float64[n]`` (radians) of an oscillator with 3 dB ``linewidth_hz``.

    Wiener process: increments ~ N(0, 2 pi linewidth / fs).
    """
    if n == 0:
        return np.zeros(0)
    step = np.sqrt(2.0 * np.pi * linewidth_hz / sample_rate_hz)
    return phase0_rad + np.cumsum(rng.standard_normal(n) * step)


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


def resample_sco(x: np.ndarray, ppm: float) -> np.ndarray:
    """Sample-clock offset: the receiver's clock runs ``ppm`` parts per million fast (cubic Lagrange).

    Output sample m is the input evaluated at ``t = m / (1 + ppm 1e-6)``, so a positive ppm yields more
    samples (length ``~ n (1 + ppm 1e-6)``).
    """
    if ppm == 0.0 or x.size < 4:
        return x
    ratio = 1.0 + ppm * 1e-6
    m = int(np.floor((x.size - 1) * ratio)) + 1
    t = np.arange(m, dtype=np.float64) / ratio
    i = np.floor(t).astype(np.int64)
    mu = t - i
    xp = np.concatenate([np.zeros(1, x.dtype), x, np.zeros(2, x.dtype)])  # xp[i+1] == x[i]
    xm1, x0, x1, x2 = xp[i], xp[i + 1], xp[i + 2], xp[i + 3]
    c_m1 = -mu * (mu - 1) * (mu - 2) / 6
    c_0 = (mu + 1) * (mu - 1) * (mu - 2) / 2
    c_1 = -(mu + 1) * mu * (mu - 2) / 2
    c_2 = (mu + 1) * mu * (mu - 1) / 6
    return (c_m1 * xm1 + c_0 * x0 + c_1 * x1 + c_2 * x2).astype(np.complex64)


@dataclass(frozen=True)
class TapDelayLine:
    """A sample-spaced channel: ``delays: int64[k]`` (samples, ascending) and ``gains: complex128[k]``."""

    delays: np.ndarray
    gains: np.ndarray

    @property
    def length(self) -> int:
        """Impulse-response length in samples (max delay + 1)."""
        return int(self.delays[-1]) + 1 if self.delays.size else 1

    @property
    def energy(self) -> float:
        return float(np.sum(np.abs(self.gains) ** 2))

    def impulse_response(self) -> np.ndarray:
        h = np.zeros(self.length, np.complex128)
        np.add.at(h, self.delays, self.gains)
        return h


def profile_taps(profile: str, sample_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample-spaced (delays int64[k], mean powers float64[k]) of a named profile, normalised to sum 1.

    Paths are rounded to the nearest sample and paths landing on the same sample are merged (power added):
    at low sample rates EPA becomes flat, as it physically is for a narrowband signal.
    """
    if profile not in MULTIPATH_PROFILES:
        raise ValueError(
            f"unknown multipath profile {profile!r}; choose one of {', '.join(MULTIPATH_PROFILES)} "
            "or give custom taps"
        )
    paths = MULTIPATH_PROFILES[profile]
    delays = np.rint(np.array([p[0] for p in paths]) * 1e-9 * sample_rate_hz).astype(np.int64)
    powers = 10.0 ** (np.array([p[1] for p in paths]) / 10.0)
    uniq, inv = np.unique(delays, return_inverse=True)
    merged = np.zeros(uniq.size)
    np.add.at(merged, inv, powers)
    return uniq, merged / merged.sum()


def draw_taps(
    delays: np.ndarray,
    powers: np.ndarray,
    fading: str,
    rng: np.random.Generator,
    rician_k_db: float = 6.0,
) -> TapDelayLine:
    """One block-fading realisation of a tapped delay line with mean tap powers ``powers`` (sum 1).

    ``none``: static real gains ``sqrt(p)``. ``rayleigh``: each tap ~ CN(0, p). ``rician``: the first tap
    has a line-of-sight part with K-factor ``rician_k_db`` (random LOS phase), the others are Rayleigh.
    The mean total power is 1 in every case.
    """
    if fading not in FADING_KINDS:
        raise ValueError(f"unknown fading {fading!r}; choose one of {', '.join(FADING_KINDS)}")
    powers = np.asarray(powers, dtype=np.float64)
    if fading == "none":
        return TapDelayLine(np.asarray(delays), np.sqrt(powers).astype(np.complex128))
    scatter = (rng.standard_normal(powers.size) + 1j * rng.standard_normal(powers.size)) * np.sqrt(powers / 2)
    if fading == "rician":
        k = 10.0 ** (rician_k_db / 10.0)
        los = np.sqrt(powers[0] * k / (k + 1)) * np.exp(2j * np.pi * rng.random())
        scatter[0] = los + scatter[0] * np.sqrt(1.0 / (k + 1))
    return TapDelayLine(np.asarray(delays), scatter)


def custom_taps(taps: np.ndarray | list[complex], normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Sample-spaced custom taps ``h[k]`` -> (delays, complex gains), optionally normalised to energy 1."""
    h = np.asarray(taps, dtype=np.complex128).ravel()
    if h.size == 0 or not np.all(np.isfinite(h)):
        raise ValueError(f"custom taps must be a non-empty list of finite complex numbers, got {taps!r}")
    energy = float(np.sum(np.abs(h) ** 2))
    if energy == 0:
        raise ValueError("custom taps are all zero: the channel would block every signal")
    if normalize:
        h = h / np.sqrt(energy)
    nz = np.flatnonzero(h)
    return nz.astype(np.int64), h[nz]


#: Block length (samples) for cache-friendly streaming arithmetic: 8192 complex64 = 64 KiB, fits in L2.
BLOCK = 8192


def apply_taps(x: np.ndarray, tdl: TapDelayLine) -> np.ndarray:
    """Convolve ``x: complex64[n]`` with a sparse tapped delay line; output ``complex64[n + L - 1]``.

    One BLAS ``caxpy`` (``y[d:] += g x``, a single fused pass) per tap and cache-sized block: ~4x faster
    than a numpy multiply + add per tap.
    """
    x = np.ascontiguousarray(x, dtype=np.complex64)
    if tdl.delays.size == 1 and tdl.delays[0] == 0:
        return x * np.complex64(tdl.gains[0])
    delays = tdl.delays.tolist()
    gains = tdl.gains.tolist()
    n = x.size
    y = np.zeros(n + tdl.length - 1, np.complex64)
    caxpy = _caxpy()
    for a in range(0, n, BLOCK):
        b = min(a + BLOCK, n)
        xs = x[a:b]
        for d, g in zip(delays, gains, strict=True):
            caxpy(xs, y[a + d : b + d], a=g)  # in place: both operands are contiguous complex64
    return y


def _caxpy():
    from scipy.linalg.blas import caxpy  # scipy is a dependency; imported lazily to keep imports light

    return caxpy


def log_distance_path_loss_db(distance_m: float, exponent: float = 2.0, reference_m: float = 1.0) -> float:
    """Path loss in dB relative to ``reference_m``: ``10 n log10(d / d0)`` (n = 2 is free space)."""
    if distance_m <= 0 or reference_m <= 0:
        raise ValueError(f"distance_m must be > 0, got {distance_m}")
    return 10.0 * exponent * np.log10(distance_m / reference_m)


def free_space_path_loss_db(distance_m: float, center_freq_hz: float) -> float:
    """Friis free-space path loss in dB between isotropic antennas: ``20 log10(4 pi d f / c)``."""
    return float(20.0 * np.log10(4.0 * np.pi * distance_m * center_freq_hz / 299_792_458.0))
