"""Modem parameters (a frozen dataclass; load with ``sdr_tosc.config.load_config(ModemConfig, path)``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .header import MAX_LENGTH


@dataclass(frozen=True)
class ModemConfig:
    """Modem parameters.

    Attributes:
        sample_rate_hz: sample rate of the IQ stream; only used to express CFO in Hz.
        fft_size: OFDM FFT size (64; the sync, header and sequence constants are defined for 64 bins).
        cp_len: cyclic prefix of header/payload symbols (samples); the LTF's CP is twice as long.
            Multipath delay spread must stay below ``cp_len - 4``.
        dc_guard: bins nulled on each side of DC (besides DC itself).
        edge_guard: bins nulled at each band edge (besides the Nyquist bin).
        pilot_spacing: spacing of pilot bins (pilots at +-spacing/2, +-3 spacing/2, ...).
        sync_periods: 8-sample periods in the sync field (>= 40; 48 by default: 384 samples, detection
            down to about -9 dB with any CFO up to ``max_cfo_fraction``).
        robust_header_symbols: OFDM symbols of the long (low-SNR) header form (4..32).
        max_cfo_fraction: largest carrier offset searched, as a fraction of the sample rate (up to 0.1; the
            default 0.08 covers two Plutos 30 ppm apart at 2.44 GHz and 1 Msps: 73 kHz). Past 1/16 the
            detector's CFO is ambiguous by fs / 8: both candidates are tried and the one whose timing
            correlation is best is kept. 0.044 (+-4 % with margin) detects ~30 % fewer noise candidates.
        backoff_db: burst RMS below full scale for unit-power payloads (see the frame docstring).
        detect_threshold: coherent sync metric threshold, in units of its mean on noise alone (8..60; 12
            passes about 24 noise candidates per million samples, of which the timing gate keeps about one
            in ten and the header CRC rejects the rest; a frame at -8 dB scores 15-40).
        max_payload_symbols: largest payload accepted by ``modulate`` and from a header (<= 8191).
        smooth_channel: denoise the channel estimate with a short impulse-response fit.
        max_sco_ppm: search range of the sampling-clock-offset tracker (ppm; 0 disables it).
        phase_tracking_window: symbols averaged to follow phase noise beyond the linear (CFO) phase
            model at >= 20 dB per-subcarrier SNR (odd; 1 = every symbol on its own, 0 = linear model
            only); the window grows as sqrt(1/SNR) below 20 dB, where thermal noise dominates.
        return_failed: also return frames whose header CRC failed (``header_ok=False``, no symbols).
    """

    sample_rate_hz: float = 1e6
    fft_size: int = 64
    cp_len: int = 16
    dc_guard: int = 1
    edge_guard: int = 5
    pilot_spacing: int = 14
    sync_periods: int = 48
    robust_header_symbols: int = 16
    max_cfo_fraction: float = 0.08
    backoff_db: float = 10.0
    detect_threshold: float = 14.5
    max_payload_symbols: int = MAX_LENGTH
    smooth_channel: bool = True
    max_sco_ppm: float = 100.0
    phase_tracking_window: int = 3
    return_failed: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"ModemConfig.{name}={getattr(self, name)!r}: {why}")

        def integer(name: str) -> bool:
            v = getattr(self, name)
            return isinstance(v, int) and not isinstance(v, bool)

        if not (isinstance(self.sample_rate_hz, (int, float)) and math.isfinite(self.sample_rate_hz)
                and self.sample_rate_hz > 0):
            bad("sample_rate_hz", "must be a positive number of samples per second")
        n = self.fft_size
        if not (integer("fft_size") and n == 64):
            bad("fft_size", "must be 64 (the sync, header and sequence constants are defined for 64 bins)")
        if not (integer("cp_len") and 8 <= self.cp_len <= n // 2):
            bad("cp_len", f"must be an integer from 8 to fft_size/2 = {n // 2}")
        if not (integer("dc_guard") and 0 <= self.dc_guard < n // 16):
            bad("dc_guard", f"must be an integer from 0 to {n // 16 - 1}")
        if not (integer("edge_guard") and 0 <= self.edge_guard < n // 8):
            bad("edge_guard", f"must be an integer from 0 to {n // 8 - 1}")
        if not (integer("pilot_spacing") and 4 <= self.pilot_spacing <= n // 2):
            bad("pilot_spacing", f"must be an integer from 4 to {n // 2}")
        if not (integer("sync_periods") and 40 <= self.sync_periods <= 256):
            bad("sync_periods", "must be an integer from 40 to 256")
        if not (integer("robust_header_symbols") and 4 <= self.robust_header_symbols <= 32):
            bad("robust_header_symbols", "must be an integer from 4 to 32")
        if not (math.isfinite(self.max_cfo_fraction) and 0.0 < self.max_cfo_fraction <= 0.1):
            bad("max_cfo_fraction", "must be above 0 and at most 0.1 of the sample rate")
        if not (math.isfinite(self.backoff_db) and 0.0 <= self.backoff_db <= 30.0):
            bad("backoff_db", "must be from 0 to 30 dB")
        if not (math.isfinite(self.detect_threshold) and 8.0 <= self.detect_threshold <= 60.0):
            bad("detect_threshold", "must be from 8 to 60 (times the metric's mean on noise)")
        if not (math.isfinite(self.max_sco_ppm) and 0.0 <= self.max_sco_ppm <= 1000.0):
            bad("max_sco_ppm", "must be from 0 (off) to 1000 ppm")
        if not (integer("phase_tracking_window") and 0 <= self.phase_tracking_window <= 101):
            bad("phase_tracking_window", "must be an integer from 0 (off) to 101 symbols")
        if self.phase_tracking_window and self.phase_tracking_window % 2 == 0:
            bad("phase_tracking_window", "must be odd (a window centred on each symbol) or 0")
        if not (integer("max_payload_symbols") and 1 <= self.max_payload_symbols <= MAX_LENGTH):
            bad("max_payload_symbols", f"must be an integer from 1 to {MAX_LENGTH} (13-bit length field)")
