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
                        "cuda or cuda:N; the digital baseline always runs on the CPU")
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
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from ..semantic.checkpoint import load_checkpoint  # noqa: PLC0415
    from ..semantic.datasets import load_dataset  # noqa: PLC0415
    from ..semantic.evaluate import EvalConfig, evaluate, plot_accuracy  # noqa: PLC0415
    from ..zoo import baseline_path, default_student_path, require  # noqa: PLC0415

    if args.limit < 0:
        raise ValueError("--limit must be >= 0")
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise ValueError(f"--plot {args.plot}: the plot is written as PNG; give a name ending in .png")
    config = EvalConfig(snr_db=tuple(args.snr_db or (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)), channel=args.channel,
                        limit=args.limit, seed=args.seed, digital=not args.no_digital,
                        digital_bits=args.digital_bits, digital_modulation=args.digital_modulation)
    from ..semantic.runtime import resolve_device  # noqa: PLC0415

    device = resolve_device(args.device)
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
    teacher_acc, source = _teacher_accuracy(args, extra)
    if args.teacher:
        from ..semantic.teacher_finetune import evaluate_teacher  # noqa: PLC0415
        from ..semantic.teachers import load_teacher  # noqa: PLC0415

        teacher_acc = evaluate_teacher(load_teacher(args.teacher, data.num_classes).to(device), data)
        source = f"measured here on the same {len(data)} test images ({args.teacher})"
    print(f"evaluating {ckpt} on {len(data)} {name} test images, {config.channel}, SNR {list(config.snr_db)} dB")
    result = evaluate(student, data, config, baselines, teacher_accuracy=teacher_acc, progress=True, device=device)
    result["teacher_accuracy_source"] = source
    result["checkpoints"] = paths
    if teacher_acc is not None:
        print(f"  teacher (noise-free): {teacher_acc:.4f}")
    if args.plot is not None:
        plot_accuracy(result, args.plot)
        print(f"plot written to {args.plot}")
    write_result(args.json, result, config)
    return 0
