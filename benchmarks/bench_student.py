"""The shipped student against its baselines, its size and its speed. Prints one JSON object.

* accuracy vs SNR (-5..25 dB, AWGN by default; ``--channel rayleigh``) on the full Fashion-MNIST test set
  for the shipped student, the fixed-SNR (no adaptive module, trained at 10 dB) and no-KD baselines from the
  zoo, and the digital separate-coding baseline (``sdr_tosc.semantic.evaluate``); the teacher's noise-free
  test accuracy (recorded with the cache / zoo teacher JSON);
* parameters of student and teacher; FLOPs of one image through encoder + decoder, counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on the module path (the fused inference path computes the
  same convolutions and products); the encoder's and decoder's share;
* latency: ``encode`` + ``decode`` of one image (batch 1) on one CPU thread, timed with
  ``time.perf_counter`` over many calls (median of repeats; SNR conditioning memoised as in a link);
* the issue's targets, checked (``targets``).

Usage::

    .venv/bin/python benchmarks/bench_student.py                   # full test set, ~2-4 min on 2 cores
    .venv/bin/python benchmarks/bench_student.py --limit 2000 --channel rayleigh
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sdr_tosc.semantic.datasets import load_dataset  # noqa: E402
from sdr_tosc.semantic.evaluate import EvalConfig, evaluate  # noqa: E402
from sdr_tosc.semantic.student import SemanticStudent, load_checkpoint  # noqa: E402
from sdr_tosc.zoo import baseline_path, default_student_path  # noqa: E402

TEACHER_PARAMS = 4_650_000  # EfficientNet-Lite0 (4.65 M parameters, ImageNet); replaced by the zoo teacher's count when present


def flops(model: SemanticStudent, snr_db: float = 10.0) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, *model.config.image_shape, dtype=torch.uint8)
    model.eval()
    with torch.no_grad():
        with FlopCounterMode(display=False) as total:
            model(x, snr_db, channel="none")
        with FlopCounterMode(display=False) as enc:
            model.encoder_features(model.prepare(x), model._enc_cond(torch.tensor([snr_db])) if model.adaptive else None)
    t, e = int(total.get_total_flops()), int(enc.get_total_flops())
    return {"total": t, "encoder": e, "decoder_and_conditioning": t - e}


def latency_ms(model: SemanticStudent, snr_db: float = 10.0, n: int = 2000, repeats: int = 5) -> dict[str, float]:
    torch.set_num_threads(1)
    x = np.random.default_rng(0).integers(0, 256, size=(1, *model.config.image_shape), dtype=np.uint8)
    for _ in range(200):
        model.decode(model.encode(x, snr_db), snr_db)
    both, enc = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            model.decode(model.encode(x, snr_db), snr_db)
        both.append((time.perf_counter() - t) / n * 1e3)
        t = time.perf_counter()
        for _ in range(n):
            model.encode(x, snr_db)
        enc.append((time.perf_counter() - t) / n * 1e3)
    return {"encode_decode_ms_median": round(statistics.median(both), 4), "encode_decode_ms_min": round(min(both), 4),
            "encode_ms_median": round(statistics.median(enc), 4), "runs_per_repeat": n, "repeats": repeats,
            "threads": 1}


def teacher_info() -> dict[str, object]:
    from sdr_tosc.zoo import teacher_accuracy, teacher_record

    record, path = teacher_record()
    info: dict[str, object] = {"parameters": TEACHER_PARAMS, "accuracy": teacher_accuracy(record),
                               "source": str(path.relative_to(ROOT)) if path else None}
    if record and isinstance(record.get("parameters"), int):
        info["parameters"] = record["parameters"]
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=default_student_path())
    p.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh", "rician"))
    p.add_argument("--limit", type=int, default=0, help="first N test images (default: all 10 000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--plot", type=Path, default=None, help="also write the accuracy plot (PNG)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    student, extra = load_checkpoint(a.checkpoint, with_extra=True)
    baselines = {name: load_checkpoint(baseline_path(name)) for name in ("fixed_snr", "no_kd")
                 if baseline_path(name).exists()}
    data = load_dataset("fashion-mnist", "test")
    if a.limit:
        data = data.subset(np.arange(a.limit))
    teacher = teacher_info()
    t_acc = extra.get("teacher_accuracy") if extra.get("teacher_accuracy") is not None else teacher["accuracy"]
    cfg = EvalConfig(channel=a.channel)
    t0 = time.perf_counter()
    res = evaluate(student, data, cfg, baselines, teacher_accuracy=t_acc)
    eval_s = time.perf_counter() - t0
    if a.plot:
        from sdr_tosc.semantic.evaluate import plot_accuracy

        plot_accuracy(res, a.plot)
    fl = flops(student)
    lat = latency_ms(student)
    acc = res["accuracy"]
    snrs = res["snr_db"]
    s = dict(zip(snrs, acc["student"], strict=True))
    targets = {}
    if a.channel == "awgn":
        targets["acc_25db>=0.93"] = s[25.0] >= 0.93
        if t_acc is not None:
            targets["within_1pt_of_teacher_at_25db"] = s[25.0] >= t_acc - 0.01
        targets["acc_0db>=0.91"] = s[0.0] >= 0.91
        targets["acc_-5db>=0.82"] = s[-5.0] >= 0.82
    if acc.get("fixed_snr"):
        f = dict(zip(snrs, acc["fixed_snr"], strict=True))
        targets["adaptive>=fixed_everywhere(0.3pt)"] = all(s[x] >= f[x] - 0.003 for x in snrs)
        targets["adaptive-fixed_at_-5db>=5pt"] = s[-5.0] - f[-5.0] >= 0.05
    targets["params<=teacher/20"] = student.num_parameters() <= teacher["parameters"] / 20
    targets["encode+decode<=1ms"] = lat["encode_decode_ms_median"] <= 1.0
    out = {
        "benchmark": "student",
        "checkpoint": str(a.checkpoint.relative_to(ROOT) if a.checkpoint.is_relative_to(ROOT) else a.checkpoint),
        "channel": res["channel"],
        "num_test_images": res["num_images"],
        "snr_db": snrs,
        "accuracy": acc,
        "teacher_accuracy": t_acc,
        "symbols_per_image": res["symbols_per_image"],
        "digital": res["digital"],
        "parameters": {"student": student.num_parameters(), "teacher": teacher["parameters"],
                       "ratio": round(teacher["parameters"] / student.num_parameters(), 1),
                       "baselines": {k: m.num_parameters() for k, m in baselines.items()}},
        "checkpoint_bytes": a.checkpoint.stat().st_size,
        "flops_per_image": fl,
        "latency": lat,
        "targets": targets,
        "evaluation_seconds": round(eval_s, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()
                    or platform.machine(), "note": "2 shared cores; timings vary with load"},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
