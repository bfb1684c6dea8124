"""Training-data needs (the paper's claim): accuracy at 10 dB vs the fraction of labelled training images,
with KD from the pre-stored teacher cache (teacher soft labels on *all* training images, cross-entropy on
the labelled ones) vs without KD (the labelled images only). Prints one JSON object.

Every run trains the same adaptive student with ``sdr_tosc.semantic.distill.train`` for the same number of
optimizer steps (``--epochs`` x ``--steps``, batch 256), so KD and no-KD get equal compute; the labelled
subset is class-stratified and seeded (identical for KD and no-KD). Accuracy: the full test set, AWGN at
10 dB (seeded noise).

Usage::

    .venv/bin/python benchmarks/bench_data_fraction.py                 # 8 short runs, ~12-20 min on 2 cores
    .venv/bin/python benchmarks/bench_data_fraction.py --fractions 0.05,1 --steps 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sdr_tosc.semantic.cache import TeacherCache  # noqa: E402
from sdr_tosc.semantic.datasets import load_dataset  # noqa: E402
from sdr_tosc.semantic.distill import TrainConfig, train  # noqa: E402
from sdr_tosc.semantic.evaluate import accuracy_vs_snr  # noqa: E402
from sdr_tosc.semantic.student import load_checkpoint  # noqa: E402
from sdr_tosc.zoo import default_cache_path  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=None, help="teacher cache (default: the zoo's)")
    p.add_argument("--fractions", default="0.05,0.1,0.25,1.0")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=200, help="optimizer steps per epoch (batch 256)")
    p.add_argument("--snr-db", type=float, default=10.0)
    p.add_argument("--limit", type=int, default=0, help="first N test images (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="keep the checkpoints in this folder")
    a = p.parse_args()
    fractions = [float(x) for x in a.fractions.split(",")]
    cache = TeacherCache.open(a.cache or default_cache_path())
    train_set = load_dataset(cache.dataset_name, cache.dataset_split)
    test = load_dataset(cache.dataset_name, "test")
    if a.limit:
        test = test.subset(np.arange(a.limit))
    folder = a.keep or Path(tempfile.mkdtemp(prefix="bench-frac-"))
    runs = []
    t_all = time.perf_counter()
    for frac in fractions:
        row = {"label_fraction": frac}
        for kd in (True, False):
            cfg = TrainConfig(kd=kd, label_fraction=frac, epochs=a.epochs, steps_per_epoch=a.steps,
                              threads=a.threads, seed=a.seed, eval_samples=0)
            out = folder / f"frac{frac:g}-{'kd' if kd else 'nokd'}.safetensors"
            t0 = time.perf_counter()
            r = train(cfg, cache, train_set, out, progress=False, overwrite=True)
            secs = time.perf_counter() - t0
            acc = accuracy_vs_snr(load_checkpoint(out), test, [a.snr_db], seed=a.seed)[0]
            key = "kd" if kd else "no_kd"
            row[key] = round(acc, 4)
            row[f"{key}_train_seconds"] = round(secs, 1)
            row["labelled_images"] = r["labelled_samples"]
            print(f"fraction {frac:g} {'KD' if kd else 'no-KD'}: {acc:.4f} ({secs:.0f} s)", file=sys.stderr, flush=True)
        row["kd_gain_points"] = round(100 * (row["kd"] - row["no_kd"]), 2)
        runs.append(row)
    gains = {r["label_fraction"]: r["kd_gain_points"] for r in runs}
    out = {
        "benchmark": "data_fraction",
        "snr_db": a.snr_db,
        "channel": "awgn",
        "num_test_images": len(test),
        "train_images": len(train_set),
        "steps_per_run": a.epochs * a.steps,
        "batch_size": 256,
        "cache": str(cache.path),
        "teacher": cache.teacher_id,
        "runs": runs,
        "targets": {f"kd_gain_at_{f:g}>=5pt": gains[f] >= 5.0 for f in (0.05, 0.1) if f in gains},
        "seconds": round(time.perf_counter() - t_all, 1),
        "torch_threads": a.threads,
    }
    torch.set_num_threads(a.threads)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
