"""The cliff over the link: semantic vs separate source/channel coding through the loopback channel process.

Prints one JSON object. At each SNR set on the channel simulator (default -5 to 25 dB in 5 dB steps; AWGN,
2 kHz CFO, SNR feedback on), the same test images go through every scheme (``--scheme both``: semantic,
digital-latent, digital-png, taking turns batch by batch), after one warm-up batch per SNR so the adaptive
transmitters start from a fed-back SNR of that point (the warm-up is not counted). Per SNR and scheme:

* ``accuracy`` (lost bursts and CRC-failed images count as wrong), ``frames_lost``, ``crc_failed``,
  measured frame SNR, post-equalisation SNR, ``air_samples_per_image`` (preamble, header, padding, gaps
  included), the modulations the digital transmitters chose;
* ``simulated``: the scheme's own simulation on the same images at the SNR its decoder faces on this flat
  channel: the channel's true SNR (its truth report) plus the OFDM spreading term 10 log10(64 / 50 used bins)
  = 1.07 dB. Digital: each image coded as the link coded it (same modulation) through AWGN
  (:func:`sdr_tosc.link.digital.simulate_frames`); semantic: ``evaluate``'s AWGN channel (the student's
  ``forward``). ``delta_points`` = link - simulation in accuracy points, and ``within_2_points``.
  ``simulated_at_measured_snr`` (digital): the same at the post-equalisation SNR the receiver estimated for
  each image instead of the truth (on the cliff's slope a 1 dB estimation bias moves accuracy by ~30 points).
* ``evaluate_digital``: ``sdr-tosc evaluate``'s own digital curve (4-bit latent, fixed 16-QAM, no CRC, bit
  errors passed to the decoder) at the set SNR, for reference.

``cliff_db``: per scheme, the SNR (linear interpolation on the grid) at which accuracy first reaches 90 % of
its high-SNR accuracy (the best over the grid), and ``cliff_vs_semantic_db`` = digital cliff - semantic cliff
(``below_grid`` when already at -5 dB).

Usage: .venv/bin/python benchmarks/bench_schemes.py [--images 100] [--snr-db -5:25:5] [--batch-size 50]
       [--scheme both] [--digital-modulation auto|bpsk|qpsk|16qam|64qam]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def cliff(snrs: list[float], acc: list[float]) -> dict:
    """SNR where ``acc`` first reaches 90 % of its best value (interpolated), scanning from low SNR."""
    top = max(acc)
    target = 0.9 * top
    if acc[0] >= target:
        return {"snr_db": snrs[0], "below_grid": True, "high_snr_accuracy": top}
    for i in range(1, len(acc)):
        if acc[i] >= target:
            s0, s1, a0, a1 = snrs[i - 1], snrs[i], acc[i - 1], acc[i]
            s = s1 if a1 == a0 else s0 + (target - a0) / (a1 - a0) * (s1 - s0)
            return {"snr_db": round(float(s), 2), "below_grid": False, "high_snr_accuracy": top}
    return {"snr_db": None, "below_grid": False, "high_snr_accuracy": top}


def plot(out: dict, path: str) -> None:
    """Accuracy vs measured SNR per scheme (link solid, own simulation dashed) and air samples per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sdr_tosc.fileio import atomic_path

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
    for k, s in enumerate(out["schemes"]):
        x = [p[s]["snr_db_measured"] if p[s]["snr_db_measured"] == p[s]["snr_db_measured"] else p["snr_db_set"]
             for p in out["points"]]
        c = out["cliff_db"][s]["snr_db"]
        ax.plot(x, [100 * p[s]["accuracy"] for p in out["points"]], "o-", color=f"C{k}",
                label=f"{s} over the link (cliff {'<= ' if out['cliff_db'][s]['below_grid'] else ''}{c} dB)")
        ax.plot(x, [100 * p[s]["simulated"]["accuracy"] for p in out["points"]], "x--", color=f"C{k}", alpha=0.6,
                label=f"{s}, simulation")
        bx.plot(x, [p[s]["air_samples_per_image"] for p in out["points"]], "o-", color=f"C{k}", label=s)
    ax.set_xlabel("measured SNR (dB)")
    ax.set_ylabel("accuracy (%) (lost / CRC-failed = wrong)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="lower right")
    bx.set_yscale("log")
    bx.set_xlabel("measured SNR (dB)")
    bx.set_ylabel("air samples per image (preamble, header, padding included)")
    bx.grid(alpha=0.3, which="both")
    bx.legend(fontsize=8)
    fig.suptitle(f"semantic vs separate source/channel coding over the loopback channel process "
                 f"({out['images']} Fashion-MNIST test images per SNR, AWGN, 2 kHz CFO)", fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100, help="test images per SNR (default 100)")
    ap.add_argument("--snr-db", default="-5:25:5", help="START:STOP:STEP of the channel SNR (default -5:25:5)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--scheme", default="both", help="semantic|digital|both|digital-latent|digital-png (default both)")
    ap.add_argument("--digital-modulation", default="auto",
                    help="auto (adaptive) or a fixed modulation; 16qam reproduces evaluate's digital setting")
    ap.add_argument("--plot", default=None, help="also draw the curves to this PNG")
    ap.add_argument("--from-json", default=None, help="only redraw --plot from an earlier run's JSON output")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as fh:
            old = json.load(fh)
        old.setdefault("schemes", [s for s in ("semantic", "digital-latent", "digital-png") if s in old["cliff_db"]])
        plot(old, a.plot or "bench_schemes.png")
        return

    import torch

    from sdr_tosc.commands.common import parse_range
    from sdr_tosc.link import LinkConfig
    from sdr_tosc.link.digital import (
        DIGITAL_SCHEMES,
        DigitalLinkConfig,
        load_default_teacher,
        make_codecs,
        open_scheme_loopback,
        run_schemes,
        schemes_for,
        simulate_frames,
    )
    from sdr_tosc.modem import Modem, ModemConfig
    from sdr_tosc.semantic.datasets import load_dataset
    from sdr_tosc.semantic.evaluate import accuracy_vs_snr, digital_accuracy_vs_snr
    from sdr_tosc.semantic.student import load_checkpoint
    from sdr_tosc.zoo import default_student_path

    torch.set_num_threads(1)
    snrs = [float(s) for s in parse_range(a.snr_db, "--snr-db")]
    student = load_checkpoint(a.checkpoint or default_student_path())
    data = load_dataset("fashion-mnist", "test")
    warm = data.subset(np.arange(a.images, a.images + a.batch_size))
    test = data.subset(np.arange(a.images))
    digital = DigitalLinkConfig(modulation=a.digital_modulation)
    schemes = schemes_for(a.scheme)
    codecs = make_codecs(schemes, student, load_default_teacher, data.image_shape, digital)
    link = LinkConfig(batch_size=a.batch_size)
    modem = Modem(ModemConfig())
    spread_db = 10 * math.log10(modem.config.fft_size / modem.grid.n_used)  # frame SNR -> per-symbol SNR
    out: dict = {"images": a.images, "snr_db": snrs, "channel": "AWGN, 2 kHz CFO, channel process (loopback)",
                 "link": {"batch_size": a.batch_size, "images_per_burst": link.images_per_burst},
                 "schemes": list(schemes),
                 "digital": {"modulation": digital.modulation, "thresholds_db": list(digital.thresholds_db), "latent_bits": digital.latent_bits,
                             "latent_source_snr_db": digital.latent_source_snr_db,
                             "code": "K=7 rate-1/2 convolutional, soft Viterbi", "png": "Pillow, optimize=True"},
                 "points": []}
    t0 = time.perf_counter()
    with open_scheme_loopback(schemes, student, codecs, link, digital, snr_db=snrs[0], cfo_hz=2000.0) as lb:
        for snr in snrs:
            lb.channel.set(snr_db=snr)
            run_schemes(lb.txs, lb.rx, warm.images, warm.labels, progress=False)
            reps = run_schemes(lb.txs, lb.rx, test.images, test.labels, progress=False, truth=lb.channel.truth)
            point: dict = {"snr_db_set": snr}
            for scheme, r in reps.items():
                fr = r.frames
                dec = [f["snr_dec_db"] for f in fr if f.get("received")]
                mods: dict[str, int] = {}
                for f in fr:
                    if f.get("modulation"):
                        mods[f["modulation"]] = mods.get(f["modulation"], 0) + 1
                p = {"accuracy": r.accuracy, "frames_lost": r.frame_loss,
                     "crc_failed": sum(1 for f in fr if f.get("received") and f.get("crc_ok") is False) / len(fr),
                     "snr_db_measured": r.snr_db_mean, "snr_dec_db_measured": float(np.mean(dec)) if dec else None,
                     "air_samples_per_image": round(r.air_samples_per_image, 1), "bursts": r.bursts,
                     "symbols_per_image": r.symbols_mean}
                true = [f["snr_true_db"] for f in fr if "snr_true_db" in f]
                true_dec = (float(np.mean(true)) if true else snr) + spread_db
                p["snr_dec_db_true"] = round(true_dec, 2)
                if scheme in DIGITAL_SCHEMES:
                    seed = int(snr * 10) + 100
                    sim = simulate_frames(codecs[scheme], test.images, test.labels, fr, seed=seed, snr_db=true_dec)
                    p["simulated_at_measured_snr"] = simulate_frames(codecs[scheme], test.images, test.labels, fr,
                                                                     seed=seed)
                    p["modulations"] = mods
                else:
                    sim = {"accuracy": accuracy_vs_snr(student, test, [true_dec], "awgn", seed=int(snr * 10) + 100)[0],
                           "snr_dec_db_mean": true_dec}
                p["simulated"] = sim
                if sim.get("accuracy") is not None:
                    p["delta_points"] = round(100 * (r.accuracy - sim["accuracy"]), 2)
                    p["within_2_points"] = abs(p["delta_points"]) <= 2.0
                point[scheme] = p
            print(f"{snr:+5.1f} dB: " + "  ".join(f"{s} {point[s]['accuracy']:.3f} (sim {point[s]['simulated']['accuracy']})"
                                                for s in schemes), file=sys.stderr, flush=True)
            out["points"].append(point)
    ev, _info = digital_accuracy_vs_snr(student, test, snrs, "awgn", seed=5)
    for p, e in zip(out["points"], ev, strict=True):
        p["evaluate_digital"] = e
    out["curves"] = {s: {"accuracy": [p[s]["accuracy"] for p in out["points"]],
                         "simulated": [p[s]["simulated"]["accuracy"] for p in out["points"]],
                         "air_samples_per_image": [p[s]["air_samples_per_image"] for p in out["points"]]}
                     for s in schemes}
    out["cliff_db"] = {s: cliff(snrs, out["curves"][s]["accuracy"]) for s in schemes}
    sem = out["cliff_db"].get("semantic", {}).get("snr_db")
    out["cliff_vs_semantic_db"] = {s: (round(out["cliff_db"][s]["snr_db"] - sem, 2)
                                       if out["cliff_db"][s]["snr_db"] is not None and sem is not None else None)
                                   for s in DIGITAL_SCHEMES if s in schemes}
    out["digital_within_2_points_everywhere"] = {
        s: all(p[s].get("within_2_points", False) for p in out["points"]) for s in DIGITAL_SCHEMES if s in schemes}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))
    if a.plot:
        plot(out, a.plot)


if __name__ == "__main__":
    main()
