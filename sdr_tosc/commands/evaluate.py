"""``sdr-tosc evaluate``: accuracy vs SNR of a student with the baselines, as JSON and a plot."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .common import add_json_flag, parse_range, write_result

HELP = "accuracy vs SNR of a student checkpoint, with teacher, fixed-SNR, no-KD and digital baselines"
EXAMPLES = """
  sdr-tosc evaluate --snr-db -5:25:5 --channel awgn --json out.json --plot out.png   # the shipped student
  sdr-tosc evaluate --checkpoint runs/s.safetensors --channel rayleigh --plot rayleigh.png
  sdr-tosc evaluate --checkpoint runs/s.safetensors --fixed-snr-checkpoint runs/fixed.safetensors \\
                    --no-kd-checkpoint runs/nokd.safetensors --snr-db 0,10,20 --limit 1000 --json -
  sdr-tosc evaluate --no-baselines --no-digital --limit 500 --snr-db 10     # just the student, quickly
  torchrun --standalone --nproc-per-node 8 $(which sdr-tosc) evaluate --device cuda --json out.json  # sharded
"""

log = logging.getLogger(__name__)


def _snr_list(text: str) -> list[float]:
    return parse_range(text, "--snr-db")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=None, metavar="CKPT",
                   help="student checkpoint (default: the zoo's default student)")
    p.add_argument("--snr-db", type=_snr_list, default=None, metavar="RANGE",
                   help="SNRs in dB: START:STOP:STEP (stop included), a list a,b,c, or one value (default -5:25:5)")
    p.add_argument("--channel", choices=("awgn", "rayleigh", "rician"), default="awgn")
    p.add_argument("--fixed-snr-checkpoint", type=Path, default=None, metavar="CKPT",
                   help="baseline without the adaptive module trained at 10 dB (default: the zoo's)")
    p.add_argument("--no-kd-checkpoint", type=Path, default=None, metavar="CKPT",
                   help="baseline trained without KD (default: the zoo's)")
    p.add_argument("--no-baselines", action="store_true", help="skip the fixed-SNR and no-KD curves")
    p.add_argument("--no-digital", action="store_true", help="skip the separate source/channel coding curve")
    p.add_argument("--digital-bits", type=int, default=4, help="bits per latent value in the digital baseline (4)")
    p.add_argument("--digital-modulation", choices=("bpsk", "qpsk", "16qam", "64qam"), default="16qam")
    p.add_argument("--teacher-accuracy", type=float, default=None, metavar="ACC",
                   help="the teacher's noise-free accuracy (fraction); default: recorded with the checkpoint / cache")
    p.add_argument("--teacher", default=None, metavar="SPEC",
                   help="measure the teacher's noise-free accuracy on the same test images (slow on CPU)")
    p.add_argument("--dataset", default=None, help="test data set (default: the one the student was trained on)")
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N test images (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="where the student curves (and --teacher) run: auto (CUDA when available, else CPU), cpu, "
                        "cuda or cuda:N; the digital baseline always runs on the CPU. Under torchrun every rank "
                        "scores its contiguous share of the test images and rank 0 reports the whole")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="write the accuracy-vs-SNR plot")
    add_json_flag(p)


def _teacher_accuracy(args: argparse.Namespace, extra: dict[str, Any]) -> tuple[float | None, str | None]:
    if args.teacher_accuracy is not None:
        if not 0.0 <= args.teacher_accuracy <= 1.0:
            raise ValueError(f"--teacher-accuracy {args.teacher_accuracy}: give a fraction in [0, 1]")
        return args.teacher_accuracy, "--teacher-accuracy"
    if extra.get("teacher_accuracy") is not None:
        return float(extra["teacher_accuracy"]), "recorded in the student checkpoint (from its teacher cache)"
    if extra.get("cache"):  # distilled from a cache that recorded no accuracy: the zoo teacher's would mislead
        return None, None
    from ..zoo import teacher_accuracy, teacher_record  # noqa: PLC0415

    record, path = teacher_record()
    acc = teacher_accuracy(record)
    return (acc, str(path)) if acc is not None else (None, None)


def run(args: argparse.Namespace) -> int:
    from ..semantic.evaluate import EvalConfig  # noqa: PLC0415

    if args.limit < 0:
        raise ValueError("--limit must be >= 0")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise ValueError(f"--plot {args.plot}: the plot is written as PNG; give a name ending in .png")
    config = EvalConfig(snr_db=tuple(args.snr_db or (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)), channel=args.channel,
                        limit=args.limit, seed=args.seed, digital=not args.no_digital,
                        digital_bits=args.digital_bits, digital_modulation=args.digital_modulation)
    from ..semantic.runtime import distributed_context  # noqa: PLC0415

    with distributed_context(args.device) as (dist, device):
        return _run(args, config, dist, device)


def _run(args: argparse.Namespace, config: Any, dist: Any, device: Any) -> int:
    import dataclasses  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from ..semantic.checkpoint import load_checkpoint  # noqa: PLC0415
    from ..semantic.datasets import load_dataset  # noqa: PLC0415
    from ..semantic.evaluate import evaluate, plot_accuracy  # noqa: PLC0415
    from ..zoo import baseline_path, default_student_path, require  # noqa: PLC0415

    torch.set_num_threads(max(1, args.threads))
    ckpt = args.checkpoint or require(default_student_path(), "the default student",
                                      "sdr-tosc train (see sdr_tosc/zoo/README.md)")
    student, extra = load_checkpoint(ckpt, with_extra=True)
    baselines: dict[str, Any] = {}
    paths: dict[str, str | None] = {"student": str(ckpt)}
    if not args.no_baselines:
        for name, given in (("fixed_snr", args.fixed_snr_checkpoint), ("no_kd", args.no_kd_checkpoint)):
            path = given or baseline_path(name)
            if given is None and not path.exists():
                log.warning("baseline %s not found at %s; its curve is left out", name, path)
                paths[name] = None
                continue
            baselines[name] = load_checkpoint(path)
            paths[name] = str(path)
    name = args.dataset or (extra.get("dataset") or {}).get("name") or "fashion-mnist"
    data = load_dataset(name, "test")
    if args.limit:
        data = data.subset(np.arange(min(args.limit, len(data))))
    n_all = len(data)
    shard, shard_config = data, config
    if dist.active:  # this rank's contiguous share; its own noise (seed offset by the rank)
        if n_all < dist.world_size:
            raise ValueError(f"{n_all} test images cannot be shared by {dist.world_size} processes")
        lo, hi = n_all * dist.rank // dist.world_size, n_all * (dist.rank + 1) // dist.world_size
        shard = data.subset(np.arange(lo, hi))
        shard_config = dataclasses.replace(config, seed=config.seed + 1000003 * dist.rank)
    teacher_acc, source = _teacher_accuracy(args, extra)
    measured_teacher = None
    if args.teacher:
        from ..semantic.teacher_finetune import evaluate_teacher  # noqa: PLC0415
        from ..semantic.teachers import load_teacher  # noqa: PLC0415

        measured_teacher = evaluate_teacher(load_teacher(args.teacher, data.num_classes).to(device), shard)
        teacher_acc = measured_teacher
        source = f"measured here on the same {n_all} test images ({args.teacher})"
    if dist.is_main:
        print(f"evaluating {ckpt} on {n_all} {name} test images, {config.channel}, SNR {list(config.snr_db)} dB"
              + (f", {dist.world_size} processes" if dist.active else ""))
    result = evaluate(student, shard, shard_config, baselines, teacher_accuracy=teacher_acc,
                      progress=not dist.active, device=device)
    if dist.active:
        result = _merge_shards(result, dist, len(shard), n_all, measured_teacher is not None)
        result["seed"] = config.seed
        if dist.is_main:
            for curve, accs in result["accuracy"].items():
                if accs is not None:
                    print(f"  {curve}: " + " ".join(f"{s:g}dB={a:.4f}" for s, a in zip(result["snr_db"], accs,
                                                                                        strict=True)))
    if not dist.is_main:
        return 0
    result["world_size"] = dist.world_size
    result["teacher_accuracy_source"] = source
    result["checkpoints"] = paths
    if teacher_acc is not None:
        print(f"  teacher (noise-free): {teacher_acc:.4f}")
    if args.plot is not None:
        plot_accuracy(result, args.plot)
        print(f"plot written to {args.plot}")
    write_result(args.json, result, config)
    return 0


def _merge_shards(result: dict[str, Any], dist: Any, n_local: int, n_all: int, teacher_measured: bool) -> dict[str, Any]:
    """Every rank's accuracies (fractions of its share) -> fractions of all ``n_all`` images (one all-reduce).

    Every rank has the same curves in the same order (same flags), so the flat lists line up."""
    names = [k for k, v in result["accuracy"].items() if v is not None]
    flat = [a * n_local for k in names for a in result["accuracy"][k]]
    extra = []
    if teacher_measured:
        extra.append(result["teacher_accuracy"] * n_local)
    if result.get("digital"):
        extra.append(result["digital"]["error_free_accuracy"] * n_local)
    summed = dist.all_reduce_sum([*flat, *extra, float(n_local)])
    if round(summed[-1]) != n_all:
        raise RuntimeError(f"the ranks scored {summed[-1]:.0f} images, not {n_all}")
    out = dict(result)
    acc = dict(result["accuracy"])
    i = 0
    for k in names:
        m = len(acc[k])
        acc[k] = [v / n_all for v in summed[i:i + m]]
        i += m
    out["accuracy"] = acc
    if teacher_measured:
        out["teacher_accuracy"] = summed[i] / n_all
        i += 1
    if result.get("digital"):
        out["digital"] = {**result["digital"], "error_free_accuracy": summed[i] / n_all}
    out["num_images"] = n_all
    return out
