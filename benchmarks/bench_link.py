"""End-to-end semantic link figures: throughput, air efficiency, link accuracy against simulation, latency.

Prints one JSON object:

* ``loopback``: the loopback demo's path (TX zmq radio -> ``sdr-tosc channel`` process at 10 dB and 2 kHz CFO ->
  RX zmq radio, SNR feedback on, 128 images per burst): images/s end to end, accuracy, frames lost, air samples
  per image and the payload share of the air; and ``ratio_to_student``: that rate over the student's own
  encode + decode rate (batch 256, one thread, measured in this process: the link's overhead, not the model).
  ``loopback_overlap``: the same run with TX of batch n+1 (encode, modulate, send) in a worker thread while
  batch n is received and decoded (``run_link(overlap=True)``); the two runs alternate ``--rounds`` times and
  each reports its best round.
* ``link_vs_simulation``: at each SNR from -5 to 25 dB, link accuracy through the channel process (lost images
  count as wrong; what ``sdr-tosc measure --sweep-snr-db`` runs) next to the same student's accuracy in
  simulation on the same test images (``sdr-tosc evaluate``'s AWGN channel), and the difference.
* ``latency_ms_per_image``: median time of each stage at batch 1 (encode, modulate, demodulate one burst in a
  buffer with 2000 noise samples, decode) and the burst's airtime at 1 Msps.

Usage: .venv/bin/python benchmarks/bench_link.py [--images 5000] [--compare-images 1000] [--checkpoint PATH]
[--rounds 1] [--only loopback,link_vs_simulation,latency]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

SECTIONS = ("loopback", "link_vs_simulation", "latency")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000, help="images through the loopback for images/s")
    ap.add_argument("--compare-images", type=int, default=1000, help="images per SNR for link vs simulation")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1, help="alternating sequential / overlapped loopback runs")
    ap.add_argument("--only", help="comma-separated sections (default all): " + ", ".join(SECTIONS))
    a = ap.parse_args()
    only = set(SECTIONS) if not a.only else {w.strip() for w in a.only.split(",") if w.strip()}
    if only - set(SECTIONS) or a.rounds < 1:
        ap.error(f"--only takes {', '.join(SECTIONS)} (got {sorted(only - set(SECTIONS))}); --rounds >= 1")

    import torch

    from sdr_tosc.link import LinkConfig
    from sdr_tosc.link.loopback import run_loopback
    from sdr_tosc.modem import FrameHeader, Modem
    from sdr_tosc.semantic.datasets import load_dataset
    from sdr_tosc.semantic.evaluate import accuracy_vs_snr
    from sdr_tosc.semantic.student import load_checkpoint
    from sdr_tosc.zoo import default_student_path

    torch.set_num_threads(1)
    student = load_checkpoint(a.checkpoint or default_student_path())
    data = load_dataset("fashion-mnist", "test")
    x, y = data.images[: a.images], data.labels[: a.images]

    # the student alone: encode + decode at batch 256 (what the link does per burst, without the PHY)
    xb = data.images[:2048]
    student.decode(student.encode(xb[:256], 10.0), 10.0)
    t0 = time.perf_counter()
    for i in range(0, xb.shape[0], 256):
        student.decode(student.encode(xb[i:i + 256], 10.0), 10.0)
    student_rate = xb.shape[0] / (time.perf_counter() - t0)

    def loop_figures(rep) -> dict:
        return {"images": rep.images, "images_per_s": round(rep.images_per_s, 1), "accuracy": rep.accuracy,
                "frame_loss": rep.frame_loss, "snr_db_mean": round(rep.snr_db_mean, 3),
                "symbols_mean": rep.symbols_mean, "air_samples_per_image": round(rep.air_samples_per_image, 2),
                "payload_air_fraction": round(rep.symbols_mean / rep.air_samples_per_image, 4), "bursts": rep.bursts,
                "student_images_per_s": round(student_rate, 1),
                "ratio_to_student": round(rep.images_per_s / student_rate, 3),
                "channel": {"snr_db": 10.0, "cfo_hz": 2000.0}}

    out: dict = {"benchmark": "link", "student_parameters": student.num_parameters()}
    if "loopback" in only:
        best: dict[bool, object] = {}
        for _ in range(a.rounds):
            for overlap in (False, True):
                rep = run_loopback(student, x, y, LinkConfig(), progress=False, overlap=overlap, snr_db=10.0,
                                   cfo_hz=2000.0, seed=1)
                if overlap not in best or rep.images_per_s > best[overlap].images_per_s:
                    best[overlap] = rep
        out["loopback"] = loop_figures(best[False])
        out["loopback_overlap"] = loop_figures(best[True])
        out["loopback_overlap"]["speedup"] = round(best[True].images_per_s / best[False].images_per_s, 3)

    if "link_vs_simulation" in only:
        snrs = [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0]
        sub = dataclasses.replace(data, images=data.images[: a.compare_images], labels=data.labels[: a.compare_images])
        sim = accuracy_vs_snr(student, sub, snrs, channel="awgn", seed=0)
        rows = {}
        for s, acc_sim in zip(snrs, sim, strict=True):
            r = run_loopback(student, sub.images, sub.labels, LinkConfig(), progress=False, snr_db=s, cfo_hz=2000.0, seed=2)
            rows[f"{s:g}dB"] = {"link_accuracy": r.accuracy, "simulation_accuracy": acc_sim,
                                "difference_points": round(100 * (r.accuracy - acc_sim), 2), "frame_loss": r.frame_loss,
                                "snr_db_mean": round(r.snr_db_mean, 3), "symbols_mean": r.symbols_mean,
                                "air_samples_per_image": round(r.air_samples_per_image, 2)}

        out["link_vs_simulation"] = {
            "images": int(sub.images.shape[0]), "channel": "awgn, 2 kHz CFO (link)", "points": rows,
            "max_abs_difference_points": max(abs(r["difference_points"]) for r in rows.values())}

    if "latency" in only:
        modem = Modem()
        rng = np.random.default_rng(0)
        stages: dict[str, list[float]] = {"encode": [], "modulate": [], "demodulate": [], "decode": []}
        for i in range(a.repeats):
            img = x[i % len(x)][None]
            t0 = time.perf_counter()
            sym = student.encode(img, 10.0)[0]
            t1 = time.perf_counter()
            burst = modem.modulate(sym, FrameHeader(seq=i % 65536))
            t2 = time.perf_counter()
            buf = np.concatenate([np.zeros(1000, np.complex64), burst, np.zeros(1000, np.complex64)])
            buf = buf + (0.01 * (rng.standard_normal(buf.size) + 1j * rng.standard_normal(buf.size))).astype(np.complex64)
            t3 = time.perf_counter()
            frames = modem.demodulate(buf)
            t4 = time.perf_counter()
            student.decode(frames[0].symbols[None], frames[0].snr_db)
            t5 = time.perf_counter()
            for k, v in zip(stages, (t1 - t0, t2 - t1, t4 - t3, t5 - t4), strict=True):
                stages[k].append(v * 1e3)
        lat = {k: float(np.median(v)) for k, v in stages.items()}
        lat["total_compute"] = float(sum(lat.values()))
        lat["airtime_at_1msps"] = float(burst.size / 1e3)
        out["latency_ms_per_image"] = lat
        out["burst_samples_one_image"] = int(burst.size)
    out["threads"] = 1
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
