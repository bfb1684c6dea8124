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


SWEEP_LABELS = {"sweep-snr-db": "channel SNR set (dB)", "sweep-tx-gain-db": "TX gain (dB)",
                "target-snr-db": "target SNR (dB, from the calibration)"}
#: Bins with fewer received frames are drawn hollow (their interval is wide).
MIN_BIN_FRAMES = 30


def simulated_curve(student: Any, images: np.ndarray, labels: np.ndarray, snrs: Sequence[float],
                    channel: str = "awgn", seed: int = 0) -> dict[str, Any]:
    """The ``evaluate`` curve of ``student`` on these images (simulated channel, no radio), for the overlay."""
    from .semantic.datasets import ImageSet  # noqa: PLC0415
    from .semantic.evaluate import accuracy_vs_snr  # noqa: PLC0415

    data = ImageSet("campaign", "test", np.asarray(images), np.asarray(labels), tuple(str(i) for i in range(10)))
    snrs = [float(s) for s in snrs]
    return {"snr_db": snrs, "accuracy": accuracy_vs_snr(student, data, snrs, channel, seed),
            "symbols_per_image": [int(student.num_symbols_for(s)) for s in snrs], "channel": channel,
            "source": f"computed: evaluate on the campaign's {len(labels)} images, {channel} channel"}


def load_simulated_curve(path: Any) -> dict[str, Any]:
    """The student curve of an ``sdr-tosc evaluate --json`` file, for the overlay."""
    import json  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        snrs = [float(x) for x in doc["snr_db"]]
        acc = [float(x) for x in doc["accuracy"]["student"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an 'sdr-tosc evaluate --json' result with a student curve ({exc})") from None
    if len(snrs) != len(acc) or not snrs:
        raise ValueError(f"{path}: snr_db and accuracy.student differ in length")
    return {"snr_db": snrs, "accuracy": acc, "symbols_per_image": (doc.get("symbols_per_image") or {}).get("student"),
            "channel": doc.get("channel"), "source": f"{path} (evaluate, {doc.get('channel', '?')} channel)"}


def _channel_title(ch: dict[str, Any] | None) -> str:
    if not ch:
        return ""
    bits = [f"CFO {ch.get('cfo_hz', 0):g} Hz", f"multipath {ch.get('multipath', 'flat')}",
            f"fading {ch.get('fading', 'none')}"]
    return "channel: " + ", ".join(bits)


def plot_campaign(result: dict[str, Any], path: Any, title: str = "", channel: dict[str, Any] | None = None,
                  simulated: dict[str, Any] | None = None) -> None:
    """The campaign as a PNG: accuracy vs measured SNR per scheme (bins with their frame counts and 95 %
    intervals, per operating point, points where every frame was lost, the simulated ``evaluate`` curve),
    symbols and air samples per image vs SNR, and measured/true SNR and frames lost per operating point."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from .fileio import atomic_path  # noqa: PLC0415

    fig = campaign_figure(result, title, channel, simulated)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def campaign_figure(result: dict[str, Any], title: str = "", channel: dict[str, Any] | None = None,
                    simulated: dict[str, Any] | None = None) -> Any:
    """The matplotlib figure :func:`plot_campaign` writes (the caller closes it)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), constrained_layout=True)
    schemes = list(dict.fromkeys(p.get("scheme", "semantic") for p in result["points"]))
    colours = {s: f"C{k}" for k, s in enumerate(schemes)}
    sweep = result.get("sweep", "")
    xlabel = SWEEP_LABELS.get(sweep, sweep or "operating point")
    ax = axes[0]
    measured = [p["snr_db_mean"] for p in result["points"] if p["snr_db_mean"] is not None]
    x_lost = (min(measured) - 2.0) if measured else 0.0
    for s in schemes:
        b = [r for r in result["binned"] if r.get("scheme", "semantic") == s]
        for solid in (True, False):
            bb = [r for r in b if (r["frames"] >= MIN_BIN_FRAMES) == solid]
            if not bb:
                continue
            err = [[max(0.0, 100 * (r["accuracy"] - r["ci95"][0])) for r in bb],
                   [max(0.0, 100 * (r["ci95"][1] - r["accuracy"])) for r in bb]]
            ax.errorbar([r["snr_db"] for r in bb], [100 * r["accuracy"] for r in bb], yerr=err, fmt="o",
                        capsize=3, color=colours[s], mfc=colours[s] if solid else "white", alpha=0.8 if solid else 0.5,
                        label=f"{s}: received frames, binned by measured SNR (95 % interval)" if solid else
                        f"{s}: bins of < {MIN_BIN_FRAMES} frames")
        for r in b:
            ax.annotate(f"{r['frames']}", (r["snr_db"], 100 * r["ci95"][0]), textcoords="offset points",
                        xytext=(0, -10), ha="center", fontsize=6.5, color=colours[s])
        pts = [p for p in result["points"] if p.get("scheme", "semantic") == s]
        ok = [p for p in pts if p["snr_db_mean"] is not None]
        ax.plot([p["snr_db_mean"] for p in ok], [100 * p["accuracy"] for p in ok], "s-", color=colours[s],
                label=f"{s}: per operating point (lost/CRC-failed = wrong)")
        lost = [p for p in pts if p["snr_db_mean"] is None]
        if lost:  # no frame arrived: no measured SNR; drawn at the true SNR when known, else left of the data
            xs = [p["snr_true_db_mean"] if p.get("snr_true_db_mean") is not None else
                  p.get("snr_db_set", x_lost) for p in lost]
            ax.plot(xs, [0.0] * len(xs), "x", color=colours[s], ms=9, mew=2,
                    label=f"{s}: every frame lost (at the set/true SNR)")
    if simulated:
        ax.plot(simulated["snr_db"], [100 * a for a in simulated["accuracy"]], "k--", lw=1.3,
                label=f"simulation: {simulated.get('source', 'evaluate')}")
    ax.set_xlabel("measured SNR (dB, frame SNR estimated by the receiver)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    ax.set_title("accuracy vs SNR (numbers: frames per bin)", fontsize=10)
    ax = axes[1]
    frames = result.get("frames") or []
    for s in schemes:
        pts = [p for p in result["points"] if p.get("scheme", "semantic") == s and p["snr_db_mean"] is not None]
        ax.plot([p["snr_db_mean"] for p in pts], [p["air_samples_per_image"] for p in pts], "s-", color=colours[s],
                label=f"{s}: air samples per image (all overhead)")
    ax.set_yscale("log")
    ax.set_xlabel("measured SNR (dB)")
    ax.set_ylabel("air samples per image")
    ax.grid(alpha=0.3, which="both")
    axk = ax.twinx()
    for s in schemes:
        byb: dict[float, list[int]] = {}
        for f in frames:
            if f.get("scheme", "semantic") == s and f.get("received") and f.get("snr_db") is not None \
                    and math.isfinite(f["snr_db"]):
                byb.setdefault(round(f["snr_db"] / 2.0) * 2.0, []).append(int(f["n_symbols"]))
        if byb:
            xs = sorted(byb)
            axk.plot(xs, [float(np.mean(byb[x])) for x in xs], "^:", color=colours[s],
                     label=f"{s}: symbols per image (mean per 2-dB bin)")
    if simulated and simulated.get("symbols_per_image"):
        axk.plot(simulated["snr_db"], simulated["symbols_per_image"], "k--", lw=1, label="simulation: symbols per image")
    axk.set_ylabel("complex symbols per image")
    axk.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = axk.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.set_title("cost per image", fontsize=10)
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
        ax2.plot([p["value"] for p in pts], [100 * p["frame_loss"] for p in pts], ":", marker=".", color=colours[s],
                 label=f"{s}: frames lost (right axis)")
    ax2.set_ylabel("frames lost (%)")
    ax2.set_ylim(-2, 102)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("SNR (dB)")
    ax.set_xticks(sets)
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax.set_title("per operating point", fontsize=10)
    n_img = first[0]["images"] if first else 0
    sub = "; ".join(x for x in (_channel_title(channel), f"{n_img} images per point" if n_img else "") if x)
    fig.suptitle((title or "sdr-tosc measurement campaign") + (f"\n{sub}" if sub else ""), fontsize=11)
    return fig
