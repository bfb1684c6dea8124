"""``sdr-tosc cache``: run a teacher once over a data set and store its compressed knowledge on disk."""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path
from typing import Any

from .common import add_json_flag, write_result

HELP = "build (or verify) the pre-stored compressed teacher cache used for fast distillation"
EXAMPLES = """
  sdr-tosc cache --out artifacts/cache/fmnist                       # default teacher, Fashion-MNIST train
  sdr-tosc cache --replays 4 --out sdr_tosc/zoo/cache/fashion-mnist-effnetlite0
  sdr-tosc cache --finetune-teacher 4 --replays 4 --out artifacts/cache/fmnist   # fine-tune, then cache
  sdr-tosc cache --finetune-teacher 3 --finetune-from T1.safetensors --finetune-lr 3e-4 --label-smoothing 0 ...
  sdr-tosc cache --teacher google/vit-base-patch16-224 --finetune-teacher 3 --finetune-lr 1e-4 --out artifacts/cache/vit
  sdr-tosc cache --teacher google/vit-base-patch16-224 --features-only --out artifacts/cache/vit-features
  sdr-tosc cache --teacher ./my-clip-vision --feature-dim 64 --out artifacts/cache/clip   # features only
  sdr-tosc cache --shard 0/4 --out /shared/cache ...   # one of 4 machines; 'auto' reads RANK/WORLD_SIZE
  sdr-tosc cache --limit 512 --out /tmp/c --json -     # quick run on the first 512 images
  sdr-tosc cache --device cuda --batch-size 512 --teacher google/vit-base-patch16-224 ...   # teacher on a GPU
  torchrun --standalone --nproc-per-node 8 $(which sdr-tosc) cache --shard auto --device cuda --out /shared/c
  sdr-tosc cache --verify sdr_tosc/zoo/cache/fashion-mnist-effnetlite0
  scripts/build_default_cache.sh                       # the shipped default cache, end to end
"""

log = logging.getLogger(__name__)

ZOO = Path(__file__).resolve().parent.parent / "zoo"
ARTIFACTS = Path("artifacts") / "teacher"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="fashion-mnist", help="data set name (default fashion-mnist; see datasets.py)")
    p.add_argument("--split", default="train", choices=("train", "test"), help="split to cache (default train)")
    p.add_argument("--teacher", metavar="SPEC", default=None,
                   help="efficientnet-lite0 | a teacher .safetensors | a transformers hub id or local folder "
                        "(default: the fine-tuned default teacher from the zoo or artifacts/teacher, else "
                        "efficientnet-lite0)")
    p.add_argument("--out", type=Path, default=None, help="cache folder (default artifacts/cache/<dataset>-<teacher>)")
    p.add_argument("--replays", type=int, default=1, help="teacher passes: 0 = clean, 1.. = seeded augmentation (default 1)")
    p.add_argument("--topk", type=int, default=10, help="logits kept per sample (default 10; 0 = none)")
    p.add_argument("--feature-dim", type=int, default=64, help="PCA components of the features kept (default 64; 0 = none)")
    p.add_argument("--shard", default="0/1", metavar="i/N",
                   help="build the i-th of N parts (several machines/ranks fill one folder); 'auto' = RANK/WORLD_SIZE")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the first N samples (quick runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the augmentation replays (default 0)")
    p.add_argument("--pad", type=int, default=2, help="augmentation: largest shift in pixels (default 2)")
    p.add_argument("--chunk-size", type=int, default=4096, help="samples per shard file (default 4096)")
    p.add_argument("--pca-samples", type=int, default=4096, help="clean samples the PCA is fitted on (default 4096)")
    p.add_argument("--input-size", type=int, default=64, help="input size of an efficientnet-lite0 teacher (default 64)")
    p.add_argument("--finetune-teacher", type=int, default=0, metavar="EPOCHS",
                   help="first fine-tune the default teacher for EPOCHS epochs (resumes) and cache with it")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="with --finetune-teacher and a transformers teacher: train only the new head")
    p.add_argument("--features-only", action="store_true",
                   help="cache only the features of a transformers classifier whose classes differ from the data "
                        "set's (otherwise refused: fine-tune it with --finetune-teacher)")
    p.add_argument("--finetune-from", type=Path, default=None, metavar="TEACHER",
                   help="with --finetune-teacher: start from this fine-tuned teacher file instead of the ImageNet "
                        "weights (a second stage with a fresh schedule)")
    p.add_argument("--finetune-lr", type=float, default=1e-3, help="peak learning rate of --finetune-teacher (default 1e-3)")
    p.add_argument("--label-smoothing", type=float, default=0.1,
                   help="label smoothing of --finetune-teacher (default 0.1; 0 keeps the teacher's soft labels sharp)")
    p.add_argument("--teacher-out", type=Path, default=None,
                   help="where --finetune-teacher writes the teacher (default artifacts/teacher/efficientnet-lite0-<dataset>.safetensors)")
    p.add_argument("--export-teacher", type=Path, default=None, metavar="PATH",
                   help="save the (fine-tuned efficientnet) teacher as fp16 to PATH (+ PATH.json with its test "
                        "accuracy) and build the cache with that copy, so the shipped teacher and cache agree")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="where the teacher runs (and is fine-tuned): auto (CUDA when available, else CPU), cpu, "
                        "cuda or cuda:N; under torchrun (--shard auto) each rank takes cuda:LOCAL_RANK")
    p.add_argument("--no-amp", dest="amp", action="store_false",
                   help="no mixed precision on CUDA (CPU always runs in float32)")
    p.add_argument("--verify", type=Path, default=None, metavar="DIR", help="check an existing cache and print its summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_json_flag(p)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "teacher"


def default_teacher_file(dataset: str) -> Path | None:
    """The fine-tuned default teacher for ``dataset``, if one is shipped (zoo) or was trained here (artifacts)."""
    name = f"efficientnet-lite0-{_slug(dataset)}.safetensors"
    for cand in (ZOO / f"teacher-{name}", ARTIFACTS / name):
        if cand.exists():
            return cand
    return None


def _epochs_done(teacher_file: Path) -> int:
    hist = teacher_file.with_name(teacher_file.name + ".history.json")
    if not (teacher_file.exists() and hist.exists()):
        return 0
    from ..fileio import read_json  # noqa: PLC0415

    return len(read_json(hist, "teacher history").get("epochs", []))


def export_teacher(src: str | Path, dst: str | Path, dataset: str = "fashion-mnist") -> Path:
    """Copy a fine-tuned teacher file as fp16 to ``dst`` and write ``dst`` with ``.json``: its training history,
    the fp16 copy's test accuracy (measured here), size and sha256. Skipped when ``dst`` is already that copy."""
    import torch  # noqa: PLC0415

    from ..fileio import atomic_write_json, read_json, sha256_file  # noqa: PLC0415
    from ..semantic.datasets import load_dataset  # noqa: PLC0415
    from ..semantic.teacher_finetune import evaluate_teacher  # noqa: PLC0415
    from ..semantic.teachers import load_teacher_file, save_teacher  # noqa: PLC0415

    src, dst = Path(src), Path(dst)
    info_path = dst.with_suffix(".json")
    src_sha = sha256_file(src)
    if dst.exists() and info_path.exists():
        info = read_json(info_path, "teacher info")
        if info.get("source_sha256") == src_sha and info.get("sha256") == sha256_file(dst):
            return dst
    t = load_teacher_file(src)
    history = getattr(t, "history", [])
    save_teacher(t, dst, extra={"history": history}, dtype=torch.float16)
    t16 = load_teacher_file(dst)
    acc = evaluate_teacher(t16, load_dataset(dataset, "test"))
    atomic_write_json(info_path, {
        "file": dst.name, "arch": "efficientnet-lite0", "dataset": dataset, "dtype": "float16",
        "input_size": t16.input_size, "num_classes": t16.num_classes, "parameters": t16.describe()["parameters"],
        "test_acc": acc, "test_acc_per_epoch_fp32": [e.get("test_acc") for e in history],
        "history": history, "bytes": dst.stat().st_size, "sha256": sha256_file(dst), "source_sha256": src_sha,
        "made_by": "scripts/build_default_cache.sh",
    })
    log.warning("exported %s (fp16, test accuracy %.4f)", dst, acc)
    return dst


def _print_summary(s: dict[str, Any]) -> None:
    t, d = s["teacher"], s["dataset"]
    print(f"teacher cache {s['path']}")
    print(f"  teacher   {t['teacher_id']} ({t.get('parameters', 0) / 1e6:.2f} M params, "
          f"{t.get('num_classes') or 'no'} classes, {t.get('feature_dim')}-d features"
          + (f", test acc {t['test_acc']:.4f}" if t.get("test_acc") else "") + ")")
    print(f"  dataset   {d['name']}/{d['split']}: {d['num_samples']} images {tuple(d['image_shape'])}")
    print(f"  stored    {s['replays']} replay(s), top-{s['topk']} logits, {s['feature_dim']}-d int8 PCA features"
          + (f" ({s['pca_explained_variance_ratio']:.1%} of the variance)" if s.get("pca_explained_variance_ratio") else ""))
    print(f"  size      {s['total_bytes'] / 1e6:.2f} MB in {s['shards']} shard(s); "
          f"{s['bytes_per_sample_per_replay']} B per sample per replay "
          f"({s['file_bytes_per_sample_per_replay']} B with file headers)")
    if s.get("build_seconds_per_sample"):
        print(f"  built at  {s['build_seconds_per_sample'] * 1e3:.2f} ms per sample and replay")


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from ..semantic.cache import TeacherCache  # noqa: PLC0415
    from ..semantic.cache_build import build_cache, parse_shard  # noqa: PLC0415
    from ..semantic.datasets import load_dataset  # noqa: PLC0415
    from ..semantic.teacher_finetune import finetune_teacher  # noqa: PLC0415
    from ..semantic.teachers import DEFAULT_TEACHER, load_teacher  # noqa: PLC0415

    if args.verify is not None:
        t0 = time.perf_counter()
        cache = TeacherCache.open(args.verify, verify=True)
        summary = cache.summary()
        summary["verify_seconds"] = round(time.perf_counter() - t0, 3)
        _print_summary(summary)
        print("  verified  manifest, sha256 and shapes of every file: OK")
        write_result(args.json, summary)
        return 0

    from ..semantic.runtime import env_world, resolve_device  # noqa: PLC0415

    shard = parse_shard(args.shard)
    _, world, local_rank = env_world()
    device = resolve_device(args.device, local_rank=local_rank if world > 1 else None)
    if world > 1 and args.finetune_teacher:
        raise ValueError("--finetune-teacher under torchrun would have every rank fine-tune into the same file: "
                         "fine-tune once in a single process (on one GPU), then run the sharded cache build with "
                         "--teacher set to the fine-tuned teacher")
    for name in ("replays", "batch_size", "chunk_size", "pca_samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.topk < 0 or args.feature_dim < 0 or args.limit < 0 or args.finetune_teacher < 0:
        raise ValueError("--topk, --feature-dim, --limit and --finetune-teacher must be >= 0")
    if not args.finetune_lr > 0:
        raise ValueError(f"--finetune-lr must be > 0, got {args.finetune_lr}")
    if not 0 <= args.label_smoothing < 1:
        raise ValueError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.finetune_from is not None:
        if not args.finetune_teacher:
            raise ValueError("--finetune-from needs --finetune-teacher EPOCHS")
        if not args.finetune_from.is_file():
            raise FileNotFoundError(f"--finetune-from: teacher file not found: {args.finetune_from}")
    # load and check everything before anything is written
    data = load_dataset(args.dataset, args.split)
    if args.limit:
        if args.limit > len(data):
            raise ValueError(f"--limit {args.limit} exceeds the {len(data)} images of {data.name}/{data.split}")
        data = data.subset(np.arange(args.limit))
    progress = not args.no_progress
    spec = args.teacher
    hf_finetune = bool(args.finetune_teacher and spec not in (None, DEFAULT_TEACHER))
    if hf_finetune:
        from ..semantic.hf_finetune import finetune_hf_teacher  # noqa: PLC0415

        if spec.endswith(".safetensors") or args.finetune_from is not None:
            raise ValueError("--finetune-teacher with --teacher fine-tunes a transformers classifier (hub id or "
                             "folder); a .safetensors teacher or --finetune-from is for the default teacher")
        out_t = args.teacher_out or ARTIFACTS / f"{_slug(Path(spec).name)}-{_slug(args.dataset)}"
        train = load_dataset(args.dataset, "train")
        if args.limit:
            train = train.subset(np.arange(min(args.limit, len(train))))
        test = load_dataset(args.dataset, "test")
        if args.limit:
            test = test.subset(np.arange(min(args.limit, len(test))))
        finetune_hf_teacher(spec, train, test, out_t, epochs=args.finetune_teacher, lr=args.finetune_lr,
                            label_smoothing=args.label_smoothing, freeze_backbone=args.freeze_backbone,
                            seed=args.seed, device=device, amp=args.amp, progress=progress)
        spec = str(out_t)
    elif args.finetune_teacher:
        out_t = args.teacher_out or ARTIFACTS / f"efficientnet-lite0-{_slug(args.dataset)}.safetensors"
        train = load_dataset(args.dataset, "train")
        test = load_dataset(args.dataset, "test")
        if _epochs_done(out_t) >= args.finetune_teacher:
            log.warning("%s is already fine-tuned for %d epochs: using it", out_t, _epochs_done(out_t))
        else:
            log.warning("fine-tuning the default teacher for %d epochs into %s (resumes)", args.finetune_teacher, out_t)
            finetune_teacher(train, test, out_t, epochs=args.finetune_teacher, input_size=args.input_size,
                             progress=progress, lr=args.finetune_lr, label_smoothing=args.label_smoothing,
                             init=args.finetune_from, device=device, amp=args.amp)
        spec = str(out_t)
    if spec is None:
        found = default_teacher_file(args.dataset)
        if found is not None:
            spec = str(found)
        else:
            spec = DEFAULT_TEACHER
            log.warning("no fine-tuned teacher for %s found (zoo or %s): caching the ImageNet efficientnet-lite0 "
                        "with an untrained head; use --finetune-teacher EPOCHS for useful logits", args.dataset, ARTIFACTS)
    if args.export_teacher is not None:
        if not spec.endswith(".safetensors"):
            raise ValueError("--export-teacher needs a fine-tuned teacher file (--teacher FILE or --finetune-teacher)")
        spec = str(export_teacher(spec, args.export_teacher, args.dataset))
    teacher = load_teacher(spec, data.num_classes, input_size=args.input_size, features_only=args.features_only)
    out = args.out or Path("artifacts") / "cache" / f"{_slug(data.name)}-{data.split}-{_slug(Path(spec).stem)}"
    history = getattr(teacher, "history", None)
    extra = {"teacher_spec": spec}
    if history:
        extra["teacher_test_acc_per_epoch"] = [e.get("test_acc") for e in history]
    t0 = time.perf_counter()
    build_cache(teacher, data, out, replays=args.replays, topk=args.topk, feature_dim=args.feature_dim, shard=shard,
                batch_size=args.batch_size, seed=args.seed, progress=progress, pad=args.pad,
                chunk_size=args.chunk_size, pca_samples=args.pca_samples, extra=extra, device=device, amp=args.amp)
    seconds = time.perf_counter() - t0
    try:
        cache = TeacherCache.open(out, verify=False)
    except ValueError as exc:  # other shards still to come
        if "incomplete" not in str(exc):
            raise
        print(f"shard {shard[0]}/{shard[1]} of the teacher cache {out} done in {seconds:.1f} s; "
              "the cache is complete once every shard has run")
        write_result(args.json, {"path": str(out), "shard": list(shard), "complete": False, "seconds": seconds})
        return 0
    summary = cache.summary()
    summary["seconds"] = round(seconds, 2)
    summary["complete"] = True
    _print_summary(summary)
    write_result(args.json, summary)
    return 0
