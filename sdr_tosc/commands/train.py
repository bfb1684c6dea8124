"""``sdr-tosc train``: distil the semantic student from a teacher cache (or train it on labels only)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .common import add_config_flag, add_json_flag, write_result

HELP = "distil the channel-adaptive semantic student from the pre-stored teacher cache"
EXAMPLES = """
  sdr-tosc train --out runs/student.safetensors                         # default cache from the zoo
  sdr-tosc train --cache sdr_tosc/zoo/cache/fashion-mnist-effnetlite0 --out runs/s.safetensors --epochs 12
  sdr-tosc train --no-kd --out runs/nokd.safetensors                    # labels only (baseline)
  sdr-tosc train --no-adaptive --fixed-snr-db 10 --out runs/fixed.safetensors   # no adaptive module, one SNR
  sdr-tosc train --label-fraction 0.05 --out runs/kd5.safetensors       # KD on all images, 5% labels
  sdr-tosc train --config train.toml --out runs/s.safetensors --json -  # settings from TOML ([train] table)
  sdr-tosc train --cache /tmp/c --limit 512 --epochs 1 --out /tmp/s.safetensors   # with 'cache --limit 512'
  sdr-tosc train --model cifar-cnn --dataset cifar10 --cache artifacts/cache/cifar10-vit --out runs/c10.safetensors
  sdr-tosc train --device cuda --out runs/s.safetensors                 # one GPU (mixed precision)
  sdr-tosc train --tensorboard runs/tb --out runs/s.safetensors          # then: tensorboard --logdir runs/tb
  torchrun --standalone --nproc-per-node 8 $(which sdr-tosc) train --device cuda --out runs/s.safetensors
  # interrupted? run the same command again: it resumes after the last finished epoch
"""

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache", type=Path, default=None, metavar="DIR",
                   help="teacher cache folder (default: the zoo's default cache)")
    p.add_argument("--out", type=Path, required=True, metavar="CKPT", help="student checkpoint to write (.safetensors)")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="student architecture from the registry (default fmnist-cnn; e.g. cifar-cnn)")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N; under torchrun each rank "
                        "takes cuda:LOCAL_RANK")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="no mixed precision on CUDA (CPU always trains in float32)")
    p.add_argument("--dataset", default=None, help="training data set (default: the one the cache was built on, "
                                                   "else fashion-mnist)")
    p.add_argument("--no-kd", dest="kd", action="store_const", const=False, default=None,
                   help="train on labels only (no teacher knowledge)")
    p.add_argument("--no-adaptive", dest="adaptive", action="store_const", const=False, default=None,
                   help="no channel-adaptive module (no SNR input, fixed symbol count)")
    p.add_argument("--fixed-snr-db", type=float, default=None, metavar="DB", help="train at this one SNR")
    p.add_argument("--snr-range-db", default=None, metavar="LO:HI", help="training SNR range (default -5:25)")
    p.add_argument("--label-fraction", type=float, default=None, metavar="F",
                   help="fraction of labelled training images (KD still uses all), e.g. 0.05")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--beta", type=float, default=None, help="weight of the IB rate term (default 1e-3)")
    p.add_argument("--temperature", type=float, default=None, help="KD temperature (default 1)")
    p.add_argument("--kd-weight", type=float, default=None)
    p.add_argument("--rayleigh-prob", type=float, default=None, help="share of samples through Rayleigh fading (0.25)")
    p.add_argument("--num-symbols", type=int, default=None, help="maximum complex symbols per image (default: the model's, 64 for fmnist-cnn, 40 for fmnist-cnn-fixed)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2)")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="train on the first N images only (quick runs); with a cache, the cache must have been "
                        "built with 'sdr-tosc cache --limit N' (the same first N images)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out made with other settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                   help="log losses, accuracy and learning rate to TensorBoard in DIR (tensorboard --logdir DIR)")
    add_config_flag(p)
    add_json_flag(p)


def _snr_range(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"--snr-range-db {text!r}: use LO:HI in dB, e.g. -5:25") from None
    if not lo < hi:
        raise ValueError(f"--snr-range-db {text!r}: LO must be below HI")
    return lo, hi


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from ..config import load_config  # noqa: PLC0415
    from ..semantic.datasets import load_dataset  # noqa: PLC0415
    from ..semantic.distill import TrainConfig, train  # noqa: PLC0415
    from ..zoo import default_cache_path  # noqa: PLC0415

    lo, hi = _snr_range(args.snr_range_db)
    overrides: dict[str, Any] = {
        "kd": args.kd, "adaptive": args.adaptive, "fixed_snr_db": args.fixed_snr_db, "snr_min_db": lo,
        "snr_max_db": hi, "label_fraction": args.label_fraction, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "beta": args.beta, "temperature": args.temperature,
        "kd_weight": args.kd_weight, "rayleigh_prob": args.rayleigh_prob, "num_symbols": args.num_symbols,
        "seed": args.seed, "threads": args.threads, "model": args.model,
    }
    config = load_config(TrainConfig, args.config, overrides, section="train")
    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out {args.out}: the checkpoint name must end in .safetensors")
    cache = None
    cache_dir = args.cache
    if cache_dir is None and config.kd:
        cache_dir = default_cache_path()
        if not (cache_dir / "manifest.json").exists():
            raise FileNotFoundError(f"no --cache given and the default cache {cache_dir} is missing; build it with "
                                    "'sdr-tosc cache' (see sdr_tosc/zoo/README.md) or train with --no-kd")
    if cache_dir is not None:
        from ..semantic.cache import TeacherCache  # noqa: PLC0415

        cache = TeacherCache.open(cache_dir)
    name = args.dataset or (cache.dataset_name if cache is not None else "fashion-mnist")
    data = load_dataset(name, cache.dataset_split if cache is not None else "train")
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0, got {args.limit}")
    if args.limit:
        if cache is not None and args.limit != cache.num_samples:
            held = ("all the" if cache.num_samples == len(data) else "the first") + f" {cache.num_samples}"
            fix = "drop --limit" if cache.num_samples == len(data) else f"pass --limit {cache.num_samples}"
            raise ValueError(f"--limit {args.limit}: the teacher cache {cache.path} holds {held} samples of "
                             f"{cache.dataset_name}; {fix}, or build a cache with 'sdr-tosc cache --limit "
                             f"{args.limit}' for a quick run")
        if args.limit > len(data):
            raise ValueError(f"--limit {args.limit} exceeds the {len(data)} images of {data.name}/{data.split}")
        data = data.subset(np.arange(args.limit))
        if cache is not None:  # a limited cache must hold exactly these images
            cache.check_dataset(data, full=True)
    elif cache is not None and cache.num_samples < len(data):
        raise ValueError(f"the teacher cache {cache.path} holds only the first {cache.num_samples} of the {len(data)} "
                         f"images of {data.name}/{data.split} (built with --limit); pass --limit {cache.num_samples}")
    test = None
    try:
        test = load_dataset(name, "test")
    except (ValueError, FileNotFoundError):
        log.info("no test split of %s for the per-epoch log", name)
    from ..semantic.runtime import distributed_context  # noqa: PLC0415

    with distributed_context(args.device) as (dist, device):
        result = train(config, cache, data, args.out, progress=not args.no_progress and dist.is_main, test=test,
                       overwrite=args.overwrite, device=device, dist=dist, amp=args.amp,
                       tensorboard=args.tensorboard)
    if not dist.is_main:  # rank 0 reports (and writes --json)
        return 0
    last = result["history"][-1] if result["history"] else {}
    print(f"student written to {args.out} ({result.get('parameters', '?')} parameters); last epoch: "
          + ", ".join(f"{k}={v}" for k, v in last.items() if k in ("epoch", "loss", "train_acc", "test_acc_awgn")))
    write_result(args.json, {"out": str(args.out), **result, "cache": str(cache_dir) if cache_dir else None},
                 config)
    return 0
