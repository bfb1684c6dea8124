"""End-to-end semantic link figures: images/s through the loopback, and the per-image latency budget.

Prints one JSON object:
* ``loopback``: images/s and accuracy through TX radio -> channel process -> RX radio at 10 dB and 2 kHz CFO
  (the whole ``run_link`` loop: encode, modulate, sockets, channel, stream demodulation, decode, feedback);
* ``latency_ms_per_image``: median time of each stage for one image at batch 1, measured in this process
  (student encode, modem modulate, modem demodulate of the burst plus 2000 noise samples, student decode),
  plus the burst's airtime at 1 Msps.

Usage: .venv/bin/python benchmarks/bench_link.py [--images 500] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--repeats", type=int, default=200)
    a = ap.parse_args()

    import torch

    from sdr_tosc.link import LinkConfig
    from sdr_tosc.link.loopback import run_loopback
    from sdr_tosc.modem import FrameHeader, Modem
    from sdr_tosc.semantic.datasets import load_dataset
    from sdr_tosc.semantic.student import load_checkpoint
    from sdr_tosc.zoo import default_student_path

    torch.set_num_threads(1)
    student = load_checkpoint(a.checkpoint or default_student_path())
    data = load_dataset("fashion-mnist", "test")
    x, y = data.images[: a.images], data.labels[: a.images]

    rep = run_loopback(student, x, y, LinkConfig(batch_size=32), progress=False, snr_db=10.0, cfo_hz=2000.0, seed=1)

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
    print(json.dumps({
        "benchmark": "link",
        "student_parameters": student.num_parameters(),
        "loopback": {"images": rep.images, "images_per_s": rep.images_per_s, "accuracy": rep.accuracy,
                     "frame_loss": rep.frame_loss, "snr_db_mean": rep.snr_db_mean, "symbols_mean": rep.symbols_mean,
                     "channel": {"snr_db": 10.0, "cfo_hz": 2000.0}},
        "latency_ms_per_image": lat,
        "burst_samples": int(burst.size),
        "threads": 1,
    }, indent=2))


if __name__ == "__main__":
    main()
