r"""OFDM burst modem for analog semantic symbols: the frame format and :class:`Modem`, a thin front.

Frame format (``fft_size`` N = 64, ``cp_len`` = 16, 1 Msps: subcarrier spacing 15.625 kHz)
------------------------------------------------------------------------------------------

One burst, dense (no zero samples), in this order::

    | SYNC: 48 x 8 | LTF CP: 32 | LTF: 64 | LTF: 64 | HDR: H x (16 + 64) | PAYLOAD: S x (16 + 64) |
      \_ detection, coarse CFO  \_ timing, fine CFO, channel  \_ H = 3 or 16    \_ S = ceil(n / 46)

    samples per burst = 544 + 80 * (H + ceil(n / 46))     (H = 3 short header, 16 robust header)

* Resource grid, pilots and the fixed sequences: :mod:`sdr_tosc.modem.grid`, :mod:`sdr_tosc.modem.sequences`.
* SYNC: 48 repetitions of an 8-sample period (6 QPSK tones on bins +-8, +-16, +-24), the last 4 negated
  (a timing marker). Detected by a
  per-period matched filter and a coherent FFT across periods that searches every CFO up to +-6.25 % of the
  sample rate at once (the aliases beyond, up to ``max_cfo_fraction`` = 8 %, are told apart by the timing
  correlation); found down to about -8 dB SNR (:mod:`sdr_tosc.modem.sync`).
* LTF: a 32-sample CP and two identical 64-sample BPSK symbols on all 50 used bins: fine timing (with the
  sync tail), channel estimate (denoised by an adaptive LMMSE fit of a short impulse response).
* Header: 64 bits (seq, length, items, kind, robust flag, SNR report, CRC-16), K=7 rate-1/2 code, spread
  over 3 OFDM symbols (short form) or ``robust_header_symbols`` = 16 (long form, for SNR below about 3 dB;
  the transmitter picks it from the SNR the receiver reports). :mod:`sdr_tosc.modem.header`.
* Payload: the caller's complex symbols placed directly on the 46 data bins (symbol i on OFDM symbol
  i // 46); the last OFDM symbol is filled with known QPSK. Up to 128 items (images) may share one burst
  (``FrameHeader.items``): one preamble and header for all, so the overhead per image falls.
* Every OFDM symbol (sync, LTF, header, payload) has average power 1 per sample before scaling.

Air efficiency: payload symbols per air sample. One 40-symbol image per burst with the short header:
40 / 864 = 4.6 %; 128 images of 40 symbols per burst: 5120 / (784 + 112 * 80) = 52.5 %; 128 of 16 symbols:
2048 / (784 + 45 * 80) = 46.7 % (the numerology's ceiling is 46 / 80 = 57.5 %).

Scaling / back-off: the whole burst is multiplied by ``10**(-backoff_db / 20)`` (default 10 dB, i.e. an
RMS of 0.316 full scale for unit-power payload symbols) and samples with |x| > 1 are clipped in
magnitude (phase kept). OFDM samples are nearly complex Gaussian, so P(|x| > 1) = exp(-10) = 4.5e-5 per
sample at 10 dB back-off: a distortion far below -40 dB, while the DAC (Pluto: 12 bits) keeps ~60 dB of
dynamic range.

Receiver (:meth:`Modem.demodulate`), vectorised over all candidates of a buffer: detection ->
synchronisation (timing, CFO, DC; :mod:`~sdr_tosc.modem.sync`) -> noise from the preamble's repetitions ->
LTF channel estimate -> header: linear phase fit on the pilots, soft Viterbi, CRC (short form first, then
the long form) -> channel re-estimated with the CRC-verified header as extra training -> payload:
sampling-clock offset (ML grid search), common phase and residual CFO (ML linear fit over the pilots and
the header) plus a short moving average (phase noise), zero-forcing equalisation, per-symbol noise variance
for soft decoding (:mod:`~sdr_tosc.modem.equalizer`) -> SNR (:mod:`~sdr_tosc.modem.estimate`).
Multipath delay spread (including filter precursors) up to ``cp_len - 4`` samples is ISI-free.
Receiver DC offset (LO leakage): the sync tones have no DC component; DC is estimated per frame as the mean
over the sync field and removed before the noise estimate, the FFTs and the SNR's signal power.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from scipy import fft as sp_fft

from . import estimate as est
from .config import ModemConfig
from .equalizer import MAX_RESIDUAL_SLOPE, demodulate_payloads
from .grid import ResourceGrid
from .header import SHORT_HEADER_SYMBOLS, FrameHeader, HeaderCodec
from .sync import Candidate, detect, synchronise

__all__ = ["FrameHeader", "Modem", "ModemConfig", "RxFrame"]

_STRONG_GATE = 40.0  # candidates this strong (about +3 dB SNR and up) are decoded first


@dataclass
class RxFrame:
    """One frame found by :meth:`Modem.demodulate`.

    Attributes:
        header: decoded header (meaningless when ``header_ok`` is False).
        header_ok: the header CRC passed.
        symbols: complex64[header.length] equalised payload (empty when ``header_ok`` is False); with
            ``header.items > 1`` item ``i`` is ``symbols[i * L:(i + 1) * L]``, ``L = header.item_length``
            (see :meth:`items`).
        snr_db: estimated SNR by the project definition (frame power / noise variance per sample).
        cfo_hz: estimated carrier frequency offset (received minus nominal).
        start: sample index of the burst's first sample (first path) in the buffer.
        end: one past the burst's last sample (``start + burst length``).
        noise_var: float32[header.length] noise variance of each equalised symbol (zero-forcing:
            noise per sample times fft_size / |H_k|^2, channel-estimate error included).
        channel: complex64[fft_size] estimated channel (FFT bin order, 0 on unused bins), normalised so
            that a flat channel at the reference level has |H| = sqrt(signal power per sample).
        sco_ppm: estimated sampling-clock offset (receiver clock fast = positive), removed from ``symbols``.
        ltf_corr: detection quality: the preamble-tail correlation in units of its mean on noise (35 at
            -8 dB, thousands at high SNR).
    """

    header: FrameHeader
    header_ok: bool
    symbols: np.ndarray = field(repr=False)
    snr_db: float
    cfo_hz: float
    start: int
    end: int
    noise_var: np.ndarray = field(repr=False)
    channel: np.ndarray = field(repr=False)
    ltf_corr: float = 0.0
    sco_ppm: float = 0.0

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(symbols, noise_var) reshaped to ``[header.items, header.item_length]``."""
        n = self.header.items
        return self.symbols.reshape(n, -1), self.noise_var.reshape(n, -1)


def _as_complex_1d(iq: object, name: str) -> np.ndarray:
    """Validate an IQ-like input: 1-D complex array (complex64 returned; complex128 converted)."""
    if not isinstance(iq, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of complex64 samples, got {type(iq).__name__}")
    if iq.dtype.kind != "c":
        raise TypeError(
            f"{name} must be complex (complex64), got dtype {iq.dtype}; convert interleaved int16 I/Q with "
            "(a[0::2] + 1j * a[1::2]).astype(np.complex64) / 2**15 (or your radio's full scale)"
        )
    if iq.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {iq.shape}; pass one channel at a time (e.g. iq[0])")
    return iq.astype(np.complex64, copy=False)


@dataclass
class _Sync:
    """A synchronised candidate with its preamble-based estimates."""

    c: Candidate
    noise_var: float
    h_ltf: np.ndarray  # raw (unsmoothed) LTF channel on used bins
    y_hdr: np.ndarray  # [robust_header_symbols, N] FFTs after the LTF
    header: FrameHeader | None = None
    n_hdr: int = SHORT_HEADER_SYMBOLS


class Modem:
    """OFDM burst modem (see the module docstring for the frame format).

    Example::

        modem = Modem(ModemConfig())
        iq = modem.modulate(payload.astype(np.complex64), FrameHeader(seq=7))
        for frame in modem.demodulate(rx_buffer):
            if frame.header_ok:
                use(frame.symbols, frame.snr_db)
    """

    def __init__(self, config: ModemConfig | None = None) -> None:
        self.config = config = ModemConfig() if config is None else config
        if not isinstance(config, ModemConfig):
            raise TypeError(f"config must be a ModemConfig, got {type(config).__name__}")
        self.grid = g = ResourceGrid(config)
        self.n_fft, self.cp, self.sym_len = g.n_fft, g.cp, g.sym_len
        self.n_data, self.n_used = g.n_data, g.n_used
        self.preamble_len = g.preamble_len
        self.n_hdr = SHORT_HEADER_SYMBOLS
        self.n_hdr_robust = config.robust_header_symbols
        self.codec = HeaderCodec(g.n_data, config.robust_header_symbols)
        self.gain = 10.0 ** (-config.backoff_db / 20.0)
        self._preamble = (g.preamble_td * self.gain).astype(np.complex64)
        max_sym = self.n_hdr_robust + g.n_ofdm(config.max_payload_symbols)
        rows = np.arange(max_sym)
        self._data_idx = (rows[:, None] * g.n_fft + g.data[None, :]).ravel()
        self._grid_template = np.zeros((max_sym, g.n_fft), dtype=np.complex64)
        self._grid_template[:, g.pilots] = g.pilot_values(rows)

    # ----------------------------------------------------------------------------- public info
    @property
    def sample_rate_hz(self) -> float:
        return self.config.sample_rate_hz

    @property
    def subcarrier_spacing_hz(self) -> float:
        return self.config.sample_rate_hz / self.n_fft

    def pilot_values(self, m: np.ndarray) -> np.ndarray:
        return self.grid.pilot_values(m)

    def n_payload_ofdm(self, n_symbols: int) -> int:
        """OFDM symbols needed for ``n_symbols`` payload symbols."""
        return self.grid.n_ofdm(n_symbols)

    def header_symbols(self, robust: bool = False) -> int:
        """OFDM symbols of the header form."""
        return self.n_hdr_robust if robust else self.n_hdr

    def burst_length(self, n_symbols: int, robust: bool = False) -> int:
        """Samples in the burst that carries ``n_symbols`` payload symbols (``robust``: long header)."""
        return self.preamble_len + self.sym_len * (self.header_symbols(robust) + self.n_payload_ofdm(n_symbols))

    @property
    def max_burst_length(self) -> int:
        """Longest burst (``max_payload_symbols``, long header): the overlap a streaming receiver keeps."""
        return self.burst_length(self.config.max_payload_symbols, robust=True)

    # -------------------------------------------------------------------------------- transmit
    def modulate(self, payload: np.ndarray, header: FrameHeader) -> np.ndarray:
        """Frame ``payload`` into one burst of IQ samples.

        Args:
            payload: complex64[n] semantic symbols, 1 <= n <= ``max_payload_symbols``, average power ~1
                (complex128 is accepted and converted). With ``header.items = k`` the payload is k items of
                n / k symbols each, concatenated.
            header: the frame header; ``header.length`` must be 0 (filled in) or ``n``; ``header.robust``
                selects the long header.

        Returns:
            complex64[burst_length(n, header.robust)] samples, |x| <= 1: RMS ``10**(-backoff_db/20)``
            (default -10 dBFS) for a unit-power payload, rare peaks above full scale clipped.
        """
        p = _as_complex_1d(payload, "payload")
        n = p.size
        if not 1 <= n <= self.config.max_payload_symbols:
            raise ValueError(
                f"payload has {n} symbols; it must have 1 to {self.config.max_payload_symbols} "
                "(ModemConfig.max_payload_symbols); split longer payloads over several frames"
            )
        if not isinstance(header, FrameHeader):
            raise TypeError(f"header must be a FrameHeader, got {type(header).__name__}")
        if header.length not in (0, n):
            raise ValueError(f"header.length={header.length} does not match the payload's {n} symbols; use 0")
        if n % header.items:
            raise ValueError(f"payload of {n} symbols cannot be split into header.items={header.items} equal items")
        g = self.grid
        nh = self.header_symbols(header.robust)
        n_pay = g.n_ofdm(n)
        m_total = nh + n_pay
        cells = self._grid_template[:m_total].copy()
        flat = cells.reshape(-1)
        flat[self._data_idx[: nh * self.n_data]] = self.codec.symbols(header, n)
        pay_idx = self._data_idx[nh * self.n_data : m_total * self.n_data]
        flat[pay_idx[:n]] = p
        flat[pay_idx[n:]] = g.pad[: pay_idx.size - n]
        td = sp_fft.ifft(cells, axis=1, overwrite_x=True)
        td *= np.float32(g.scale * self.gain)
        # |x| <= sqrt(2) max(|I|, |Q|): only when a component exceeds 1/sqrt(2) can a sample clip (rare at
        # 10 dB back-off), so the magnitudes are computed only then; NaN/inf show up in the max too
        peak = np.abs(td.view(np.float32)).max()
        if not np.isfinite(peak):
            raise ValueError("payload contains NaN or inf symbols; replace them before modulating")
        if peak > np.float32(0.7071):
            mag = np.abs(td)
            over = mag > 1.0
            td[over] /= mag[over]
        out = np.empty(self.preamble_len + m_total * self.sym_len, dtype=np.complex64)
        out[: self.preamble_len] = self._preamble
        body = out[self.preamble_len :].reshape(m_total, self.sym_len)
        body[:, self.cp :] = td
        body[:, : self.cp] = td[:, -self.cp :]
        return out

    # --------------------------------------------------------------------------------- receive
    def demodulate(self, iq: np.ndarray) -> list[RxFrame]:
        """Find and decode every frame in ``iq``.

        Args:
            iq: complex64[k] received samples (complex128 is converted). Frames may start anywhere,
                several per buffer, with gaps between them. A frame is returned only if the whole burst
                lies in the buffer; streaming receivers carry the last ``max_burst_length`` samples over
                (:class:`~sdr_tosc.modem.StreamReceiver`).

        Returns:
            The frames found, in order of ``start``. Frames whose header CRC failed are included with
            ``header_ok=False`` and no symbols unless ``ModemConfig.return_failed`` is False.
        """
        return self._demodulate(_as_complex_1d(iq, "iq"), None)

    def _demodulate(self, x: np.ndarray, known: dict[int, tuple[FrameHeader, int] | None] | None) -> list[RxFrame]:
        """:meth:`demodulate` with a streaming receiver's memory: ``known`` maps buffer positions of bursts
        seen before to their decoded (header, header symbols) (cut by the previous buffer's end: not decoded
        again) or to None (already reported: skipped). Positions match within ``cp_len``. Bursts decoded here
        whose payload the buffer's end cuts are added to ``known``."""
        if x.size == 0:
            return []
        xf = x.view(np.float32)
        # one BLAS pass: a finite sum of squares means every sample is finite (else check them one by one)
        if not np.isfinite(np.dot(xf, xf)) and not np.isfinite(xf).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise ValueError(
                f"iq contains {bad} NaN/inf samples; drop or zero them (e.g. np.nan_to_num(iq)) before demodulating"
            )
        cfg = self.config
        cands = synchronise(x, detect(x, self.grid, cfg.detect_threshold, cfg.max_cfo_fraction), self.grid,
                            cfg.sync_periods, cfg.max_cfo_fraction)
        if not cands:
            return []
        cands.sort(key=lambda c: c.start)
        uniq: list[Candidate] = []
        for c in cands:
            if not uniq or c.start - uniq[-1].start > self.cp:
                uniq.append(c)
        cached: dict[int, tuple[FrameHeader, int]] = {}
        if known:
            keys = np.array(sorted(known))
            keep = []
            for c in uniq:
                i = int(np.argmin(np.abs(keys - c.start)))
                if abs(int(keys[i]) - c.start) > self.cp:
                    keep.append(c)
                elif known[int(keys[i])] is not None:
                    cached[c.start] = known[int(keys[i])]
                    keep.append(c)
            uniq = keep
            if not uniq:
                return []
        # strong candidates first: weaker ones inside a burst they decode are its payload's pilots, not frames
        # (their preamble estimates are not computed either)
        syncs = self._preamble_estimates(x, [c for c in uniq if c.start in cached or c.metric >= _STRONG_GATE])
        for sy in syncs:
            if sy.c.start in cached:
                sy.header, sy.n_hdr = cached[sy.c.start]
        strong = [sy for sy in syncs if sy.c.start not in cached]
        self._decode_headers(strong, x.size)
        spans = sorted((sy.c.start, sy.c.start + self.burst_length(sy.header.length, sy.header.robust))
                       for sy in syncs if sy.header is not None)
        starts = [a for a, _ in spans]

        def inside(t: int) -> bool:
            i = bisect.bisect_left(starts, t - self.cp) - 1  # the last decoded burst starting before t
            return i >= 0 and t < spans[i][1]

        weak = self._preamble_estimates(x, [c for c in uniq if c.start not in cached and c.metric < _STRONG_GATE
                                            and not inside(c.start)])
        self._decode_headers(weak, x.size)
        tried = {id(sy) for sy in strong} | {id(sy) for sy in weak}
        syncs = [sy for sy in sorted(syncs + weak, key=lambda sy: sy.c.start) if sy.header is not None or id(sy) in tried]
        chosen: list[_Sync] = []
        last_end = -(10**18)
        for s in syncs:
            if s.header is None or s.c.start < last_end - self.cp:
                continue
            end = s.c.start + self.burst_length(s.header.length, s.header.robust)
            if end > x.size + 2:
                if known is not None:
                    known[s.c.start] = (s.header, s.n_hdr)
                continue  # truncated by the end of the buffer
            chosen.append(s)
            last_end = end
        frames: list[RxFrame] = []
        for nh in sorted({s.n_hdr for s in chosen}):
            frames += self._payload(x, [s for s in chosen if s.n_hdr == nh], nh)
        frames.sort(key=lambda f: f.start)
        if cfg.return_failed:
            failed, last_failed_end = [], -(10**18)
            spans = [(f.start, f.end) for f in frames]
            for s in syncs:
                if s.header is not None:
                    continue
                end = s.c.start + self.preamble_len + self.n_hdr * self.sym_len
                if any(a - self.cp < end and s.c.start < b - self.cp for a, b in spans):
                    continue
                if s.c.start < last_failed_end - self.cp:
                    continue
                failed.append(self._failed_frame(x, s, end))
                last_failed_end = end
            frames = sorted(frames + failed, key=lambda f: f.start)
        return frames

    # ------------------------------------------------------------------------------- internals
    def _preamble_estimates(self, x: np.ndarray, cands: list[Candidate]) -> list[_Sync]:
        if not cands:
            return []
        g, n = self.grid, self.n_fft
        start = np.array([c.start for c in cands], dtype=np.int64)
        dc = np.array([c.dc for c in cands])
        cfo = np.array([c.cfo for c in cands])
        t_fft = np.array([c.t_fft for c in cands], dtype=np.int64)
        noise, _ = est.preamble_noise(x, start, dc, g)
        offs = np.concatenate([[0, n], 2 * n + self.cp + self.sym_len * np.arange(self.n_hdr_robust)])
        y = est.fft_symbols(x, t_fft, offs, cfo, dc, n)
        h_ltf = (0.5 * (y[:, 0] + y[:, 1]) * g.ltf_freq)[:, g.used]
        return [_Sync(c=c, noise_var=float(noise[i]), h_ltf=h_ltf[i], y_hdr=y[i, 2:]) for i, c in enumerate(cands)]

    def _header_phase(self, y_hdr: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Linear phase per header symbol from the pilots: float[F, M]."""
        g = self.grid
        m = np.arange(y_hdr.shape[1])
        ref = g.pilot_values(m)[None] * h[:, None, g.pilots]
        corr = np.sum(y_hdr[:, :, g.pilots] * np.conj(ref), axis=2)
        return est.linear_phase(corr, MAX_RESIDUAL_SLOPE)

    def _try_headers(self, syncs: list[_Sync], nh: int) -> None:
        """Decode the ``nh``-symbol header form of every candidate; sets ``header`` where the CRC passes.

        A second pass re-estimates the phase and the channel with the first pass's decisions as known
        cells (decision directed: at low SNR the LTF and 4 pilots per symbol leave most of the error) and
        decodes again, for the candidates the first pass did not decode.
        """
        g, n = self.grid, self.n_fft
        noise_bin = np.array([s.noise_var for s in syncs]) * n
        h_raw = np.stack([s.h_ltf for s in syncs])
        y = np.stack([s.y_hdr[:nh] for s in syncs])
        h = np.zeros((len(syncs), n), complex)
        h[:, g.used] = est.smooth_channel(h_raw, noise_bin / 2, g) if self.config.smooth_channel else h_raw
        phase = self._header_phase(y, h)
        pending = np.arange(len(syncs))
        for attempt in range(3):
            hd = h[pending][:, None, g.data]
            eq = y[pending][:, :, g.data] * np.exp(-1j * phase)[:, :, None] / hd
            train = 2 if attempt == 0 else 2 + nh
            nv = noise_bin[pending, None, None] * (1.0 + 1.0 / train) / np.maximum(np.abs(hd) ** 2, 1e-30)
            nv = np.broadcast_to(nv, eq.shape)
            headers, ok = self.codec.decode(eq.reshape(pending.size, -1), nv.reshape(pending.size, -1))
            for i, hh, good in zip(pending, headers, ok, strict=True):
                if good and hh is not None and hh.length <= self.config.max_payload_symbols:
                    syncs[i].header = hh
                    syncs[i].n_hdr = self.header_symbols(hh.robust)
            if attempt == 2 or nh == self.n_hdr:
                break
            keep = ~ok
            if not keep.any():
                break
            # decision-directed: the first pass's bits as known header cells
            bits = self.codec.last_bits[keep]
            pending = pending[keep]
            known = np.zeros((pending.size, nh, n), complex)
            known[:, :, g.data] = self.codec.cells(bits, nh).reshape(pending.size, nh, self.n_data)
            known[:, :, g.pilots] = g.pilot_values(np.arange(nh))[None]
            yp = y[pending]
            ph = est.linear_phase(np.sum(yp * np.conj(known * h[pending][:, None, :]), axis=2), MAX_RESIDUAL_SLOPE)
            h_hdr = np.mean(yp * np.exp(-1j * ph)[:, :, None] * np.conj(known), axis=1)[:, g.used]
            h_new = (2 * h_raw[pending] + nh * h_hdr) / (2 + nh)
            if self.config.smooth_channel:
                h_new = est.smooth_channel(h_new, noise_bin[pending] / (2 + nh), g)
            h[pending] = 0
            h[pending[:, None], g.used[None, :]] = h_new
            phase = est.linear_phase(np.sum(yp * np.conj(known * h[pending][:, None, :]), axis=2),
                                     MAX_RESIDUAL_SLOPE)

    def _decode_headers(self, syncs: list[_Sync], n_samples: int) -> None:
        """Short header form first, then the long one; a form cut by the buffer's end is not tried (a
        streaming receiver sees the whole frame in its next buffer)."""
        short_end = self.preamble_len + self.n_hdr * self.sym_len
        long_end = self.preamble_len + self.n_hdr_robust * self.sym_len
        whole = [s for s in syncs if s.c.start + short_end <= n_samples + 2]
        if whole:
            self._try_headers(whole, self.n_hdr)
        rest = [s for s in whole if s.header is None and s.c.start + long_end <= n_samples + 2]
        if rest:
            self._try_headers(rest, self.n_hdr_robust)

    def _payload(self, x: np.ndarray, syncs: list[_Sync], nh: int) -> list[RxFrame]:
        return demodulate_payloads(self, x, syncs, nh)

    def _failed_frame(self, x: np.ndarray, s: _Sync, end: int) -> RxFrame:
        g = self.grid
        hfull = np.zeros(self.n_fft, dtype=np.complex64)
        hfull[g.used] = s.h_ltf / g.scale
        return RxFrame(
            header=FrameHeader(seq=0),
            header_ok=False,
            symbols=np.zeros(0, np.complex64),
            snr_db=est.frame_snr_db(x, s.c.start, end, s.noise_var, s.c.dc),
            cfo_hz=float(s.c.cfo * self.config.sample_rate_hz),
            start=int(s.c.start),
            end=int(end),
            noise_var=np.zeros(0, np.float32),
            channel=hfull,
            ltf_corr=s.c.metric,
        )


