"""Small numpy channel impairments used by the modem's tests and benchmark (reusable elsewhere).

All functions take and return 1-D complex64 IQ arrays and never modify their input.

The SNR convention is the project's single definition (DESIGN.md): SNR in dB is the average received
signal power over the frame's samples (after the channel, before noise) divided by the complex noise
variance per sample, at the sample rate. :func:`awgn` applies exactly that: by default the signal power is
measured over the non-zero samples of ``iq`` (so zero gaps between bursts do not count), and white
circular Gaussian noise of variance ``power / 10**(snr_db/10)`` is added to *every* sample.

Typical impaired-link recipe (order matters: channel, then oscillator, then noise)::

    buf = place_bursts([burst], n_total=20_000, offsets=[1234])
    buf = fractional_delay(buf, 0.37)                 # sub-sample timing offset
    buf = multipath(buf, random_multipath_taps(rng, delay_spread=8))
    buf = sample_clock_offset(buf, ppm=20.0)           # independent sample clocks
    buf = apply_cfo(buf, cfo_hz=25e3, sample_rate_hz=1e6)
    buf = awgn(buf, snr_db=10.0, rng=rng)
"""

from __future__ import annotations

import numpy as np


def _as_iq(iq: np.ndarray) -> np.ndarray:
    x = np.asarray(iq)
    if x.ndim != 1:
        raise ValueError(f"iq must be a 1-D array, got shape {x.shape}")
    return x.astype(np.complex64, copy=False)


def signal_power(iq: np.ndarray) -> float:
    """Mean |x|^2 over the non-zero samples of ``iq`` (0.0 if all are zero).

    "Non-zero" means above 1e-12 of the peak power (-120 dB), so floating-point dust left by filters
    does not count as signal.
    """
    x = _as_iq(iq)
    p = np.abs(x) ** 2
    if p.size == 0:
        return 0.0
    nz = p > 1e-12 * p.max()
    return float(p[nz].mean()) if nz.any() else 0.0


def awgn(
    iq: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    signal_power_w: float | None = None,
) -> np.ndarray:
    """Add complex white Gaussian noise at ``snr_db`` by the project's SNR definition.

    Args:
        iq: complex[n] noiseless received signal (after the channel).
        snr_db: SNR in dB = signal power / complex noise variance per sample.
        rng: numpy random generator.
        signal_power_w: signal power to reference; default: :func:`signal_power` of ``iq`` (mean |x|^2
            over its non-zero samples).

    Returns:
        complex64[n] ``iq + noise`` with ``E|noise|^2 = signal_power_w / 10**(snr_db / 10)``.
    """
    x = _as_iq(iq)
    p = signal_power(x) if signal_power_w is None else float(signal_power_w)
    if not p > 0:
        raise ValueError("awgn: the signal is all zeros; pass signal_power_w to set the noise level")
    return (x + noise(x.size, p / 10.0 ** (snr_db / 10.0), rng)).astype(np.complex64)


def noise(n: int, noise_var: float, rng: np.random.Generator) -> np.ndarray:
    """complex64[n] circular Gaussian noise with ``E|w|^2 = noise_var``."""
    s = np.sqrt(noise_var / 2.0)
    return (
        rng.standard_normal(n, dtype=np.float32) * s + 1j * rng.standard_normal(n, dtype=np.float32) * s
    ).astype(np.complex64)


def apply_cfo(iq: np.ndarray, cfo_hz: float, sample_rate_hz: float, phase_rad: float = 0.0) -> np.ndarray:
    """Multiply by ``exp(j (2 pi cfo_hz n / sample_rate_hz + phase_rad))`` (carrier frequency offset)."""
    x = _as_iq(iq)
    n = np.arange(x.size, dtype=np.float64)
    return (x * np.exp(1j * (2.0 * np.pi * cfo_hz / sample_rate_hz * n + phase_rad))).astype(np.complex64)


def fractional_delay(iq: np.ndarray, delay_samples: float, n_taps: int = 33) -> np.ndarray:
    """Delay by ``delay_samples`` (integer + fraction) with a Hann-windowed sinc FIR of ``n_taps`` taps.

    Output has the input's length (the tail that falls off the end is dropped, zeros shift in), so put
    bursts inside zero gaps first. The FIR has finite support, so zero gaps stay exactly zero beyond
    ``n_taps // 2`` samples of a burst and :func:`signal_power` stays meaningful.
    """
    x = _as_iq(iq)
    if delay_samples < 0:
        raise ValueError(f"delay_samples must be >= 0, got {delay_samples}")
    whole = int(np.floor(delay_samples))
    frac = delay_samples - whole
    half = n_taps // 2
    k = np.arange(-half, half + 1)
    h = np.sinc(k - frac) * np.hanning(k.size + 2)[1:-1]
    h /= h.sum()
    y = np.convolve(x, h.astype(np.complex64))[half : half + x.size]
    out = np.zeros_like(x)
    if whole < x.size:
        out[whole:] = y[: x.size - whole]
    return out


def sample_clock_offset(iq: np.ndarray, ppm: float, n_taps: int = 17) -> np.ndarray:
    """Resample as a receiver whose sample clock runs ``ppm`` parts per million fast.

    Output sample n is the input at time ``n / (1 + ppm * 1e-6)`` (input samples), interpolated with a
    Hann-windowed sinc of ``n_taps`` taps; the output has the input's length (zeros past the end). Two
    radios with independent crystals have both a CFO and this sampling-clock offset; on AD936x radios
    they come from the same crystal, so ``ppm = cfo_hz / center_freq_hz * 1e6``.
    """
    x = _as_iq(iq)
    t = np.arange(x.size) / (1.0 + ppm * 1e-6)
    half = n_taps // 2
    base = np.floor(t).astype(np.int64)
    k = np.arange(-half, half + 1)
    idx = base[:, None] + k[None, :]
    d = t[:, None] - idx
    h = np.sinc(d) * (0.5 + 0.5 * np.cos(np.pi * np.clip(d / (half + 1), -1, 1)))
    valid = (idx >= 0) & (idx < x.size)
    vals = np.where(valid, x[np.clip(idx, 0, x.size - 1)], 0)
    return np.sum(vals * h, axis=1).astype(np.complex64)


def phase_noise(
    iq: np.ndarray, linewidth_hz: float, sample_rate_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """Oscillator phase noise as a Wiener process (Lorentzian line of ``linewidth_hz``, 3 dB full width).

    Phase increments per sample are N(0, 2 pi linewidth / sample_rate); returns ``iq * exp(j phi)``.
    """
    x = _as_iq(iq)
    step = np.sqrt(2 * np.pi * linewidth_hz / sample_rate_hz)
    phi = np.cumsum(rng.standard_normal(x.size) * step)
    return (x * np.exp(1j * phi)).astype(np.complex64)


def random_multipath_taps(
    rng: np.random.Generator, delay_spread: int = 8, n_taps: int | None = None, decay_db: float = 10.0
) -> np.ndarray:
    """Random Rayleigh taps at integer delays 0..delay_spread with an exponential power-delay profile.

    Power falls by ``decay_db`` from the first to the last tap; ``n_taps`` (default: delay_spread + 1)
    taps are spread over the delays (first and last always present). Normalised to sum |h|^2 = 1.
    Returns complex64[delay_spread + 1].
    """
    if delay_spread < 0:
        raise ValueError(f"delay_spread must be >= 0, got {delay_spread}")
    n = delay_spread + 1 if n_taps is None else max(1, min(n_taps, delay_spread + 1))
    delays = np.unique(
        np.concatenate([[0, delay_spread], rng.choice(delay_spread + 1, size=n, replace=False)])
    )
    h = np.zeros(delay_spread + 1, dtype=np.complex128)
    pdp = 10.0 ** (-decay_db / 10.0 * delays / max(delay_spread, 1))
    h[delays] = np.sqrt(pdp / 2) * (rng.standard_normal(delays.size) + 1j * rng.standard_normal(delays.size))
    return (h / np.sqrt(np.sum(np.abs(h) ** 2))).astype(np.complex64)


def multipath(iq: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Convolve with channel ``taps`` (complex[L]); output keeps the input length (tail dropped)."""
    x = _as_iq(iq)
    return np.convolve(x, np.asarray(taps, dtype=np.complex64))[: x.size].astype(np.complex64)


def place_bursts(bursts: list[np.ndarray], n_total: int, offsets: list[int]) -> np.ndarray:
    """A zero buffer of ``n_total`` samples with ``bursts[i]`` starting at ``offsets[i]`` (no overlap check)."""
    out = np.zeros(n_total, dtype=np.complex64)
    for b, off in zip(bursts, offsets, strict=True):
        b = _as_iq(b)
        if off < 0 or off + b.size > n_total:
            raise ValueError(f"burst of {b.size} samples at offset {off} does not fit in {n_total} samples")
        out[off : off + b.size] += b
    return out
