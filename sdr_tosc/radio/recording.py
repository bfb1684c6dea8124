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


@dataclass
class Recording:
    """A loaded recording: ``iq: complex64[n]`` plus what the metadata says about it."""

    iq: np.ndarray
    sample_rate_hz: float
    center_freq_hz: float | None
    description: str
    annotations: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


def _base(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    for ext in (".sigmf-meta", ".sigmf-data", ".sigmf"):
        if p.name.endswith(ext):
            return p.with_name(p.name[: -len(ext)])
    return p


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
) -> Path:
    """Save ``iq: complex64[n]`` as ``<path>.sigmf-data`` + ``<path>.sigmf-meta``; returns the meta path.

    ``annotations``: dicts with ``start`` and ``length`` (samples) and optional ``label``, ``comment``,
    ``freq_lower_hz``/``freq_upper_hz`` (e.g. one per detected frame, with its SNR in the comment).
    """
    from sigmf import SigMFFile

    iq = check_iq(iq, "iq", check_full_scale=False)
    if not (isinstance(sample_rate_hz, (int, float)) and sample_rate_hz > 0):
        raise ValueError(f"sample_rate_hz must be > 0, got {sample_rate_hz!r}")
    base = _base(path)
    data_path = base.with_name(base.name + ".sigmf-data")
    meta_path = base.with_name(base.name + ".sigmf-meta")
    with atomic_path(data_path) as tmp:
        iq.astype("<c8", copy=False).tofile(tmp)
    glob = {
        "core:datatype": DATATYPE,
        "core:sample_rate": float(sample_rate_hz),
        "core:description": description,
        "core:recorder": "sdr-tosc",
    }
    if hw:
        glob["core:hw"] = hw
    if author:
        glob["core:author"] = author
    meta = SigMFFile(data_file=str(data_path), global_info=glob)
    cap: dict[str, Any] = {"core:datetime": (start_time or _dt.datetime.now(_dt.timezone.utc)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")}
    if center_freq_hz is not None:
        cap["core:frequency"] = float(center_freq_hz)
    meta.add_capture(0, metadata=cap)
    for a in annotations:
        start, length = int(a["start"]), int(a["length"])
        if start < 0 or length < 0 or start + length > iq.size:
            raise ValueError(f"annotation {a!r} lies outside the {iq.size} recorded samples")
        md = {}
        if "label" in a:
            md["core:label"] = str(a["label"])
        if "comment" in a:
            md["core:comment"] = str(a["comment"])
        if "freq_lower_hz" in a:
            md["core:freq_lower_edge"] = float(a["freq_lower_hz"])
        if "freq_upper_hz" in a:
            md["core:freq_upper_edge"] = float(a["freq_upper_hz"])
        meta.add_annotation(start, length, metadata=md)
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
    for a in meta.get_annotations():
        anns.append({"start": a.get("core:sample_start"), "length": a.get("core:sample_count"),
                     "label": a.get("core:label"), "comment": a.get("core:comment")})
    return Recording(iq=iq, sample_rate_hz=float(glob["core:sample_rate"]), center_freq_hz=fc,
                     description=glob.get("core:description", ""), annotations=anns, metadata=raw, path=meta_path)


def record(radio, n: int, path: str | os.PathLike[str], description: str = "") -> Path:
    """Receive ``n`` samples from ``radio`` and save them with its settings as SigMF; returns the meta path."""
    iq = radio.rx(n)
    s = radio.settings()
    hw = f"{s.get('kind')} ({s.get('profile')}), rx_gain_db={s.get('rx_gain_db')}"
    return save_recording(path, iq, sample_rate_hz=radio.sample_rate_hz, center_freq_hz=radio.center_freq_hz,
                          description=description, hw=hw)
