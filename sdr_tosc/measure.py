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
) -> dict[str, Any]:
    """Run the link at every operating point; ``apply(value)`` sets it and returns what it set.

    ``settle()`` runs after each ``apply``: with real radios it reads and discards what the RX kernel
    queue still holds from the previous point, so frames of one point (whose sequence numbers restart at
    every point) are never counted at the next one."""
    if not len(points):
        raise ValueError("a campaign needs at least one operating point")
    results, frames = [], []
    for i, value in enumerate(points):
        setting = apply(float(value))
        if settle is not None:
            settle()
        report = run_link(tx, rx, images, labels, progress=progress, truth=truth)
        snrs = np.array([f["snr_db"] for f in report.frames if f.get("received")])
        true = np.array([f["snr_true_db"] for f in report.frames if "snr_true_db" in f])
        point = {
            "point": i, "value": float(value), **setting,
            "accuracy": report.accuracy, "accuracy_received": report.accuracy_received,
            "frame_loss": report.frame_loss,
            "snr_db_mean": float(snrs.mean()) if snrs.size else None,
            "snr_db_std": float(snrs.std()) if snrs.size else None,
            "snr_true_db_mean": float(true.mean()) if true.size else None,
            "symbols_mean": report.symbols_mean, "images": report.images,
            "air_samples_per_image": report.air_samples_per_image, "bursts": report.bursts,
            "payload_air_fraction": report.symbols_mean / report.air_samples_per_image
            if report.air_samples_per_image else None,
        }
        results.append(point)
        for f in report.frames:
            frames.append({"point": i, **f})
        if on_point is not None:
            on_point(point)
    return {"points": results, "binned": bin_by_snr(frames, bin_db), "frames": frames}


def plot_campaign(result: dict[str, Any], path: Any, title: str = "") -> None:
    """Accuracy vs measured SNR (binned, with 95 % intervals) and per operating point, as a PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from .fileio import atomic_path  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ax = axes[0]
    b = result["binned"]
    if b:
        x = [r["snr_db"] for r in b]
        y = [100 * r["accuracy"] for r in b]
        err = [[max(0.0, 100 * (r["accuracy"] - r["ci95"][0])) for r in b],
               [max(0.0, 100 * (r["ci95"][1] - r["accuracy"])) for r in b]]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="received frames, binned by measured SNR")
    pts = [p for p in result["points"] if p["snr_db_mean"] is not None]
    ax.plot([p["snr_db_mean"] for p in pts], [100 * p["accuracy"] for p in pts], "s--", alpha=0.7,
            label="per operating point (lost = wrong)")
    ax.set_xlabel("measured SNR (dB)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    sets = [p["value"] for p in result["points"]]
    ax.plot(sets, [p["snr_db_mean"] if p["snr_db_mean"] is not None else np.nan for p in result["points"]], "o-",
            label="measured SNR")
    if any(p["snr_true_db_mean"] is not None for p in result["points"]):
        ax.plot(sets, [p["snr_true_db_mean"] if p["snr_true_db_mean"] is not None else np.nan
                       for p in result["points"]], "k--", label="channel truth")
    ax2 = ax.twinx()
    ax2.plot(sets, [100 * p["frame_loss"] for p in result["points"]], "r:", label="frame loss")
    ax2.set_ylabel("frame loss (%)", color="r")
    ax.set_xlabel(result.get("sweep", "operating point"))
    ax.set_ylabel("SNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "sdr-tosc measurement campaign")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
