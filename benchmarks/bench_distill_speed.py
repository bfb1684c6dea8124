"""Fast distillation: a distillation epoch with teacher targets read from the pre-stored cache vs the same
epoch with the teacher run online (standard KD), measured in one run. Prints one JSON object.

Both paths train the same student (same initial weights), on the same batches (sample indices, cache replay
and its augmentation seeds, SNRs and channel noise) with the same loss (``losses.ib_loss``: task CE +
``tau^2`` KD KL + ``beta`` rate). The only difference: the cached path reads ``log_soft_targets`` from the
cache; the online path runs the teacher on the (identically augmented) images. To keep the run short a
fixed number of batches is timed per path (interleaved, after warm-up batches; medians) and extrapolated to an epoch
of ``epoch_samples`` images; the JSON says so.

Teachers: (a) the default EfficientNet-Lite0 at 64 px (the fine-tuned zoo teacher if present) with the
shipped cache (``--cache``; without one a small cache is built here); (b) a ViT-base-sized ``transformers``
model (``ViTConfig()`` defaults: hidden 768, 12 layers, 224 px, random init, in memory) with a cache built
here over a few samples (its cached path costs the same as (a): same K, C, D, student).

``--device cuda`` runs students and teachers on a GPU (mixed precision as ``sdr-tosc train``: autocast in
bfloat16 where supported); timings then wait for the GPU (``torch.cuda.synchronize``) before each clock read.

Usage::

    .venv/bin/python benchmarks/bench_distill_speed.py                      # ~3-6 min on 2 cores
    .venv/bin/python benchmarks/bench_distill_speed.py --batches 10 --no-vit  # quicker
    .venv/bin/python benchmarks/bench_distill_speed.py --device cuda --with-224 --vit-batches 20   # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sdr_tosc.semantic.cache import TeacherCache, augment_from_seeds, build_cache  # noqa: E402
from sdr_tosc.semantic.datasets import load_dataset  # noqa: E402
from sdr_tosc.semantic.runtime import autocast, resolve_device  # noqa: E402
from sdr_tosc.semantic.teachers import Teacher, load_teacher  # noqa: E402

ZOO = ROOT / "sdr_tosc" / "zoo"
DEFAULT_CACHE = ZOO / "cache" / "fashion-mnist-effnetlite0"
TEMPERATURE = 4.0


# ---------------------------------------------------------------------------------------------- student + loss
class _FallbackStudent(nn.Module):
    """Used only when sdr_tosc.semantic.student is not available: a small CNN classifier."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 32, 5, 2, 2), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, images, snr_db=None, channel="awgn", generator=None):
        x = images.permute(0, 3, 1, 2).float().div(255.0).sub(0.5)
        return {"logits": self.net(x)}


def make_student():
    try:
        from sdr_tosc.semantic.losses import ib_loss  # noqa: PLC0415
        from sdr_tosc.semantic.student import create_model  # noqa: PLC0415

        model = create_model("fmnist-cnn")
        name = "sdr_tosc.semantic.student fmnist-cnn"
        loss_fn = ib_loss
    except ImportError:
        model, name = _FallbackStudent(), "benchmark fallback CNN"

        def loss_fn(out, labels, teacher_log_probs=None, topk_index=None, temperature=TEMPERATURE, **_):
            logits = out["logits"]
            kd = F.kl_div(F.log_softmax(logits / temperature, 1), teacher_log_probs, log_target=True,
                          reduction="batchmean") * temperature ** 2
            return {"loss": F.cross_entropy(logits, labels) + kd}
    return model, name, loss_fn


DEVICE = torch.device("cpu")


def to_dev(*tensors):
    return [None if t is None else t.to(DEVICE, non_blocking=True) for t in tensors]


def sync() -> None:
    """Wait for the GPU's queued work so that the clock measures it (a no-op on CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


class Trainer:
    """One student + optimiser; ``step`` = forward through the channel, loss, backward, AdamW step."""

    def __init__(self, model: nn.Module, loss_fn, seed: int = 0):
        self.model = model.to(DEVICE).train()
        self.loss_fn = loss_fn
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.gen = torch.Generator(device=DEVICE).manual_seed(seed)

    def step(self, images, labels, snr_db, teacher_log_probs, topk_index):
        images, labels, snr_db, teacher_log_probs, topk_index = to_dev(images, labels, snr_db, teacher_log_probs,
                                                                       topk_index)
        with autocast(DEVICE):
            out = self.model(images, snr_db, channel="awgn", generator=self.gen)
            out = {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
            losses = self.loss_fn(out, labels, teacher_log_probs=teacher_log_probs, topk_index=topk_index,
                                  temperature=TEMPERATURE)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        self.opt.step()
        return losses["loss"].detach()


# ---------------------------------------------------------------------------------------------- teachers
class InMemoryViTTeacher(Teacher):
    """A ``transformers`` ViT-base (random init, in memory) behind the Teacher interface (as HFTeacher)."""

    def __init__(self, num_classes: int = 10):
        import transformers  # noqa: PLC0415

        cfg = transformers.ViTConfig(num_labels=num_classes)  # defaults: 768 hidden, 12 layers, 224 px, patch 16
        super().__init__(cfg.image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), in_channels=3)
        torch.manual_seed(0)
        self.model = transformers.ViTForImageClassification(cfg).eval()
        self.num_classes = num_classes
        self.feature_dim = cfg.hidden_size
        self.teacher_id = "ViTForImageClassification(ViTConfig()) random init"

    def forward(self, x):
        out = self.model(pixel_values=x.contiguous(), output_hidden_states=True)
        return out.logits, out.hidden_states[-1][:, 0]


def default_teacher_spec() -> str:
    for cand in (ZOO / "teacher-efficientnet-lite0-fashion-mnist.safetensors",
                 ROOT / "artifacts" / "teacher" / "efficientnet-lite0-fashion-mnist.safetensors"):
        if cand.exists():
            return str(cand)
    return "efficientnet-lite0"


# ---------------------------------------------------------------------------------------------- timing
def compare(cache: TeacherCache, teacher: Teacher, images: np.ndarray, labels: np.ndarray, *, batch_size: int,
            cached_batches: int, online_batches: int, warmup: int, online_warmup_size: int, seed: int = 0) -> dict:
    """Time ``cached_batches`` cache-path steps and ``online_batches`` online steps (interleaved) on the same
    batches, from the same initial student."""
    model, student_name, loss_fn = make_student()
    init = copy.deepcopy(model.state_dict())
    cached_tr = Trainer(model, loss_fn, seed)
    model2, _, _ = make_student()
    model2.load_state_dict(init)
    online_tr = Trainer(model2, loss_fn, seed)
    imgs = torch.from_numpy(images)
    labs = torch.from_numpy(labels)
    rng = np.random.default_rng(seed)
    n = cache.num_samples
    total = warmup + max(cached_batches, online_batches)
    batches = []
    for b in range(total):
        idx = torch.from_numpy(rng.integers(0, n, size=batch_size))
        batches.append((idx, b % cache.num_replays, torch.from_numpy(rng.uniform(-5, 20, size=batch_size)).float()))
    k_lt_c = cache.num_classes is not None and cache.topk < cache.num_classes
    teacher.to(DEVICE).eval()

    def cached_step(idx, r, snr):
        x = augment_from_seeds(imgs[idx], cache.seeds(r, idx), pad=cache.augment_pad)
        logp = cache.log_soft_targets(r, idx, TEMPERATURE)
        topk_index = cache.topk(r, idx)[0] if k_lt_c else None
        return cached_tr.step(x, labs[idx], snr, logp, topk_index)

    teacher_time = [0.0]
    teacher_times: list[float] = []

    def online_step(idx, r, snr):
        x = augment_from_seeds(imgs[idx], cache.seeds(r, idx), pad=cache.augment_pad)
        sync()
        t0 = time.perf_counter()
        with torch.no_grad(), autocast(DEVICE):
            logits, _ = teacher(teacher.preprocess(x))
            logp = F.log_softmax(logits.float() / TEMPERATURE, dim=1)
        sync()
        teacher_time[0] += time.perf_counter() - t0
        return online_tr.step(x, labs[idx], snr, logp, None)

    for b in range(warmup):
        cached_step(*batches[b])
    idx, r, snr = batches[0]  # online warm-up on a few images (a full ViT-base batch would take a minute)
    with torch.no_grad(), autocast(DEVICE):
        teacher(teacher.preprocess(imgs[idx[:online_warmup_size]]))
    online_step(idx[:online_warmup_size], r, snr[:online_warmup_size])
    teacher_time[0] = 0.0
    t_cached, t_online = [], []
    for b in range(warmup, total):
        if b - warmup < cached_batches:
            sync()
            t0 = time.perf_counter()
            cached_step(*batches[b])
            sync()
            t_cached.append(time.perf_counter() - t0)
        if b - warmup < online_batches:
            sync()
            t0 = time.perf_counter()
            before = teacher_time[0]
            online_step(*batches[b])
            sync()
            t_online.append(time.perf_counter() - t0)
            teacher_times.append(teacher_time[0] - before)
    steps = math.ceil(EPOCH_SAMPLES / batch_size)
    # medians: robust to the other jobs sharing the CPU (means reported too)
    sc, so = float(np.median(t_cached)), float(np.median(t_online))
    st = float(np.median(teacher_times))
    return {
        "student": student_name,
        "student_parameters": sum(p.numel() for p in model.parameters()),
        "timed_batches": {"cache": len(t_cached), "online": len(t_online), "warmup_cache": warmup,
                          "warmup_online_images": online_warmup_size},
        "seconds_per_batch": {"cache": round(sc, 5), "online": round(so, 5), "online_teacher_part": round(st, 5),
                              "online_student_part": round(so - st, 5)},
        "mean_seconds_per_batch": {"cache": round(float(np.mean(t_cached)), 5),
                                   "online": round(float(np.mean(t_online)), 5)},
        "seconds_per_epoch": {"cache": round(sc * steps, 2), "online": round(so * steps, 2)},
        "speedup": round(so / sc, 2),
        "speedup_bound_note": "speedup = (teacher + student) / (student + cache lookup): the cache removes the "
                              "teacher's forward pass, so the ratio is about 1 + teacher_time / student_step_time",
    }


EPOCH_SAMPLES = 60000


def main(argv: list[str] | None = None) -> int:
    global EPOCH_SAMPLES
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", type=Path, default=None, help=f"default-teacher cache (default {DEFAULT_CACHE} if built)")
    p.add_argument("--teacher", default=None, help="default teacher spec (default: the fine-tuned zoo teacher)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per step (default: TrainConfig.batch_size, what sdr-tosc train uses: 256)")
    p.add_argument("--batches", type=int, default=20, help="timed batches per path for the default teacher")
    p.add_argument("--vit-batches", type=int, default=2, help="timed online batches with ViT-base (~40 s each here)")
    p.add_argument("--vit-cache-samples", type=int, default=64, help="samples in the ViT-base cache built here")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-vit", action="store_true")
    p.add_argument("--with-224", action="store_true",
                   help="also time the default teacher at 224 px input (how the ratio scales with teacher cost)")
    p.add_argument("--batches-224", type=int, default=3, help="timed online batches at 224 px")
    p.add_argument("--epoch-samples", type=int, default=60000)
    p.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    a = p.parse_args(argv)
    global DEVICE
    DEVICE = resolve_device(a.device)
    if a.batch_size is None:
        from sdr_tosc.semantic.distill import TrainConfig  # noqa: PLC0415

        a.batch_size = TrainConfig().batch_size
    EPOCH_SAMPLES = a.epoch_samples
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t_start = time.perf_counter()
    train = load_dataset("fashion-mnist", "train")
    result: dict = {
        "benchmark": "distill_speed",
        "method": (f"seconds per distillation epoch of {a.epoch_samples} images = median seconds per batch of "
                   f"{a.batch_size} over a fixed number of timed batches (cache and online steps interleaved, "
                   "after warm-up), x ceil(epoch_samples / batch_size); same student init, same batches "
                   "(indices, replay seeds, SNRs, channel noise), same loss (ib_loss, tau=4)"),
        "host": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "batch_size": a.batch_size,
        "epoch_samples": a.epoch_samples,
        "device": str(DEVICE) if DEVICE.type == "cpu" else f"{DEVICE} ({torch.cuda.get_device_name(DEVICE)})",
        "amp": str(torch.bfloat16 if DEVICE.type == "cuda" and torch.cuda.is_bf16_supported() else
                   torch.float16 if DEVICE.type == "cuda" else None),
    }
    # (a) the default teacher
    spec = a.teacher or default_teacher_spec()
    teacher = load_teacher(spec, train.num_classes)
    cache_dir = a.cache or (DEFAULT_CACHE if (DEFAULT_CACHE / "manifest.json").exists() else None)
    tmp = tempfile.TemporaryDirectory(prefix="bench-distill-")
    if cache_dir is None:
        n = min(len(train), a.batch_size * (a.batches + a.warmup))
        cache_dir = Path(tmp.name) / "default"
        build_cache(teacher, train.subset(np.arange(n)), cache_dir, replays=2, progress=False, device=DEVICE)
    cache = TeacherCache.open(cache_dir)
    cache.check_dataset(train.subset(np.arange(cache.num_samples)) if cache.num_samples < len(train) else train)
    sub_imgs, sub_labels = train.images[:cache.num_samples], train.labels[:cache.num_samples]
    row = {"teacher": cache.teacher_id,
           "teacher_spec": spec, "teacher_input_size": teacher.input_size,
           "teacher_parameters": sum(q.numel() for q in teacher.parameters()),
           "teacher_test_acc": cache.manifest["teacher"].get("test_acc"),
           "cache": str(cache_dir), "cache_samples": cache.num_samples, "cache_replays": cache.num_replays,
           "cache_bytes_per_sample_per_replay": cache.bytes_per_sample_per_replay,
           "cache_build_seconds_per_sample": cache.manifest.get("build_seconds_per_sample")}
    row.update(compare(cache, teacher, sub_imgs, sub_labels, batch_size=a.batch_size, cached_batches=a.batches,
                       online_batches=a.batches, warmup=a.warmup, online_warmup_size=a.batch_size))
    result["default_teacher"] = row
    if a.with_224:
        # not the shipped configuration: the same teacher weights fed at EfficientNet's ImageNet resolution,
        # to show how the ratio scales with the teacher's cost (cached path identical)
        teacher.input_size = 224
        r224 = {"teacher": "the default teacher at 224 px input (timing only, not the shipped configuration)",
                "teacher_input_size": 224}
        r224.update(compare(cache, teacher, sub_imgs, sub_labels, batch_size=a.batch_size, cached_batches=a.batches,
                            online_batches=a.batches_224, warmup=a.warmup, online_warmup_size=16))
        result["default_teacher_224px"] = r224
    del teacher
    # (b) ViT-base-sized transformers teacher
    if not a.no_vit:
        vit = InMemoryViTTeacher(train.num_classes)
        vdir = Path(tmp.name) / "vit"
        t0 = time.perf_counter()
        small = train.subset(np.arange(a.vit_cache_samples))
        build_cache(vit, small, vdir, replays=1, topk=10, feature_dim=64, batch_size=32, progress=False,
                    device=DEVICE)
        build_s = time.perf_counter() - t0
        vcache = TeacherCache.open(vdir)
        vrow = {"teacher": vit.teacher_id, "teacher_input_size": vit.input_size,
                "teacher_parameters": sum(q.numel() for q in vit.parameters()),
                "cache_samples": vcache.num_samples,
                "cache_bytes_per_sample_per_replay": vcache.bytes_per_sample_per_replay,
                "cache_build_seconds_per_sample": round(build_s / a.vit_cache_samples, 4),
                "cache_build_note": "includes the PCA fit on these samples; the build is one teacher pass"}
        vrow.update(compare(vcache, vit, small.images, small.labels, batch_size=a.batch_size,
                            cached_batches=a.batches, online_batches=a.vit_batches, warmup=a.warmup,
                            online_warmup_size=8))
        result["vit_base"] = vrow
    result["targets"] = {"default_teacher_speedup_min": 50,
                         "default_teacher_met": result["default_teacher"]["speedup"] >= 50,
                         "bytes_per_sample_per_replay_max": 512,
                         "bytes_met": result["default_teacher"]["cache_bytes_per_sample_per_replay"] <= 512}
    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
