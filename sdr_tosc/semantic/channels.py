"""Differentiable channels (torch) for training and simulating the semantic link.

Shapes and units follow the project's contracts (docs/design.md):

* ``x``: complex symbols ``[B, k]`` (``torch.complex64``) with unit average power per symbol.
* ``snr_db``: ``[B]`` (or a scalar, broadcast) in dB = average received signal power (after the channel,
  before noise) over the complex noise variance per symbol. With unit-power symbols and ``E|h|^2 = 1`` the
  complex noise variance is ``no = 10 ** (-snr_db / 10)`` (``no / 2`` per real dimension).

Every channel returns ``(y_eq, snr_eff_db)``: the *equalised, unbiased* symbol estimates the receiver hands
to the student's decoder, and the post-equalisation SNR per sample that the receiver's estimator would report
(for AWGN it equals ``snr_db``; for fading it is the instantaneous ``|h|^2 * snr``). This is exactly what the
modem gives the decoder on a real link (``RxFrame.symbols`` equalised, ``RxFrame.snr_db``).

* ``awgn``: ``y = x + n``, ``n ~ CN(0, no)``.
* ``rayleigh``: block fading, one coefficient ``h ~ CN(0, 1)`` per sample (one block = one image's symbols),
  ``y = h x + n``; the receiver knows ``h`` (perfect CSI, as a pilot-based estimator would give at the SNRs of
  interest) and zero-forces: ``y_eq = y / h = x + n / h``, effective SNR ``|h|^2 * snr``. The student's decoder
  then applies the scalar MMSE shrink ``rho / (1 + rho)`` itself (see :mod:`.student`), so ZF followed by that
  shrink is the per-block MMSE equaliser without ever dividing by a tiny ``h`` inside the network.
* ``rician``: like Rayleigh with a line-of-sight part, ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1)``
  (``E|h|^2 = 1``), default ``K = 1``.
* ``none``: no noise (``y = x``, SNR reported as +inf clipped to the decoder's range).
"""

from __future__ import annotations

import math

import torch

CHANNELS = ("awgn", "rayleigh", "rician", "none")
#: SNR reported for a noiseless channel (the decoder clamps SNRs to its conditioning range anyway).
NOISELESS_SNR_DB = 100.0


def _as_batch(snr_db: torch.Tensor | float, b: int, device: torch.device) -> torch.Tensor:
    s = torch.as_tensor(snr_db, dtype=torch.float32, device=device)
    if s.ndim == 0:
        s = s.expand(b)
    if s.shape != (b,):
        raise ValueError(f"snr_db must be a scalar or have shape [{b}], got {tuple(s.shape)}")
    return s


def complex_noise(shape: tuple[int, ...], var: torch.Tensor, generator: torch.Generator | None = None,
                  device: torch.device | None = None) -> torch.Tensor:
    """``CN(0, var)`` samples of ``shape`` (``var`` broadcast against ``shape``), complex64."""
    re = torch.randn(shape, generator=generator, device=device)
    im = torch.randn(shape, generator=generator, device=device)
    return torch.complex(re, im) * torch.sqrt(var / 2.0)


def noise_variance(snr_db: torch.Tensor) -> torch.Tensor:
    """Complex noise variance per symbol for unit-power symbols: ``10 ** (-snr_db / 10)``."""
    return torch.pow(10.0, -snr_db / 10.0)


def apply_channel(
    x: torch.Tensor,
    snr_db: torch.Tensor | float,
    channel: str = "awgn",
    generator: torch.Generator | None = None,
    rician_k: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Send complex ``x [B, k]`` through ``channel`` at ``snr_db``; return ``(y_eq [B, k], snr_eff_db [B])``.

    Differentiable in ``x`` (the noise and fading are sampled, not learned). ``generator`` makes it
    reproducible.
    """
    if not torch.is_complex(x) or x.ndim != 2:
        raise ValueError(f"x must be complex [B, k], got {x.dtype} {tuple(x.shape)}")
    b, k = x.shape
    s = _as_batch(snr_db, b, x.device)
    if channel == "none":
        return x, torch.full((b,), NOISELESS_SNR_DB, device=x.device)
    no = noise_variance(s)[:, None]
    n = complex_noise((b, k), no, generator, x.device)
    if channel == "awgn":
        return x + n, s
    if channel in ("rayleigh", "rician"):
        h = complex_noise((b, 1), torch.ones(1, device=x.device), generator, x.device)
        if channel == "rician":
            kf = float(rician_k)
            h = math.sqrt(kf / (kf + 1.0)) + math.sqrt(1.0 / (kf + 1.0)) * h
        gain = (h.real ** 2 + h.imag ** 2).clamp_min(1e-12)  # |h|^2
        # zero-forcing with perfect CSI: y/h = x + n/h, noise variance no/|h|^2
        y_eq = x + n / h
        snr_eff = s + 10.0 * torch.log10(gain[:, 0])
        return y_eq, snr_eff
    raise ValueError(f"unknown channel {channel!r}: use one of {', '.join(CHANNELS)}")


def mixed_channel(
    x: torch.Tensor,
    snr_db: torch.Tensor,
    rayleigh_prob: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: Rayleigh block fading with probability ``rayleigh_prob``, else AWGN (training mix)."""
    y_a, s_a = apply_channel(x, snr_db, "awgn", generator)
    if rayleigh_prob <= 0:
        return y_a, s_a
    y_r, s_r = apply_channel(x, snr_db, "rayleigh", generator)
    pick = torch.rand(x.shape[0], generator=generator, device=x.device) < rayleigh_prob
    return torch.where(pick[:, None], y_r, y_a), torch.where(pick, s_r, s_a)
