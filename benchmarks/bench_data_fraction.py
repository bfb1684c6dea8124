"""Training-data needs (the paper's claim): accuracy at 10 dB vs the fraction of labelled training images,
with KD from the pre-stored teacher cache (teacher soft labels on *all* training images, cross-entropy on
the labelled ones) vs without KD (the labelled images only). Prints one JSON object.

Every run trains the same adaptive student with ``sdr_tosc.semantic.distill.train`` for the same number of
optimizer steps (``--epochs`` x ``--steps``, batch 256), so KD and no-KD get equal compute; the labelled
subset is class-stratified and seeded (identical for KD and no-KD). Accuracy: the full test set, AWGN at
10 dB (seeded noise).

Usage::

    .venv/bin/python benchmarks/bench_data_fraction.py                 # 8 runs of 1600 steps, 2 at a time, ~20-25 min
    .venv/bin/python benchmarks/bench_data_fraction.py --fractions 0.05,1 --steps 100
    .venv/bin/python benchmarks/bench_data_fraction.py --device cuda --jobs 4 --cache artifacts/cache/fmnist-224
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


def run_one(cache_path: str, frac: float, kd: bool, epochs: int, steps: int, threads: int, seed: int,
            snr_db: float, limit: int, folder: str, device: str = "cpu") -> dict[str, object]:
    """Train one student (KD or not, one label fraction) and score it at ``snr_db``; runs in a worker."""
    torch.set_num_threads(threads)
    cache = TeacherCache.open(cache_path, verify=False)
    train_set = load_dataset(cache.dataset_name, cache.dataset_split)
    if cache.num_samples < len(train_set):  # a cache built with --limit N: its first N images
        train_set = train_set.subset(np.arange(cache.num_samples))
    test = load_dataset(cache.dataset_name, "test")
    if limit:
        test = test.subset(np.arange(limit))
    cfg = TrainConfig(kd=kd, label_fraction=frac, epochs=epochs, steps_per_epoch=steps, threads=threads, seed=seed,
                      eval_samples=0)
    out = Path(folder) / f"frac{frac:g}-{'kd' if kd else 'nokd'}.safetensors"
    t0 = time.perf_counter()
    r = train(cfg, cache, train_set, out, progress=False, overwrite=True, device=device)
    secs = time.perf_counter() - t0
    acc = accuracy_vs_snr(load_checkpoint(out), test, [snr_db], seed=seed)[0]
    print(f"fraction {frac:g} {'KD' if kd else 'no-KD'}: {acc:.4f} ({secs:.0f} s)", file=sys.stderr, flush=True)
    return {"frac": frac, "kd": kd, "acc": acc, "seconds": secs, "labelled": r["labelled_samples"],
            "num_test": len(test), "train_images": len(train_set)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=None, help="teacher cache (default: the zoo's)")
    p.add_argument("--fractions", default="0.05,0.1,0.25,1.0")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps", type=int, default=400, help="optimizer steps per epoch (batch 256)")
    p.add_argument("--snr-db", type=float, default=10.0)
    p.add_argument("--limit", type=int, default=0, help="first N test images (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, default=None, help="keep the checkpoints in this folder")
    p.add_argument("--device", default="cpu", help="where the students train: cpu (default), cuda, cuda:N, auto")
    a = p.parse_args()
    fractions = [float(x) for x in a.fractions.split(",")]
    cache_path = a.cache or default_cache_path()
    cache = TeacherCache.open(cache_path)  # verifies every file once
    folder = a.keep or Path(tempfile.mkdtemp(prefix="bench-frac-"))
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [(frac, kd) for frac in fractions for kd in (True, False)]
    t_all = time.perf_counter()
    args = (a.epochs, a.steps, a.threads, a.seed, a.snr_db, a.limit, str(folder), a.device)
    if a.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=a.jobs, mp_context=mp.get_context("spawn")) as ex:
            results = list(ex.map(run_one, *zip(*[(str(cache_path), f, kd, *args) for f, kd in tasks], strict=True)))
    else:
        results = [run_one(str(cache_path), f, kd, *args) for f, kd in tasks]
    runs = []
    for frac in fractions:
        row: dict[str, object] = {"label_fraction": frac}
        for res in results:
            if res["frac"] == frac:
                key = "kd" if res["kd"] else "no_kd"
                row[key] = round(float(res["acc"]), 4)
                row[f"{key}_train_seconds"] = round(float(res["seconds"]), 1)
                row["labelled_images"] = res["labelled"]
        row["kd_gain_points"] = round(100 * (row["kd"] - row["no_kd"]), 2)
        runs.append(row)
    gains = {r["label_fraction"]: r["kd_gain_points"] for r in runs}
    out = {
        "benchmark": "data_fraction",
        "snr_db": a.snr_db,
        "channel": "awgn",
        "num_test_images": results[0]["num_test"],
        "train_images": results[0]["train_images"],
        "steps_per_run": a.epochs * a.steps,
        "batch_size": 256,
        "cache": str(cache.path),
        "teacher": cache.teacher_id,
        "runs": runs,
        "targets": {f"kd_gain_at_{f:g}>=5pt": gains[f] >= 5.0 for f in (0.05, 0.1) if f in gains},
        "seconds": round(time.perf_counter() - t_all, 1),
        "torch_threads_per_run": a.threads,
        "parallel_runs": a.jobs,
        "device": a.device,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
