"""Soak: the semantic link through the channel process for a long time; frames lost and memory over time.

One loopback (TX zmq radio -> ``sdr-tosc channel`` process -> RX zmq radio, SNR feedback on) stays open
for ``--duration-s`` (default 1800 s = 30 min); test images go through it in rounds. Prints one JSON
object: images sent and received, frames lost, accuracy, and the RSS of this process and of the channel
process sampled after every round, with the RSS growth after the warm-up (the first ``--warmup-frac`` of
the run) in KiB per minute (flat memory: close to 0).

Usage: .venv/bin/python benchmarks/bench_soak.py [--duration-s 1800] [--round-images 1000] [--snr-db 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_kib(pid: int | str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_kib_per_min(t: list[float], v: list[int]) -> float | None:
    if len(t) < 3:
        return None
    return float(np.polyfit(np.asarray(t) / 60.0, np.asarray(v, float), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration-s", type=float, default=1800.0)
    ap.add_argument("--round-images", type=int, default=1000)
    ap.add_argument("--snr-db", type=float, default=20.0)
    ap.add_argument("--warmup-frac", type=float, default=0.2)
    a = ap.parse_args()

    import torch

    from sdr_tosc.link import LinkConfig
    from sdr_tosc.link.loopback import open_loopback
    from sdr_tosc.link.session import run_link
    from sdr_tosc.semantic.datasets import load_dataset
    from sdr_tosc.semantic.student import load_checkpoint
    from sdr_tosc.zoo import default_student_path

    torch.set_num_threads(1)
    student = load_checkpoint(default_student_path())
    data = load_dataset("fashion-mnist", "test")
    n = min(a.round_images, len(data))
    images, labels = data.images[:n], data.labels[:n]
    samples: list[dict] = []
    sent = received = correct = 0
    t0 = time.monotonic()
    with open_loopback(student, LinkConfig(), snr_db=a.snr_db, cfo_hz=2000.0, seed=1) as lb:
        chan_pid = lb.channel.pid
        rounds = 0
        while time.monotonic() - t0 < a.duration_s:
            rep = run_link(lb.tx, lb.rx, images, labels, progress=False)
            rounds += 1
            sent += rep.images
            received += rep.received
            correct += rep.correct
            samples.append({"t_s": round(time.monotonic() - t0, 1), "rss_self_kib": rss_kib(),
                            "rss_channel_kib": rss_kib(chan_pid), "received": rep.received, "images": rep.images})
    wall = time.monotonic() - t0
    warm = [s for s in samples if s["t_s"] >= a.warmup_frac * wall]
    out = {
        "duration_s": round(wall, 1), "rounds": rounds, "snr_db": a.snr_db, "images_sent": sent,
        "images_received": received, "frames_lost": sent - received, "accuracy": correct / max(sent, 1),
        "images_per_s": sent / wall,
        "rss_self_kib": {"first": samples[0]["rss_self_kib"], "last": samples[-1]["rss_self_kib"],
                         "growth_after_warmup_kib_per_min": slope_kib_per_min(
                             [s["t_s"] for s in warm], [s["rss_self_kib"] for s in warm])},
        "rss_channel_kib": {"first": samples[0]["rss_channel_kib"], "last": samples[-1]["rss_channel_kib"],
                            "growth_after_warmup_kib_per_min": slope_kib_per_min(
                                [s["t_s"] for s in warm], [s["rss_channel_kib"] for s in warm])},
        "samples": samples,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
