"""Resource grid and pilot pattern as data: which bins carry what, and the known time-domain sequences.

Subcarriers (signed bins ``k`` of the 64-point FFT): used ``k`` in ``[-26, -2]`` and ``[2, 26]`` (50 bins);
guard bins around DC (``k = -1, 0, 1``: Plutos leak their LO there) and at the band edges (``|k| >= 27``: room
for the CFO and the radios' anti-aliasing filters). Pilots at ``k = -21, -7, 7, 21`` (BPSK, a per-symbol PN
polarity from :data:`~sdr_tosc.modem.sequences.PILOT_PN`); the other 46 used bins carry data (header cells,
then payload symbols, in increasing frequency within each OFDM symbol).

Every OFDM symbol (sync, LTF, header, payload) has average power 1 per sample before the back-off scaling.
"""

from __future__ import annotations

import numpy as np

from . import sequences as seq
from .config import ModemConfig

SYNC_PERIOD = 8  # samples; the sync tones are multiples of fft_size / 8
SYNC_FLIP = 4  # periods at the end of the sync field sent negated (timing marker)


class ResourceGrid:
    """Bins, pilots, known sequences and the cell layout of one numerology (built from a :class:`ModemConfig`)."""

    def __init__(self, config: ModemConfig) -> None:
        n = config.fft_size
        self.n_fft = n
        self.cp = config.cp_len
        self.sym_len = n + config.cp_len
        self.ltf_cp = 2 * config.cp_len
        k_max = n // 2 - 1 - config.edge_guard
        k_min = config.dc_guard + 1
        signed = np.concatenate([np.arange(-k_max, -k_min + 1), np.arange(k_min, k_max + 1)])
        half = config.pilot_spacing // 2
        pil = np.arange(half, k_max + 1, config.pilot_spacing)
        pil = pil[pil >= k_min]
        pil_signed = np.concatenate([-pil[::-1], pil])
        if pil_signed.size < 2:
            raise ValueError("ModemConfig.pilot_spacing: leaves fewer than 2 pilots; use a smaller spacing")
        self.used_signed = signed
        self.pilot_signed = pil_signed
        self.data_signed = np.setdiff1d(signed, pil_signed)
        self.used = signed % n
        self.pilots = pil_signed % n
        self.data = self.data_signed % n
        self.n_used = signed.size
        self.n_data = self.data.size
        self.scale = n / np.sqrt(self.n_used)  # unit-power bins -> unit-power samples
        self.k_signed = np.fft.fftfreq(n, 1.0 / n)

        # sync: tones on multiples of 8 bins that the guards leave in the used band
        bins = np.array(seq.SYNC_BINS)
        phases = seq.qpsk_phases(seq.SYNC_PHASES)
        keep = np.isin(bins, signed)
        if keep.sum() < 4:
            raise ValueError("ModemConfig: the guards leave fewer than 4 sync tones; reduce dc_guard/edge_guard")
        g = np.zeros(n, complex)
        g[bins[keep] % n] = phases[keep]
        period = np.fft.ifft(g)[:SYNC_PERIOD] * n / np.sqrt(keep.sum())
        self.sync_bins = bins[keep] % n
        self.sync_period = period.astype(np.complex64)  # one 8-sample period, unit power
        # band matrix of the per-period matched filter: [x_j | x_{j+1}] @ sync_filter = c(8 j + rho), rho = 0..7
        filt = np.zeros((2 * SYNC_PERIOD, SYNC_PERIOD), np.complex64)
        for rho in range(SYNC_PERIOD):
            filt[rho : rho + SYNC_PERIOD, rho] = np.conj(self.sync_period)
        self.sync_filter = filt
        self.sync_len = SYNC_PERIOD * config.sync_periods
        # the last SYNC_FLIP periods are negated: a timing marker (the timing search cannot mistake the
        # repeated LTF for itself 64 samples away, nor the periodic part for itself 8k samples away)
        self.sync_td = np.tile(period, config.sync_periods)
        self.sync_td[-SYNC_FLIP * SYNC_PERIOD :] *= -1
        self.sync_plus_len = SYNC_PERIOD * (config.sync_periods - SYNC_FLIP)  # the unflipped part

        # LTF: BPSK on every used bin (length checked against the constant)
        ltf_signs = seq.signs(seq.LTF_SIGNS)
        if ltf_signs.size != self.n_used:
            raise ValueError(
                f"ModemConfig: the LTF constant covers {ltf_signs.size} used bins, this numerology has "
                f"{self.n_used}; keep dc_guard=1 and edge_guard=5"
            )
        self.ltf_freq = np.zeros(n, complex)
        self.ltf_freq[self.used] = ltf_signs
        self.ltf_td = np.fft.ifft(self.ltf_freq) * self.scale
        self.ltf_len = self.ltf_cp + 2 * n
        self.preamble_len = self.sync_len + self.ltf_len
        self.preamble_td = np.concatenate([self.sync_td, self.ltf_td[-self.ltf_cp:], self.ltf_td, self.ltf_td])

        self.pilot_pn = seq.signs(seq.PILOT_PN)
        self.pilot_base = np.where(np.arange(self.pilots.size) % 4 == 3, -1.0, 1.0)
        pad = seq.qpsk_phases(seq.PAD_PHASES, np.pi / 4)
        if pad.size < self.n_data:
            raise ValueError(f"ModemConfig: {self.n_data} data bins but the filler constant has {pad.size}")
        self.pad = pad[: self.n_data].astype(np.complex64)

        # channel smoother: taps at delays -4 .. cp + 6
        taps = np.arange(-4, self.cp + 7)
        self.fit_A = np.exp(-2j * np.pi * np.outer(signed, taps) / n)
        self.fit_AH = self.fit_A.conj().T.copy()
        self.fit_gram = self.fit_AH @ self.fit_A
        self.fit_eig = np.linalg.eigh(self.fit_gram)  # (eigenvalues, eigenvectors) for the uniform-prior fit

    def pilot_values(self, m: np.ndarray) -> np.ndarray:
        """Pilot symbols of OFDM symbols ``m`` (header = 0, 1, ...): float[len(m), n_pilots]."""
        return self.pilot_pn[np.asarray(m) % self.pilot_pn.size][:, None] * self.pilot_base[None, :]

    def n_ofdm(self, n_symbols: int) -> int:
        """OFDM symbols needed for ``n_symbols`` payload symbols."""
        return -(-int(n_symbols) // self.n_data)
