"""Record and play back IQ as SigMF (``.sigmf-meta`` JSON + ``.sigmf-data`` complex64 little-endian).

Writes are atomic (data first, then metadata, each to a temporary name renamed into place), so a
``.sigmf-meta`` that exists always describes a complete data file. Loading checks the datatype, the size
and the SHA-512 checksum and names the file and the problem when something is wrong.

::

    save_recording("capture", iq, sample_rate_hz=1e6, center_freq_hz=915e6, description="pluto rx")
    rec = load_recording("capture.sigmf-meta")   # rec.iq: complex64[n], rec.sample_rate_hz, ...
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path, atomic_write_text
from .base import check_iq

DATATYPE = "cf32_le"
#: SigMF extension namespace of the per-frame fields (``sdr_tosc:seq``, ``sdr_tosc:snr_db`` ...)
NAMESPACE = "sdr_tosc"
NAMESPACE_VERSION = "1.0.0"


@dataclass
class Recording:
    """A loaded recording: ``iq: complex64[n]`` plus what the metadata says about it.

    ``captures``: one dict per SigMF capture segment with ``start`` (index in ``iq``), ``global_index``
    (index in the receiver's stream when recorded), ``datetime`` and ``frequency``; a recording of the
    samples around frames has one segment per run of frames.
    """

    iq: np.ndarray
    sample_rate_hz: float
    center_freq_hz: float | None
    description: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    captures: list[dict[str, Any]] = field(default_factory=list)


def _base(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    for ext in (".sigmf-meta", ".sigmf-data", ".sigmf"):
        if p.name.endswith(ext):
            return p.with_name(p.name[: -len(ext)])
    return p


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def save_recording(
    path: str | os.PathLike[str],
    iq: np.ndarray,
    *,
    sample_rate_hz: float,
    center_freq_hz: float | None = None,
    description: str = "",
    hw: str | None = None,
    author: str | None = None,
    annotations: list[dict[str, Any]] | tuple = (),
    start_time: _dt.datetime | None = None,
    captures: list[dict[str, Any]] | None = None,
    global_fields: dict[str, Any] | None = None,
) -> Path:
    """Save ``iq: complex64[n]`` as ``<path>.sigmf-data`` + ``<path>.sigmf-meta``; returns the meta path.

    ``annotations``: dicts with ``start`` and ``length`` (samples) and optional ``label``, ``comment``,
    ``freq_lower_hz``/``freq_upper_hz`` and ``fields`` (a dict of values stored in the ``sdr_tosc:``
    namespace, e.g. ``{"seq": 3, "snr_db": 12.1}`` -> ``sdr_tosc:seq``, ``sdr_tosc:snr_db``).
    ``captures``: segments ``{"start", "global_index", "datetime"}`` (default: one at 0, ``start_time``).
    ``global_fields``: more ``sdr_tosc:`` values for the global object (radio gains, serial ...).
    The file is checked with the ``sigmf`` library's schema validation before it is written.
    """
    from sigmf import SigMFFile

    iq = check_iq(iq, "iq", check_full_scale=False)
    if not (isinstance(sample_rate_hz, (int, float)) and sample_rate_hz > 0):
        raise ValueError(f"sample_rate_hz must be > 0, got {sample_rate_hz!r}")
    base = _base(path)
    data_path = base.with_name(base.name + ".sigmf-data")
    meta_path = base.with_name(base.name + ".sigmf-meta")
    glob: dict[str, Any] = {
        "core:datatype": DATATYPE,
        "core:sample_rate": float(sample_rate_hz),
        "core:description": description,
        "core:recorder": "sdr-tosc",
    }
    if hw:
        glob["core:hw"] = hw
    if author:
        glob["core:author"] = author
    namespaced = bool(global_fields) or any(a.get("fields") for a in annotations)
    if namespaced:
        glob["core:extensions"] = [{"name": NAMESPACE, "version": NAMESPACE_VERSION, "optional": True}]
    for k, v in (global_fields or {}).items():
        glob[f"{NAMESPACE}:{k}"] = v
    meta = SigMFFile(data_file=None, global_info=glob)
    t0 = start_time or _dt.datetime.now(_dt.UTC)
    caps = captures if captures else [{"start": 0, "global_index": 0, "datetime": t0}]
    prev = -1
    for c in caps:
        start = int(c["start"])
        if not prev < start <= max(iq.size - 1, 0):
            raise ValueError(f"capture {c!r}: starts must increase and lie inside the {iq.size} samples")
        prev = start
        cap: dict[str, Any] = {"core:datetime": _iso(c.get("datetime") or t0)}
        if "global_index" in c:
            cap["core:global_index"] = int(c["global_index"])
        freq = c.get("frequency", center_freq_hz)
        if freq is not None:
            cap["core:frequency"] = float(freq)
        meta.add_capture(start, metadata=cap)
    for a in annotations:
        start, length = int(a["start"]), int(a["length"])
        if start < 0 or length < 0 or start + length > iq.size:
            raise ValueError(f"annotation {a!r} lies outside the {iq.size} recorded samples")
        md: dict[str, Any] = {}
        if "label" in a:
            md["core:label"] = str(a["label"])
        if "comment" in a:
            md["core:comment"] = str(a["comment"])
        if "freq_lower_hz" in a:
            md["core:freq_lower_edge"] = float(a["freq_lower_hz"])
        if "freq_upper_hz" in a:
            md["core:freq_upper_edge"] = float(a["freq_upper_hz"])
        for k, v in (a.get("fields") or {}).items():
            md[f"{NAMESPACE}:{k}"] = v
        meta.add_annotation(start, length, metadata=md)
    with atomic_path(data_path) as tmp:
        iq.astype("<c8", copy=False).tofile(tmp)
    meta.set_data_file(str(data_path))  # computes the SHA-512 and checks the size
    meta.validate()
    atomic_write_text(meta_path, meta.dumps(pretty=True) + "\n")
    return meta_path


def load_recording(path: str | os.PathLike[str]) -> Recording:
    """Load a SigMF recording written by :func:`save_recording` (or any ``cf32_le`` SigMF file)."""
    from sigmf import sigmffile
    from sigmf.error import SigMFError

    base = _base(path)
    meta_path = base.with_name(base.name + ".sigmf-meta")
    data_path = base.with_name(base.name + ".sigmf-data")
    if not meta_path.is_file():
        raise FileNotFoundError(f"SigMF metadata not found: {meta_path}")
    if not data_path.is_file():
        raise FileNotFoundError(f"SigMF data file missing for {meta_path}: expected {data_path}")
    try:
        raw = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt SigMF metadata {meta_path}: not valid JSON ({exc})") from None
    dtype = raw.get("global", {}).get("core:datatype") if isinstance(raw, dict) else None
    if dtype != DATATYPE:
        raise ValueError(f"{meta_path}: datatype {dtype!r} is not supported; sdr-tosc records {DATATYPE} "
                         "(complex64 little-endian)")
    size = data_path.stat().st_size
    if size % 8:
        raise ValueError(f"truncated SigMF data {data_path}: {size} bytes is not a whole number of "
                         "complex64 samples (8 bytes each)")
    try:
        meta = sigmffile.fromfile(str(meta_path))  # validates the schema and the SHA-512 of the data
    except SigMFError as exc:
        raise ValueError(f"corrupt SigMF recording {meta_path}: {exc} (truncated or modified data file?)") from None
    iq = np.fromfile(data_path, dtype="<c8").astype(np.complex64, copy=False)
    glob = meta.get_global_info()
    caps = meta.get_captures()
    fc = caps[0].get("core:frequency") if caps else None
    anns = []
    prefix = f"{NAMESPACE}:"
    for a in meta.get_annotations():
        anns.append({"start": a.get("core:sample_start"), "length": a.get("core:sample_count"),
                     "label": a.get("core:label"), "comment": a.get("core:comment"),
                     "freq_lower_hz": a.get("core:freq_lower_edge"), "freq_upper_hz": a.get("core:freq_upper_edge"),
                     "fields": {k[len(prefix):]: v for k, v in a.items() if k.startswith(prefix)}})
    segs = [{"start": int(c.get("core:sample_start", 0)), "global_index": c.get("core:global_index"),
             "datetime": c.get("core:datetime"), "frequency": c.get("core:frequency")} for c in caps]
    return Recording(iq=iq, sample_rate_hz=float(glob["core:sample_rate"]), center_freq_hz=fc,
                     description=glob.get("core:description", ""), annotations=anns, metadata=raw, path=meta_path,
                     captures=segs)


def hw_description(radio) -> tuple[str, dict[str, Any]]:  # noqa: ANN001
    """``core:hw`` text (kind, profile, serial, gains) and the same as ``sdr_tosc:`` global fields."""
    s = radio.settings()
    fields = {k: s[k] for k in ("kind", "profile", "serial", "center_freq_hz", "sample_rate_hz", "tx_gain_db",
                                "rx_gain_db") if s.get(k) is not None}
    text = (f"{s.get('kind')} radio ({s.get('profile')} profile)"
            + (f", serial {s['serial']}" if s.get("serial") else "")
            + f", rx_gain_db={s.get('rx_gain_db')}, tx_gain_db={s.get('tx_gain_db')}")
    return text, fields


def record(radio, n: int, path: str | os.PathLike[str], description: str = "") -> Path:
    """Receive ``n`` samples from ``radio`` and save them with its settings as SigMF; returns the meta path."""
    t0 = _dt.datetime.now(_dt.UTC)
    iq = radio.rx(n)
    hw, fields = hw_description(radio)
    return save_recording(path, iq, sample_rate_hz=radio.sample_rate_hz, center_freq_hz=radio.center_freq_hz,
                          description=description, hw=hw, global_fields=fields, start_time=t0)


class FrameRecorder:
    """Keep the samples around frames of a receiver's stream (pre/post-roll), not the first N of the run.

    ``push(chunk)`` every block the receiver reads (consecutive samples); ``mark(start, length, ...)`` each
    frame found (absolute stream indices, e.g. ``RxFrame.start``); :meth:`save` writes one SigMF capture
    segment per run of overlapping frame windows, with its ``core:global_index`` in the stream and its
    ``core:datetime``, and one annotation per frame (frequency edges, fields in the ``sdr_tosc``
    namespace). Samples leave a history of ``history_samples``; those inside a marked window are kept, so
    a frame marked up to that many samples after it arrived is still recorded whole.
    """

    def __init__(self, sample_rate_hz: float, *, pre_roll: int = 2000, post_roll: int = 2000,
                 history_samples: int = 1 << 18, max_samples: int = 20_000_000) -> None:
        for name, v in (("pre_roll", pre_roll), ("post_roll", post_roll)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0 samples, got {v!r}")
        if not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples must be an int >= 1, got {max_samples!r}")
        self.sample_rate_hz = float(sample_rate_hz)
        self.pre_roll, self.post_roll = pre_roll, post_roll
        self.history_samples = max(int(history_samples), pre_roll + 1)
        self.max_samples = max_samples
        self._hist: list[tuple[int, np.ndarray]] = []  # (absolute start, samples), oldest first
        self._hist_n = 0
        self._pos = 0  # absolute index of the next sample pushed
        self._spans: list[list[int]] = []  # merged [a, b) windows to keep, in order
        self._segments: list[list[Any]] = []  # [global_index, [arrays], length]
        self.kept = 0
        self.truncated = False
        self.frames: list[dict[str, Any]] = []
        self.start_time: _dt.datetime | None = None

    def push(self, chunk: np.ndarray) -> None:
        if self.start_time is None:
            self.start_time = _dt.datetime.now(_dt.UTC) - _dt.timedelta(
                seconds=chunk.size / self.sample_rate_hz)
        self._hist.append((self._pos, chunk))
        self._hist_n += chunk.size
        self._pos += chunk.size
        while self._hist and self._hist_n - self._hist[0][1].size >= self.history_samples:
            a, x = self._hist.pop(0)
            self._hist_n -= x.size
            self._evict(a, x)

    def mark(self, start: int, length: int, **frame: Any) -> None:
        """Keep ``[start - pre_roll, start + length + post_roll)``; ``frame``: its annotation (label, fields ...)."""
        a, b = max(0, int(start) - self.pre_roll), int(start) + int(length) + self.post_roll
        if self._spans and a <= self._spans[-1][1]:
            self._spans[-1][1] = max(self._spans[-1][1], b)
        else:
            self._spans.append([a, b])
        self.frames.append({"global_start": int(start), "length": int(length), **frame})

    def _evict(self, a: int, x: np.ndarray) -> None:
        end = a + x.size
        while self._spans and self._spans[0][1] <= a:
            self._spans.pop(0)
        for s0, s1 in self._spans:
            if s0 >= end:
                break
            lo, hi = max(a, s0), min(end, s1)
            if hi <= lo:
                continue
            if self.kept + (hi - lo) > self.max_samples:
                self.truncated = True
                return
            part = x[lo - a:hi - a]
            seg = self._segments[-1] if self._segments else None
            if seg is not None and seg[0] + seg[2] == lo:
                seg[1].append(part)
                seg[2] += part.size
            else:
                self._segments.append([lo, [part], part.size])
            self.kept += part.size

    def finish(self) -> None:
        """Decide about the samples still in the history (call once the stream has ended)."""
        while self._hist:
            a, x = self._hist.pop(0)
            self._hist_n -= x.size
            self._evict(a, x)

    def save(self, path: str | os.PathLike[str], *, center_freq_hz: float | None, description: str = "",
             hw: str | None = None, global_fields: dict[str, Any] | None = None,
             band_hz: tuple[float, float] | None = None) -> Path | None:
        """Write what was kept as SigMF (None when no frame was marked). ``band_hz``: the frames' occupied
        band as offsets from the centre frequency, written as ``core:freq_lower_edge``/``upper_edge``."""
        self.finish()
        if not self._segments:
            return None
        captures, offsets, pos = [], [], 0
        for g0, _parts, n in self._segments:
            t = (self.start_time or _dt.datetime.now(_dt.UTC)) + _dt.timedelta(
                seconds=g0 / self.sample_rate_hz)
            captures.append({"start": pos, "global_index": g0, "datetime": t})
            offsets.append((g0, g0 + n, pos))
            pos += n
        iq = np.concatenate([p for _, parts, _ in self._segments for p in parts])
        anns = []
        for f in self.frames:
            g = f["global_start"]
            where = next((o for o in offsets if o[0] <= g and g + f["length"] <= o[1]), None)
            if where is None:
                continue  # beyond max_samples
            ann = {"start": where[2] + g - where[0], "length": f["length"]}
            ann.update({k: v for k, v in f.items() if k in ("label", "comment", "fields")})
            if band_hz is not None and center_freq_hz is not None:
                ann["freq_lower_hz"] = center_freq_hz + band_hz[0]
                ann["freq_upper_hz"] = center_freq_hz + band_hz[1]
            anns.append(ann)
        return save_recording(path, iq, sample_rate_hz=self.sample_rate_hz, center_freq_hz=center_freq_hz,
                              description=description, hw=hw, annotations=anns, captures=captures,
                              global_fields={**(global_fields or {}), "pre_roll_samples": self.pre_roll,
                                             "post_roll_samples": self.post_roll},
                              start_time=self.start_time)


def occupied_band_hz(iq: np.ndarray, sample_rate_hz: float, fraction: float = 0.99) -> tuple[float, float]:
    """Lower and upper edge (Hz from the centre) of the band holding ``fraction`` of a burst's power."""
    from scipy.signal import welch

    f, pxx = welch(iq, fs=sample_rate_hz, nperseg=min(256, iq.size), return_onesided=False)
    order = np.argsort(f)
    f, pxx = f[order], pxx[order]
    c = np.cumsum(pxx) / np.sum(pxx)
    lo = float(f[np.searchsorted(c, (1 - fraction) / 2)])
    hi = float(f[min(np.searchsorted(c, 1 - (1 - fraction) / 2), f.size - 1)])
    df = sample_rate_hz / min(256, iq.size)
    return lo - df / 2, hi + df / 2
