"""Channel estimation with the verified header, equalisation and tracking of the payload (vectorised over frames).

For the CRC-verified bursts of a buffer that share a header form: the channel is re-estimated from the LTF and the
header's known cells (phase aligned) and smoothed; the noise and, below 10 dB, the signal power are re-estimated
(:mod:`~sdr_tosc.modem.estimate`); then the payload's FFTs are corrected for the sampling-clock offset (ML grid
search over pilots and header), the common phase and residual CFO (ML linear fit) plus a short moving average of
what it leaves (phase noise), and equalised by zero forcing, with a per-symbol noise variance for soft decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import estimate as est
from .sync import cis

if TYPE_CHECKING:
    from .frame import Modem, RxFrame

PREAMBLE_SNR_FOR_RESIDUALS_DB = 10.0  # below this the header residuals also estimate the noise
MIN_SCO_SNR_DB = 0.0  # sampling-clock offset tracked from this preamble SNR up
# residual CFO after the preamble's data-aided estimate: within a few hundred Hz at -8 dB; the header's
# phase slope is searched within +-0.4 rad per OFDM symbol (+-800 Hz at 1 Msps)
MAX_RESIDUAL_SLOPE = 0.4


def demodulate_payloads(modem: Modem, x: np.ndarray, syncs: list, nh: int) -> list[RxFrame]:
    """The payloads of CRC-verified candidates (``frame._Sync``) with ``nh`` header symbols -> RxFrames."""
    from .frame import RxFrame  # noqa: PLC0415 - frame imports this module

    if not syncs:
        return []
    g, n, nf = modem.grid, modem.n_fft, len(syncs)
    lengths = np.array([s.header.length for s in syncs])
    n_pay = -(-lengths // modem.n_data)
    m_max = int(n_pay.max())
    m_all = np.arange(nh + m_max)
    valid = m_all[None, :] < (nh + n_pay)[:, None]
    t_fft = np.array([s.c.t_fft for s in syncs], dtype=np.int64)
    cfo = np.array([s.c.cfo for s in syncs])
    dc = np.array([s.c.dc for s in syncs])
    noise = np.array([s.noise_var for s in syncs])
    y_hdr = np.stack([s.y_hdr[:nh] for s in syncs])
    offs = 2 * n + modem.cp + modem.sym_len * m_all[nh:]
    y_pay = est.fft_symbols(x, t_fft, offs, cfo, dc, n)
    hdr = np.stack([modem.codec.symbols(s.header) for s in syncs]).reshape(nf, nh, modem.n_data)
    # channel: LTF + CRC-verified header (phase-aligned) as training, then smoothed
    known = np.zeros((nf, nh, n), complex)
    known[:, :, g.data] = hdr
    known[:, :, g.pilots] = g.pilot_values(np.arange(nh))[None]
    h0 = np.zeros((nf, n), complex)
    h0[:, g.used] = np.stack([s.h_ltf for s in syncs])
    ph = est.linear_phase(np.sum(y_hdr * np.conj(known * h0[:, None, :]), axis=2))
    y_al = y_hdr * np.exp(-1j * ph)[:, :, None]
    h_hdr = np.mean(y_al * np.conj(known), axis=1)[:, g.used]
    n_train = 2 + nh
    h_raw = (2 * h0[:, g.used] + nh * h_hdr) / n_train
    resid = y_al[:, :, g.used] - h_raw[:, None, :] * known[:, :, g.used]
    noise_hdr = np.mean(np.abs(resid) ** 2, axis=(1, 2)) / n * n_train / (n_train - 1)
    snr_pre = np.array([
        est.frame_snr_db(x, s.c.start, s.c.start + modem.preamble_len, s.noise_var, s.c.dc) for s in syncs
    ])
    dof_pre, dof_hdr = 450.0, float(nh * modem.n_used)
    low = snr_pre < PREAMBLE_SNR_FOR_RESIDUALS_DB
    noise = np.where(low, (dof_pre * noise + dof_hdr * noise_hdr) / (dof_pre + dof_hdr), noise)
    noise_dof = np.where(low, dof_pre + dof_hdr, dof_pre)
    s_coh, s_coh_var = est.coherent_signal_power(h_raw, noise, n_train, n)
    h_used = est.smooth_channel(h_raw, noise * n / n_train, g) if modem.config.smooth_channel else h_raw
    h = np.zeros((nf, n), np.complex64)
    h[:, g.used] = h_used
    hp, hd = h[:, g.pilots], h[:, g.data]
    known_p = (g.pilot_values(m_all)[None] * hp[:, None, :]).astype(np.complex64)
    known_p[~valid] = 0
    known_h = (hdr * hd[:, None, :]).astype(np.complex64)
    y_p = np.concatenate([y_hdr[:, :, g.pilots], y_pay[:, :, g.pilots]], axis=1)
    y_d = np.concatenate([y_hdr[:, :, g.data], y_pay[:, :, g.data]], axis=1)
    t_sym = (2 * n + modem.cp + modem.sym_len * m_all) - n / 2
    sco = est.estimate_sco(y_p * np.conj(known_p), y_d[:, :nh] * np.conj(known_h), t_sym, nh, g,
                           modem.config.max_sco_ppm * 1e-6)
    sco = np.where(snr_pre >= MIN_SCO_SNR_DB, sco, 0.0)  # below, the search fits the noise
    w = (2 * np.pi / n) * sco[:, None, None] * t_sym[None, :, None]
    sco_d = w * g.data_signed[None, None, :]
    y_p = y_p * np.exp(1j * (w * g.pilot_signed[None, None, :]).astype(np.float32))
    y_dh = y_d[:, :nh] * np.exp(1j * sco_d[:, :nh].astype(np.float32))
    corr = np.sum(y_p * np.conj(known_p), axis=2)
    corr[:, :nh] += np.sum(y_dh * np.conj(known_h), axis=2)
    linear = est.linear_phase(corr)
    phase = linear[:, nh:]
    win = modem.config.phase_tracking_window
    if win > 0:
        snr_bin = np.mean(np.abs(hd) ** 2, axis=1) / (noise * n)
        half = np.floor(win * np.sqrt(np.maximum(100.0 / np.maximum(snr_bin, 1e-3), 1.0)) / 2).astype(int)
        resid_c = corr * np.exp(-1j * linear)
        cs = np.concatenate([np.zeros((nf, 1), complex), np.cumsum(resid_c, axis=1)], axis=1)
        mm = m_all[None, nh:]
        hi = np.minimum(mm + half[:, None] + 1, resid_c.shape[1])
        lo = np.maximum(mm - half[:, None], 0)
        rows = np.arange(nf)[:, None]
        phase = phase + np.angle(cs[rows, hi] - cs[rows, lo])
    rot = cis(sco_d[:, nh:] - phase[:, :, None])
    rot *= (1.0 / hd)[:, None, :]
    eq = (y_d[:, nh:] * rot).reshape(nf, -1)
    nv_bins = (noise[:, None] * n * (1.0 + 1.0 / n_train)) / np.maximum(np.abs(hd) ** 2, 1e-30)
    nv_all = np.broadcast_to(nv_bins.astype(np.float32)[:, None, :], (nf, m_max, modem.n_data)).reshape(nf, -1)
    slope = linear[:, 1] - linear[:, 0] if linear.shape[1] > 1 else np.zeros(nf)
    frames = []
    for i, s in enumerate(syncs):
        length = int(lengths[i])
        end = s.c.start + modem.burst_length(length, s.header.robust)
        hfull = np.zeros(n, dtype=np.complex64)
        hfull[g.used] = h_used[i] / g.scale
        frames.append(RxFrame(
            header=s.header,
            header_ok=True,
            symbols=eq[i, :length].astype(np.complex64),
            snr_db=est.frame_snr_db(x, s.c.start, end, float(noise[i]), s.c.dc, float(noise_dof[i]),
                                    (float(s_coh[i]), float(s_coh_var[i])) if low[i] else None),
            cfo_hz=float((s.c.cfo + slope[i] / (2 * np.pi * modem.sym_len)) * modem.config.sample_rate_hz),
            start=int(s.c.start),
            end=int(end),
            noise_var=nv_all[i, :length].copy(),
            channel=hfull,
            ltf_corr=s.c.metric,
            sco_ppm=float(sco[i] * 1e6),
        ))
    return frames

