"""Measurement campaigns: task accuracy against the SNR the receiver actually measured.

A campaign steps through a list of operating points, applies each one (the channel simulator's SNR, or a
real TX radio's gain, optionally chosen from a calibration file to hit a target SNR), sends the same test
images through the semantic link at each point, and records, for every frame, the estimated SNR (docs/design.md
definition), the CFO, the number of symbols the adaptive encoder chose, and whether the class was right.

Results are reported two ways:

* per operating point (what was set): accuracy (lost frames count as wrong), frame loss, mean/std of the
  measured SNR, the true SNR when the channel simulator reports it;
* binned by measured SNR (``bin_db`` wide): accuracy of the received frames with a 95 % Wilson interval,
  so runs on real channels, whose SNR drifts, still give an accuracy-vs-SNR curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .link.session import SemanticReceiver, SemanticTransmitter, run_link


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n``."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def bin_by_snr(frames: Sequence[dict[str, Any]], bin_db: float = 2.0) -> list[dict[str, Any]]:
    """Accuracy of received frames grouped by measured SNR (bins centred on multiples of ``bin_db``)."""
    if bin_db <= 0:
        raise ValueError(f"bin_db must be > 0, got {bin_db}")
    groups: dict[float, list[bool]] = {}
    for f in frames:
        if not f.get("received") or f.get("snr_db") is None or not math.isfinite(f["snr_db"]):
            continue
        centre = round(f["snr_db"] / bin_db) * bin_db
        groups.setdefault(centre, []).append(f["pred"] == f["label"])
    out = []
    for centre in sorted(groups):
        ok = groups[centre]
        lo, hi = wilson_interval(sum(ok), len(ok))
        out.append({"snr_db": centre, "frames": len(ok), "accuracy": sum(ok) / len(ok), "ci95": [lo, hi]})
    return out


def run_campaign(
    tx: SemanticTransmitter,
    rx: SemanticReceiver,
    images: np.ndarray,
    labels: np.ndarray,
    points: Sequence[float],
    apply: Callable[[float], dict[str, Any]],
    truth: Callable[[], list[dict[str, Any]]] | None = None,
    bin_db: float = 2.0,
    progress: bool = True,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    settle: Callable[[], None] | None = None,
    run: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the link at every operating point; ``apply(value)`` sets it and returns what it set.

    ``settle()`` runs after each ``apply``: with real radios it reads and discards what the RX kernel
    queue still holds from the previous point, so frames of one point (whose sequence numbers restart at
    every point) are never counted at the next one.

    ``run(images, labels, progress=, truth=)`` -> ``{scheme: LinkReport}`` sends the images through several
    schemes (:func:`sdr_tosc.link.digital.run_schemes`); by default ``run_link(tx, rx, ...)``, the semantic
    scheme alone. Every point then appears once per scheme (``scheme`` key), and ``binned`` is per scheme."""
    if not len(points):
        raise ValueError("a campaign needs at least one operating point")
    if run is None:
        def run(images, labels, progress, truth):  # noqa: ANN001, ANN202
            return {"semantic": run_link(tx, rx, images, labels, progress=progress, truth=truth)}
    results, frames = [], []
    for i, value in enumerate(points):
        setting = apply(float(value))
        if settle is not None:
            settle()
        for scheme, report in run(images, labels, progress=progress, truth=truth).items():
            point = _point(i, value, setting, scheme, report)
            results.append(point)
            for f in report.frames:
                frames.append({"point": i, "scheme": scheme, **f})
            if on_point is not None:
                on_point(point)
    binned = []
    for scheme in dict.fromkeys(f["scheme"] for f in frames):
        binned += [{"scheme": scheme, **b} for b in bin_by_snr([f for f in frames if f["scheme"] == scheme], bin_db)]
    return {"points": results, "binned": binned, "frames": frames}


def _point(i: int, value: float, setting: dict[str, Any], scheme: str, report: Any) -> dict[str, Any]:
    """One operating point of one scheme: what was set and what the link measured."""
    snrs = np.array([f["snr_db"] for f in report.frames if f.get("received")])
    true = np.array([f["snr_true_db"] for f in report.frames if "snr_true_db" in f])
    n = len(report.frames)
    crc_failed = sum(1 for f in report.frames if f.get("received") and f.get("crc_ok") is False)
    mods: dict[str, int] = {}
    for f in report.frames:
        if f.get("modulation"):
            mods[f["modulation"]] = mods.get(f["modulation"], 0) + 1
    return {
        "point": i, "value": float(value), **setting, "scheme": scheme,
        "accuracy": report.accuracy, "accuracy_received": report.accuracy_received,
        "frame_loss": report.frame_loss,
        "snr_db_mean": float(snrs.mean()) if snrs.size else None,
        "snr_db_std": float(snrs.std()) if snrs.size else None,
        "snr_true_db_mean": float(true.mean()) if true.size else None,
        "symbols_mean": report.symbols_mean, "images": report.images,
        "air_samples_per_image": report.air_samples_per_image, "bursts": report.bursts,
        "payload_air_fraction": report.symbols_mean / report.air_samples_per_image
        if report.air_samples_per_image else None,
        "crc_failed": crc_failed / n if n else 0.0, "modulations": mods,
    }


def plot_campaign(result: dict[str, Any], path: Any, title: str = "") -> None:
    """Accuracy vs measured SNR per scheme (binned, with 95 % intervals, and per operating point), air samples
    per image beside it, and the measured SNR / frames lost per operating point, as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from .fileio import atomic_path  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), constrained_layout=True)
    schemes = list(dict.fromkeys(p.get("scheme", "semantic") for p in result["points"]))
    colours = {s: f"C{k}" for k, s in enumerate(schemes)}
    ax = axes[0]
    for s in schemes:
        b = [r for r in result["binned"] if r.get("scheme", "semantic") == s]
        if b:
            x = [r["snr_db"] for r in b]
            y = [100 * r["accuracy"] for r in b]
            err = [[max(0.0, 100 * (r["accuracy"] - r["ci95"][0])) for r in b],
                   [max(0.0, 100 * (r["ci95"][1] - r["accuracy"])) for r in b]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colours[s], alpha=0.45,
                        label=f"{s}: received, binned by measured SNR")
        pts = [p for p in result["points"] if p.get("scheme", "semantic") == s and p["snr_db_mean"] is not None]
        ax.plot([p["snr_db_mean"] for p in pts], [100 * p["accuracy"] for p in pts], "s-", color=colours[s],
                label=f"{s}: per operating point (lost/CRC-failed = wrong)")
    ax.set_xlabel("measured SNR (dB)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = axes[1]
    for s in schemes:
        pts = [p for p in result["points"] if p.get("scheme", "semantic") == s and p["snr_db_mean"] is not None]
        ax.plot([p["snr_db_mean"] for p in pts], [p["air_samples_per_image"] for p in pts], "s-", color=colours[s],
                label=s)
    ax.set_yscale("log")
    ax.set_xlabel("measured SNR (dB)")
    ax.set_ylabel("air samples per image (all overhead)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax = axes[2]
    first = [p for p in result["points"] if p.get("scheme", "semantic") == schemes[0]] if schemes else []
    sets = [p["value"] for p in first]
    ax.plot(sets, [p["snr_db_mean"] if p["snr_db_mean"] is not None else np.nan for p in first], "o-",
            label="measured SNR")
    if any(p["snr_true_db_mean"] is not None for p in first):
        ax.plot(sets, [p["snr_true_db_mean"] if p["snr_true_db_mean"] is not None else np.nan
                       for p in first], "k--", label="channel truth")
    ax2 = ax.twinx()
    for s in schemes:
        pts = [p for p in result["points"] if p.get("scheme", "semantic") == s]
        ax2.plot([p["value"] for p in pts], [100 * p["frame_loss"] for p in pts], ":", color=colours[s],
                 label=f"{s}: frames lost")
    ax2.set_ylabel("frames lost (%)")
    ax.set_xlabel(result.get("sweep", "operating point"))
    ax.set_ylabel("SNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(title or "sdr-tosc measurement campaign")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
