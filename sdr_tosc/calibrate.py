"""Calibration of a TX -> RX radio pair: SNR vs TX gain, carrier offset, received power.

Procedure (:func:`calibrate`; devices are passed in, so the same code drives two Plutos, two USRPs, or two
zmq radios around the channel simulator):

0. Pre-flight (:func:`preflight`, also run by ``measure`` before an over-the-air campaign): the RX
   radio's own TX powered down (no LO leakage into its receiver), the noise floor with the TX off, and a
   coarse carrier offset from a tone (an FFT peak; the modem's preamble only acquires offsets of a few
   tens of kHz, less than two Plutos 29 ppm apart at 2.44 GHz). A TX radio with ``xo_correction_hz`` (a
   Pluto) is trimmed so the offset is cancelled; the trim is stored in the file.
1. For each TX gain of the sweep, transmit ``frames_per_point`` modem frames with known random QPSK payloads
   (header ``kind = KIND_CALIBRATION``, sequence numbers unique over the whole sweep, so a late frame of
   one point is never counted at the next), receive and demodulate them, waiting as long as the RX
   radio's kernel queue delays samples (:func:`rx_wait_samples`).
2. Per point record: frames sent / found with a good header CRC, the modem's SNR estimate (mean, std), a
   data-aided SNR from the error vector against the known payload (an independent check of the estimator),
   the carrier offset, the received power and peak level in dBFS, and flags: ``clipped`` (the peak
   reached the ADC's full scale) and ``compressed`` (the data-aided SNR is more than ``COMPRESSION_DB``
   below the preamble-based one: clipping or nonlinearity the blind estimate cannot see).
3. Fit ``snr_db = slope * tx_gain_db + intercept`` by least squares over the points in the linear region
   (frames found, not flagged, SNR neither at the noise floor nor compressing at the top), report the
   residual, and convert the CFO (trim included) to a crystal offset in ppm.

Calibration files (one per TX device, ``calibration/<device-id>.json``), results keyed by centre
frequency, so re-running at another frequency adds to the file (written atomically)::

    {
      "format": "sdr-tosc-calibration", "version": 1,
      "device": {"kind": "pluto", "id": "ip:192.168.2.1", ...},        # the TX radio
      "entries": {
        "915000000": {                                                   # centre frequency in Hz
          "created": "2026-11-29T14:00:00Z", "tool": "sdr-tosc 0.1.0",
          "sample_rate_hz": 1e6, "rx": {...radio settings...}, "rx_gain_db": 40.0,
          "preflight": {"noise_floor_dbfs": -62.1, "rx_tx_powered": false, "coarse_cfo_hz": -26540.0, ...},
          "points": [{"tx_gain_db": -30.0, "frames_sent": 20, "frames_ok": 20, "snr_db_mean": 17.9,
                      "snr_db_std": 0.3, "snr_data_aided_db": 17.8, "cfo_hz_mean": 12.5,
                      "rx_power_dbfs": -31.2, "rx_peak_dbfs": -19.0, "flags": []}, ...],
          "fit": {"slope_db_per_db": 1.0, "intercept_db": 47.9, "tx_gain_range_db": [-60, -10],
                  "rms_residual_db": 0.2, "points_used": 6},
          "flagged_points": [{"tx_gain_db": 0.0, "flags": ["clipped", "compressed"]}],
          "cfo": {"hz": -26527.5, "ppm": -28.99, "residual_hz": 12.5, "tx_xo_correction_hz": 39998840}
        }
      }
    }

:func:`gain_for_snr` inverts the fit (used by ``sdr-tosc measure --target-snr-db``).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .fileio import atomic_write_json, read_json
from .modem import FrameHeader, Modem, StreamReceiver

FORMAT = "sdr-tosc-calibration"
VERSION = 1
KIND_CALIBRATION = 3
#: A point whose data-aided SNR is this far below the modem's (preamble) estimate is compressed.
COMPRESSION_DB = 3.0
#: Peak I or Q level (dBFS) from which a point counts as clipped: the ADC's last code.
CLIP_DBFS = -0.05
XO_NOMINAL_HZ = 40_000_000
XO_RANGE_HZ = (39_992_000, 40_008_000)


@dataclass(frozen=True)
class PointResult:
    tx_gain_db: float
    frames_sent: int
    frames_ok: int
    snr_db_mean: float
    snr_db_std: float
    snr_data_aided_db: float
    cfo_hz_mean: float
    rx_power_dbfs: float
    rx_peak_dbfs: float = math.nan
    flags: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                             for k, v in self.__dict__.items()}
        d["flags"] = list(self.flags)
        return d


def point_flags(snr_db: float, snr_data_aided_db: float, peak_dbfs: float) -> tuple[str, ...]:
    """``clipped`` (ADC full scale reached) and/or ``compressed`` (data-aided SNR well below the blind one)."""
    flags = []
    if math.isfinite(peak_dbfs) and peak_dbfs >= CLIP_DBFS:
        flags.append("clipped")
    if math.isfinite(snr_db) and math.isfinite(snr_data_aided_db) and snr_db - snr_data_aided_db > COMPRESSION_DB:
        flags.append("compressed")
    return tuple(flags)


def peak_dbfs(iq: np.ndarray) -> float:
    """Largest I or Q magnitude in dBFS (0 dBFS = the converter's full scale, where clipping starts)."""
    if iq.size == 0:
        return -math.inf
    p = float(np.max(np.abs(iq.view(np.float32))))
    return 20.0 * math.log10(p) if p > 0 else -math.inf


def rx_wait_samples(radio: Any, margin_s: float = 0.1) -> int:
    """Samples a receiver may still deliver after the TX has finished: its kernel queue (a Pluto's
    ``kernel_buffers x rx_buffer_samples``, 4 x 32768 = 131 ms at 1 Msps) plus ``margin_s`` of TX latency."""
    fs = float(getattr(radio, "sample_rate_hz", 1e6))
    queue = 0
    kb, bs = getattr(radio, "kernel_buffers", None), getattr(radio, "rx_buffer_samples", None)
    if isinstance(kb, int) and isinstance(bs, int):
        queue = kb * bs
    queue = max(queue, int(getattr(radio, "rx_queue_samples", 0) or 0))
    return int(queue + margin_s * fs)


def qpsk_payload(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random unit-power QPSK symbols (complex64)."""
    bits = rng.integers(0, 2, size=(n, 2))
    return (((1 - 2 * bits[:, 0]) + 1j * (1 - 2 * bits[:, 1])) / math.sqrt(2)).astype(np.complex64)


def data_aided_snr_db(sent: np.ndarray, received: np.ndarray) -> float:
    """SNR of equalised symbols against the known ones: ``10 log10(P_sent / mean |rx - sent|^2)``."""
    sent = np.asarray(sent, np.complex128)
    received = np.asarray(received, np.complex128)
    if sent.shape != received.shape or sent.size == 0:
        raise ValueError(f"sent and received symbols must have the same non-zero shape, got {sent.shape} and {received.shape}")
    err = float(np.mean(np.abs(received - sent) ** 2))
    return 10.0 * math.log10(float(np.mean(np.abs(sent) ** 2)) / max(err, 1e-15))


def power_dbfs(iq: np.ndarray) -> float:
    p = float(np.mean(np.abs(iq.astype(np.complex128)) ** 2)) if iq.size else 0.0
    return 10.0 * math.log10(p) if p > 0 else -math.inf


def measure_point(
    tx_radio: Any,
    rx_radio: Any,
    modem: Modem,
    frames: int = 20,
    payload_symbols: int = 92,
    seed: int = 0,
    pack_gap_samples: int = 0,
    rx_chunk_samples: int = 32768,
    max_idle_samples: int | None = None,
    after_send: Callable[[], None] | None = None,
    seq_base: int = 0,
) -> PointResult:
    """Send ``frames`` calibration frames at the TX radio's current gain and measure them at the RX radio.

    ``pack_gap_samples > 0`` sends all frames in one ``tx`` call separated by that many zeros (real radios);
    0 sends one burst per call (the channel simulator spaces them). Frames carry sequence numbers
    ``seq_base, seq_base + 1 ...`` (mod 65536): give each point its own range. ``max_idle_samples``
    (default :func:`rx_wait_samples` of the RX radio, at least 100 000): how long to keep reading after the
    airtime without a new frame.
    """
    if max_idle_samples is None:
        max_idle_samples = max(100_000, rx_wait_samples(rx_radio))
    rng = np.random.default_rng(seed)
    seqs = [(seq_base + i) % 65536 for i in range(frames)]
    payloads = {s: qpsk_payload(rng, payload_symbols) for s in seqs}
    bursts = [modem.modulate(payloads[s], FrameHeader(seq=s, kind=KIND_CALIBRATION)) for s in seqs]
    stream = StreamReceiver(modem, max_frame_samples=modem.burst_length(payload_symbols))
    if pack_gap_samples:
        gap = np.zeros(pack_gap_samples, np.complex64)
        tx_radio.tx(np.concatenate([x for b in bursts for x in (b, gap)]))
    else:
        for b in bursts:
            tx_radio.tx(b)
    if after_send is not None:
        after_send()
    found: dict[int, Any] = {}
    powers: list[float] = []
    peaks: list[float] = []
    airtime = sum(b.size for b in bursts) + frames * pack_gap_samples
    read, idle = 0, 0
    while len(found) < frames and (read < airtime or idle < max_idle_samples):
        chunk = rx_radio.rx(rx_chunk_samples)
        chunk_start = read
        read += chunk.size
        before = len(found)
        for f in stream.push(chunk):
            if f.header_ok and f.header.kind == KIND_CALIBRATION and f.header.seq in payloads and f.header.seq not in found:
                found[f.header.seq] = f
                a, b = f.start - chunk_start, f.end - chunk_start
                if 0 <= a < b <= chunk.size:  # received power over the burst itself, when this chunk holds it
                    powers.append(power_dbfs(chunk[a:b]))
                    peaks.append(peak_dbfs(chunk[a:b]))
        idle = 0 if len(found) > before else idle + chunk.size
    for f in stream.flush():
        if f.header_ok and f.header.kind == KIND_CALIBRATION and f.header.seq in payloads:
            found.setdefault(f.header.seq, f)
    peak = float(max(peaks)) if peaks else math.nan
    if not found:
        return PointResult(float(tx_radio.tx_gain_db), frames, 0, math.nan, math.nan, math.nan, math.nan,
                           float(np.mean(powers)) if powers else math.nan, peak, point_flags(math.nan, math.nan, peak))
    snrs = np.array([f.snr_db for f in found.values()])
    sent = np.concatenate([payloads[s] for s in found])
    recv = np.concatenate([found[s].symbols for s in found])
    snr_da = data_aided_snr_db(sent, recv)
    return PointResult(
        tx_gain_db=float(tx_radio.tx_gain_db),
        frames_sent=frames,
        frames_ok=len(found),
        snr_db_mean=float(snrs.mean()),
        snr_db_std=float(snrs.std()),
        snr_data_aided_db=snr_da,
        cfo_hz_mean=float(np.mean([f.cfo_hz for f in found.values()])),
        rx_power_dbfs=float(np.mean(powers)) if powers else math.nan,
        rx_peak_dbfs=peak,
        flags=point_flags(float(snrs.mean()), snr_da, peak),
    )


def fit_gain_curve(points: Sequence[PointResult], min_found: float = 0.5) -> dict[str, Any]:
    """Least-squares line ``snr = slope * gain + intercept`` over the linear region of the sweep.

    Points are used when at least ``min_found`` of their frames were found and they carry no flag
    (clipped, compressed); from the sorted points, the top ones that no longer rise (compression: less
    than 0.5 dB per dB against the previous point) are dropped. Needs two points; raises ValueError
    otherwise, naming the flagged points.
    """
    flagged = [p for p in points if p.flags]
    usable = sorted((p for p in points if p.frames_sent and p.frames_ok / p.frames_sent >= min_found
                     and math.isfinite(p.snr_db_mean) and not p.flags), key=lambda p: p.tx_gain_db)
    while len(usable) > 2:
        a, b = usable[-2], usable[-1]
        if (b.snr_db_mean - a.snr_db_mean) < 0.5 * (b.tx_gain_db - a.tx_gain_db):
            usable.pop()
        else:
            break
    if len(usable) < 2:
        why = (f"; {len(flagged)} point(s) clipped or compressed (TX gains "
               f"{', '.join(f'{p.tx_gain_db:g}' for p in flagged)}): lower the RX gain or the top of the sweep"
               if flagged else "")
        raise ValueError(
            f"calibration needs at least 2 linear TX gains where frames were received, got {len(usable)}: "
            f"widen the gain sweep, move the antennas closer, or raise the RX gain{why}"
        )
    g = np.array([p.tx_gain_db for p in usable])
    s = np.array([p.snr_db_mean for p in usable])
    slope, intercept = np.polyfit(g, s, 1)
    resid = s - (slope * g + intercept)
    return {
        "slope_db_per_db": float(slope),
        "intercept_db": float(intercept),
        "tx_gain_range_db": [float(g.min()), float(g.max())],
        "rms_residual_db": float(np.sqrt(np.mean(resid ** 2))),
        "points_used": len(usable),
    }


def cfo_ppm(cfo_hz: float, center_freq_hz: float) -> float:
    """Carrier offset as a crystal offset in parts per million of the centre frequency."""
    if center_freq_hz <= 0:
        raise ValueError(f"center_freq_hz must be > 0, got {center_freq_hz}")
    return float(cfo_hz) / float(center_freq_hz) * 1e6


def coarse_cfo_hz(tx_radio: Any, rx_radio: Any, tone_hz: float | None = None, seconds: float = 0.06) -> dict[str, Any]:
    """Carrier offset from a tone: send ``seconds`` of a tone at ``tone_hz`` (default fs/8), find its FFT
    peak at the RX (parabolic interpolation) and return ``{"cfo_hz", "tone_snr_db"}``. Works over the
    whole band (+-fs/2 around the tone), where the modem's preamble only acquires a few tens of kHz."""
    fs = float(rx_radio.sample_rate_hz)
    f0 = fs / 8 if tone_hz is None else float(tone_hz)
    n = int(seconds * fs)
    tone = (0.5 * np.exp(2j * np.pi * f0 / fs * np.arange(n))).astype(np.complex64)
    tx_radio.tx(tone)
    total = rx_wait_samples(rx_radio) + n + int(0.05 * fs)
    got = np.concatenate([rx_radio.rx(min(32768, total - k)) for k in range(0, total, 32768)])
    blk = 4096
    nb = got.size // blk
    pw = np.mean(np.abs(got[: nb * blk].reshape(nb, blk)) ** 2, axis=1)
    best = int(np.argmax(pw))
    lo = hi = best
    while lo > 0 and pw[lo - 1] > 0.25 * pw[best]:
        lo -= 1
    while hi < nb - 1 and pw[hi + 1] > 0.25 * pw[best]:
        hi += 1
    seg = got[lo * blk: (hi + 1) * blk][: 1 << 16]
    seg = seg - seg.mean()  # DC offset and LO leakage are not the tone
    spec = np.abs(np.fft.fft(seg * np.hanning(seg.size))) ** 2
    k = int(np.argmax(spec))
    y0, y1, y2 = (math.log(max(spec[(k + d) % seg.size], 1e-30)) for d in (-1, 0, 1))
    delta = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) if (y0 - 2 * y1 + y2) != 0 else 0.0
    f = (k + delta) * fs / seg.size
    if f >= fs / 2:
        f -= fs
    snr = 10 * math.log10(spec[k] / max(float(np.median(spec)), 1e-30))
    return {"cfo_hz": float(f - f0), "tone_snr_db": float(snr), "tone_hz": f0}


def preflight(tx_radio: Any, rx_radio: Any, *, noise_samples: int = 32768, tone: bool = True,
              trim: bool = True, tx_gain_db: float | None = None) -> dict[str, Any]:
    """Checks before an over-the-air run; returns what it found and did (stored in the calibration).

    * ``rx_tx_powered``: the RX radio's own TX is powered down (a receive-only Pluto radiates its LO
      leakage otherwise); powered down here if it was on and the RX radio is not the TX radio.
    * ``noise_floor_dbfs`` / ``noise_peak_dbfs``: RX level with the TX radio's transmitter off.
    * ``coarse_cfo_hz`` (``tone=True``): offset from a tone (:func:`coarse_cfo_hz`), sent at ``tx_gain_db``;
      with ``trim`` and a TX radio that has ``xo_correction_hz`` (a Pluto) the reference is trimmed so the
      offset is cancelled (``tx_xo_correction_hz``, ``trim_hz``: the LO shift it made).
    """
    out: dict[str, Any] = {}
    if rx_radio is not tx_radio and getattr(rx_radio, "tx_powered", False):
        rx_radio.power_down_tx()
    out["rx_tx_powered"] = getattr(rx_radio, "tx_powered", None) if rx_radio is not tx_radio else None
    if rx_radio is not tx_radio and getattr(tx_radio, "tx_powered", False):
        tx_radio.power_down_tx()  # noise floor with the transmitter off
    rx_radio.rx(rx_wait_samples(rx_radio, margin_s=0.02))  # what the kernel queued before
    noise = rx_radio.rx(noise_samples)
    out["noise_floor_dbfs"] = power_dbfs(noise)
    out["noise_peak_dbfs"] = peak_dbfs(noise)
    if tone:
        old_gain = float(tx_radio.tx_gain_db)
        if tx_gain_db is not None:
            tx_radio.tx_gain_db = float(tx_gain_db)
        try:
            c = coarse_cfo_hz(tx_radio, rx_radio)
        finally:
            if tx_gain_db is not None:
                tx_radio.tx_gain_db = old_gain
        out.update(coarse_cfo_hz=c["cfo_hz"], tone_snr_db=c["tone_snr_db"], trim_hz=0.0)
        xo = getattr(tx_radio, "xo_correction_hz", None) if trim else None
        if xo is not None and c["tone_snr_db"] > 20:
            fc = float(tx_radio.center_freq_hz)
            new = int(round(xo * (1.0 + c["cfo_hz"] / fc)))
            new = min(max(new, XO_RANGE_HZ[0]), XO_RANGE_HZ[1])
            tx_radio.xo_correction_hz = new
            out.update(tx_xo_correction_hz=new, xo_before_hz=int(xo), trim_hz=fc * (1.0 - xo / new))
    return out


def calibrate(
    tx_radio: Any,
    rx_radio: Any,
    tx_gains_db: Sequence[float],
    modem: Modem | None = None,
    frames_per_point: int = 20,
    seed: int = 0,
    pack_gap_samples: int = 0,
    progress: Callable[[PointResult], None] | None = None,
    after_send: Callable[[], None] | None = None,
    preflight_checks: bool | dict[str, Any] = False,
    seq_start: int = 0,
) -> dict[str, Any]:
    """Run the sweep and return one calibration entry (see the module docstring for its schema).

    ``preflight_checks``: True runs :func:`preflight` first (real radios); a dict is a pre-flight result
    already obtained. Sequence numbers run from ``seq_start`` over the whole sweep.
    """
    if len(tx_gains_db) < 2:
        raise ValueError(f"a calibration sweep needs at least 2 TX gains, got {list(tx_gains_db)}")
    modem = modem or Modem()
    pre: dict[str, Any] | None = None
    if preflight_checks is True:
        pre = preflight(tx_radio, rx_radio, tx_gain_db=float(np.median(tx_gains_db)))
    elif isinstance(preflight_checks, dict):
        pre = preflight_checks
    points = []
    for i, g in enumerate(tx_gains_db):
        tx_radio.tx_gain_db = float(g)
        p = measure_point(tx_radio, rx_radio, modem, frames_per_point, seed=seed + i,
                          pack_gap_samples=pack_gap_samples, after_send=after_send,
                          seq_base=seq_start + i * frames_per_point)
        points.append(p)
        if progress is not None:
            progress(p)
    fc = float(tx_radio.center_freq_hz)
    ok = [p for p in points if p.frames_ok]
    residual = float(np.mean([p.cfo_hz_mean for p in ok])) if ok else math.nan
    trim = float(pre.get("trim_hz", 0.0)) if pre else 0.0
    cfo = residual + trim
    entry: dict[str, Any] = {
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"sdr-tosc {__version__}",
        "sample_rate_hz": float(tx_radio.sample_rate_hz),
        "tx": tx_radio.settings(),
        "rx": rx_radio.settings(),
        "rx_gain_db": float(rx_radio.rx_gain_db),
        "points": [p.as_dict() for p in points],
        "flagged_points": [{"tx_gain_db": p.tx_gain_db, "flags": list(p.flags)} for p in points if p.flags],
        "cfo": {"hz": cfo, "ppm": cfo_ppm(cfo, fc) if math.isfinite(cfo) else None, "residual_hz": residual},
    }
    if pre is not None:
        entry["preflight"] = pre
        if "tx_xo_correction_hz" in pre:
            entry["cfo"]["tx_xo_correction_hz"] = pre["tx_xo_correction_hz"]
    try:
        entry["fit"] = fit_gain_curve(points)
    except ValueError as exc:
        entry["fit"] = None
        entry["fit_error"] = str(exc)
    return entry


def device_id(radio: Any) -> str:
    """A file-name-safe identifier of a radio: its serial, URI or endpoint, else its kind."""
    for attr in ("serial", "uri", "tx_endpoint", "rx_endpoint"):
        v = getattr(radio, attr, None)
        if v:
            return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{radio.kind}-{v}").strip("_")
    return str(getattr(radio, "kind", "radio"))


def save_entry(path: str | Path, device: dict[str, Any], center_freq_hz: float, entry: dict[str, Any]) -> Path:
    """Add (or replace) the entry for ``center_freq_hz`` in the calibration file ``path``, atomically."""
    path = Path(path)
    doc = load_calibration(path) if path.exists() else {"format": FORMAT, "version": VERSION, "device": device, "entries": {}}
    doc["device"] = device
    doc["entries"][str(int(round(center_freq_hz)))] = entry
    atomic_write_json(path, doc)
    return path


def load_calibration(path: str | Path) -> dict[str, Any]:
    doc = read_json(path, "calibration file")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not an sdr-tosc calibration file (format={doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path}: calibration version {doc.get('version')!r} is not supported (expected {VERSION})")
    if not isinstance(doc.get("entries"), dict):
        raise ValueError(f"{path}: calibration file has no 'entries' table")
    for key, entry in doc["entries"].items():
        _check_entry(path, key, entry)
    return doc


def _check_entry(path: str | Path, key: str, entry: Any) -> None:
    """A damaged entry is refused naming the file and the entry (not a KeyError at use)."""
    try:
        f = float(key)
        if not (math.isfinite(f) and f >= 0):
            raise ValueError
    except ValueError:
        raise ValueError(f"{path}: calibration entry key {key!r} is not a centre frequency in Hz") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: calibration entry {key} is not a table")
    fit = entry.get("fit")
    if fit is None:
        return
    try:
        nums = [fit["intercept_db"], fit["slope_db_per_db"], *fit["tx_gain_range_db"]]
        ok = len(fit["tx_gain_range_db"]) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in nums)
    except (KeyError, TypeError):
        ok = False
    if not ok or fit["slope_db_per_db"] == 0:
        raise ValueError(f"{path}: calibration entry {key} has a damaged fit (needs finite intercept_db, a non-zero "
                         "slope_db_per_db and tx_gain_range_db [lo, hi]); re-run calibrate")


def lookup(doc: dict[str, Any], center_freq_hz: float) -> dict[str, Any]:
    """The entry measured closest to ``center_freq_hz``."""
    if not doc["entries"]:
        raise ValueError("calibration file has no entries")
    key = min(doc["entries"], key=lambda k: abs(float(k) - center_freq_hz))
    return doc["entries"][key]


def gain_for_snr(entry: dict[str, Any], target_snr_db: float) -> float:
    """TX gain that gives ``target_snr_db`` according to the entry's fit (clipped to the measured range)."""
    fit = entry.get("fit")
    if not fit:
        raise ValueError(f"this calibration entry has no fit ({entry.get('fit_error', 'unknown reason')}); re-run calibrate")
    g = (float(target_snr_db) - fit["intercept_db"]) / fit["slope_db_per_db"]
    lo, hi = fit["tx_gain_range_db"]
    return float(min(hi, max(lo, g)))
