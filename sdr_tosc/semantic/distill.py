"""Fast distillation of the semantic student from the pre-stored teacher cache (no teacher at run time).

Each step draws a batch of training indices, one cache *replay* for the batch (replay 0 = clean images,
replays 1.. = the exact augmentations the teacher saw, rebuilt from the stored seeds), the teacher's
soft targets for those indices from the cache, one SNR per sample (uniform over ``snr_min_db..snr_max_db``,
or ``fixed_snr_db``) and one channel per sample (Rayleigh block fading with probability ``rayleigh_prob``,
else AWGN), and minimises the information-bottleneck objective of :mod:`.losses`.

* ``label_fraction < 1``: a class-stratified, seeded subset of the training images keeps its labels. With KD
  the batches still cover *all* images (the teacher's soft labels are free: they are in the cache) and the
  cross-entropy uses only the labelled ones; without KD the batches come from the labelled subset only.
* ``kd = False`` trains on labels only (the "no-KD" baseline); a cache, if given, still supplies the same
  augmentation seeds, so the only difference is the teacher's knowledge.
* ``adaptive = False`` + ``fixed_snr_db = 10`` is the "no channel-adaptive module, one training SNR" baseline.

Reproducible and resumable: every epoch re-seeds from ``(seed, epoch)``; after each epoch the student is
written atomically to ``out_path`` (a normal, loadable checkpoint whose metadata holds the training config and
history) and the optimizer state to ``out_path.state.safetensors``. Re-running the same command after an
interruption resumes after the last finished epoch and ends with the same weights as an uninterrupted run;
the state file is removed when training completes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, from_dict, to_dict
from ..fileio import atomic_path
from .datasets import ImageSet
from .evaluate import teacher_accuracy_from_manifest
from .losses import ib_loss
from .runtime import Dist, amp_dtype, autocast, grad_scaler, optimizer_step, resolve_device, warmup_cosine_lr
from .student import MODELS, SemanticStudent, read_checkpoint_metadata, save_checkpoint
from .tblog import TrainingLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Distillation settings (``sdr-tosc train --config train.toml``, table ``[train]`` or the whole file)."""

    model: str = "fmnist-cnn"
    num_symbols: int = 0  # 0 = the model's own k_max
    adaptive: bool = True
    epochs: int = 10
    batch_size: int = 256
    steps_per_epoch: int = 0  # 0 = one pass over the images the run trains on
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    snr_min_db: float = -5.0
    snr_max_db: float = 25.0
    fixed_snr_db: float | None = None
    rayleigh_prob: float = 0.25
    kd: bool = True
    kd_weight: float = 1.0
    task_weight: float = 1.0
    temperature: float = 1.0  # the default teacher is label-smoothed: at T=4 its max probability is ~0.25
    beta: float = 1e-3
    feature_weight: float = 0.0
    label_fraction: float = 1.0
    replays: int = 0  # 0 = every replay the cache holds
    label_smoothing: float = 0.0
    seed: int = 0
    threads: int = 2
    eval_samples: int = 2000

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model {self.model!r} unknown: use one of {', '.join(MODELS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.steps_per_epoch < 0:
            raise ValueError("epochs and batch_size must be >= 1, steps_per_epoch >= 0")
        if not self.lr > 0:
            raise ValueError("lr must be > 0")
        if not self.snr_min_db < self.snr_max_db:
            raise ValueError(f"snr_min_db ({self.snr_min_db}) must be below snr_max_db ({self.snr_max_db})")
        if not 0.0 <= self.rayleigh_prob <= 1.0:
            raise ValueError("rayleigh_prob must be in [0, 1]")
        if not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if not self.temperature > 0:
            raise ValueError("temperature must be > 0")
        if self.beta < 0 or self.kd_weight < 0 or self.task_weight < 0 or self.feature_weight < 0:
            raise ValueError("loss weights must be >= 0")
        if self.num_symbols < 0:
            raise ValueError("num_symbols must be >= 1 (or 0 for the model's default)")
        if self.threads < 1:
            raise ValueError("threads must be >= 1")


def train_config_from_dict(d: dict[str, Any], source: str = "train config") -> TrainConfig:
    try:
        return from_dict(TrainConfig, d, source)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def state_path_for(out_path: str | os.PathLike[str]) -> Path:
    p = Path(out_path)
    return p.with_name(p.name + ".state.safetensors")


def build_student(config: TrainConfig, data: ImageSet) -> SemanticStudent:
    """The student for ``config`` fitted to the data set's image shape and class count.

    With ``adaptive = False`` the model's fixed-rate variant (``MODELS[model + "-fixed"]``, e.g. 40 symbols for
    ``fmnist-cnn``) is the base when it exists and ``num_symbols`` is 0.
    """
    base = MODELS[config.model]
    if not config.adaptive and config.num_symbols == 0 and f"{config.model}-fixed" in MODELS:
        base = MODELS[f"{config.model}-fixed"]
    k_max = config.num_symbols or base.num_symbols
    overrides: dict[str, Any] = {**to_dict(base), "adaptive": config.adaptive, "num_symbols": k_max,
                                 "image_shape": list(data.image_shape), "num_classes": data.num_classes}
    overrides["min_symbols"] = min(base.min_symbols, k_max)
    cfg = from_dict(type(base), overrides, "student config")
    return SemanticStudent(cfg)


def labelled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Class-stratified, seeded choice of ``round(fraction * n_c)`` (at least 1) images per class; sorted."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, 7919])
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(1, int(round(fraction * len(idx))))
        keep.append(rng.choice(idx, size=n, replace=False))
    return np.sort(np.concatenate(keep))


def _lr_at(config: TrainConfig, step: int, total: int) -> float:
    return warmup_cosine_lr(step, config.lr, max(1, int(config.warmup_fraction * total)), total)


def _flatten_state(opt: torch.optim.Optimizer, extra_modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            flat[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().clone().contiguous()
    for name, mod in extra_modules.items():
        for k, v in mod.state_dict().items():
            flat[f"mod.{name}.{k}"] = v.detach().cpu().clone().contiguous()
    return flat


def _restore_state(flat: dict[str, torch.Tensor], opt: torch.optim.Optimizer, extra_modules: dict[str, nn.Module]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    mods: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        kind, rest = key.split(".", 1)
        if kind == "opt":
            pid, name = rest.split(".", 1)
            state.setdefault(int(pid), {})[name] = v
        elif kind == "mod":
            name, k = rest.split(".", 1)
            mods.setdefault(name, {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    for name, mod in extra_modules.items():
        if name in mods:
            mod.load_state_dict(mods[name])


class _Step(nn.Module):
    """The student and the feature head as one module (what DistributedDataParallel wraps)."""

    def __init__(self, model: SemanticStudent, feat_head: nn.Module):
        super().__init__()
        self.model = model
        self.feat_head = feat_head

    def forward(self, x: torch.Tensor, snr: torch.Tensor, generator: torch.Generator,
                rayleigh_prob: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        out = self.model(x, snr, generator=generator, rayleigh_prob=rayleigh_prob)
        return out, self.feat_head(out["mu"])


@torch.no_grad()
def quick_accuracy(model: SemanticStudent, data: ImageSet, snrs: tuple[float, ...] = (-5.0, 10.0, 25.0),
                   channel: str = "awgn", seed: int = 1234) -> dict[str, float]:
    """Accuracy at a few SNRs (eval mode, seeded noise on the model's device); used for the per-epoch log."""
    out = {}
    device = next(model.parameters()).device
    for s in snrs:
        g = torch.Generator(device=device).manual_seed(seed + int(s * 10))
        pred = model.predict(data.images, float(s), channel=channel, generator=g)
        out[f"{s:g}"] = float((pred == data.labels).mean())
    return out


def train(
    config: TrainConfig,
    cache: Any | None,
    dataset: ImageSet,
    out_path: str | os.PathLike[str],
    progress: bool = True,
    test: ImageSet | None = None,
    overwrite: bool = False,
    stop_after_epochs: int | None = None,
    device: str | torch.device = "cpu",
    dist: Dist | None = None,
    amp: bool = True,
    separate_noise: bool | None = None,
    tensorboard: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Distil a student per ``config`` and write it to ``out_path``; returns a summary dict.

    ``cache``: an open :class:`~sdr_tosc.semantic.cache.TeacherCache` for ``dataset`` (required when
    ``config.kd``). ``test``: optional held-out set for the per-epoch log (first ``eval_samples`` images).
    ``overwrite``: replace an existing checkpoint made with another configuration (otherwise an error).
    ``stop_after_epochs``: stop (as if interrupted) after that many epochs of this call (tests).
    ``device``: where the student trains (``auto``/``cpu``/``cuda``/``cuda:N`` or a torch.device); ``amp``:
    mixed precision (``torch.autocast``) on CUDA only. ``dist``: this process's place in a torchrun job
    (:func:`.runtime.distributed_context`); with ``world_size > 1`` the student is wrapped in
    DistributedDataParallel and every rank trains on its contiguous ``batch_size / world_size`` slice of
    the same global batch (same order, replay and SNRs on every rank); rank 0 alone writes files.
    ``separate_noise``: draw the latent/channel noise from its own generator (one per rank, on the device)
    instead of the data-order generator; ``None`` = only when distributed or not on the CPU (a single CPU
    process keeps the historical stream). ``True`` in one process shows how far a different noise draw alone
    moves a run (what separates a torchrun run from a single-process one).
    ``tensorboard``: a folder for TensorBoard scalars (losses, accuracy, learning rate; see :mod:`.tblog`),
    written by rank 0.
    """
    dist = dist or Dist()
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) must be a multiple of the "
                         f"{dist.world_size} processes")
    from safetensors.torch import load_file, save_file  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    out_path = Path(out_path)
    state_path = state_path_for(out_path)
    cfg_dict = to_dict(config)
    if config.kd and cache is None:
        raise ValueError("KD training needs a teacher cache (build one with 'sdr-tosc cache'), or use --no-kd")
    if cache is not None:
        cache.check_dataset(dataset)
        if config.kd and cache.num_classes is None and not config.feature_weight:
            raise ValueError(f"teacher cache {cache.path} holds features only: KD needs feature_weight > 0, or use --no-kd")
        if cache.num_classes is not None and int(cache.num_classes) != dataset.num_classes:
            raise ValueError(f"teacher cache {cache.path} has {cache.num_classes} classes, {dataset.name} has {dataset.num_classes}")
    if len(dataset) == 0:
        raise ValueError("the training set is empty")

    # ---- resume / refuse to clobber
    start_epoch = 0
    history: list[dict[str, Any]] = []
    resume_state = None
    if state_path.exists():
        from safetensors import safe_open  # noqa: PLC0415

        try:
            with safe_open(str(state_path), "pt") as fh:
                smeta = fh.metadata() or {}
            old_cfg = json.loads(smeta.get("train_config", "null"))
        except Exception:  # a damaged state file: treat as foreign
            smeta, old_cfg = {}, None
        if old_cfg == cfg_dict:
            resume_state = load_file(str(state_path))
            start_epoch = int(smeta["epoch"])
            history = json.loads(smeta.get("history", "[]"))
        elif not overwrite:
            dist.barrier()
            raise ValueError(f"{state_path} holds an unfinished run with another configuration; re-run that command "
                             f"to finish it, choose another --out, or pass --overwrite (nothing was changed)")
    elif out_path.exists():
        try:
            meta = read_checkpoint_metadata(out_path)
            old_cfg = meta["extra"].get("train_config")
        except (ValueError, FileNotFoundError):
            meta, old_cfg = None, None
        if meta is not None and old_cfg == cfg_dict and meta["extra"].get("complete"):
            log.warning("%s is already trained with this configuration; nothing to do", out_path)
            dist.barrier()
            return {"out": str(out_path), "complete": True, "already_complete": True, "epochs_run": 0,
                    "history": meta["extra"].get("history", [])}
        if not overwrite:
            what = "another configuration" if meta is not None else "something that is not a student checkpoint"
            raise ValueError(f"{out_path} exists and was made by {what}; choose another --out or pass --overwrite "
                             f"(nothing was changed)")

    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    tb = TrainingLog(None, steps_per_epoch=1)  # replaced once the run's steps are known
    try:
        torch.manual_seed(config.seed)
        model = build_student(config, dataset)
        if resume_state is not None:
            model.load_state_dict({k[len("model."):]: v for k, v in resume_state.items() if k.startswith("model.")})
        use_feat = bool(config.kd and config.feature_weight and cache is not None and cache.feature_dim)
        feat_head = nn.Linear(2 * model.k_max, cache.feature_dim) if use_feat else nn.Identity()
        model.to(device)
        feat_head.to(device)
        params = list(model.parameters()) + list(feat_head.parameters())
        net: nn.Module = _Step(model, feat_head)
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None,
                                          find_unused_parameters=True)
        scaler = grad_scaler(device, amp)
        local_b = config.batch_size // dist.world_size
        lo_b, hi_b = dist.rank * local_b, (dist.rank + 1) * local_b
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        extra_modules = {"feat_head": feat_head}
        if resume_state is not None:
            _restore_state(resume_state, opt, extra_modules)
            log.warning("resuming %s after epoch %d", out_path, start_epoch)

        n = len(dataset)
        labelled_idx = labelled_subset(dataset.labels, config.label_fraction, config.seed)
        is_labelled = torch.zeros(n, dtype=torch.bool)
        is_labelled[torch.from_numpy(labelled_idx)] = True
        pool = torch.arange(n) if config.kd else torch.from_numpy(labelled_idx)
        steps = config.steps_per_epoch or max(1, len(pool) // config.batch_size)
        total = config.epochs * steps
        replays = cache.num_replays if cache is not None else 2
        if config.replays:
            replays = min(replays, config.replays)
        pad = cache.augment_pad if cache is not None else 2
        imgs = torch.from_numpy(dataset.images)
        labels = torch.from_numpy(dataset.labels)
        labels_dev, is_labelled_dev = labels.to(device), is_labelled.to(device)
        feat_mu = feat_sd = None
        if use_feat:
            f0 = cache.features(0, torch.arange(min(n, 4096)))
            feat_mu, feat_sd = f0.mean(0), f0.std(0).clamp_min(1e-6)
        test_sub = test.subset(np.arange(min(len(test), config.eval_samples))) if test is not None else None
        from .cache import augment_from_seeds  # noqa: PLC0415

        teacher_acc = teacher_accuracy_from_manifest(cache.manifest) if cache is not None else None
        tb = TrainingLog(tensorboard, steps_per_epoch=steps, start_epoch=start_epoch, enabled=dist.is_main,
                         config=cfg_dict)
        t_start = time.perf_counter()
        epochs_run = 0
        for epoch in range(start_epoch, config.epochs):
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                break
            g = torch.Generator().manual_seed(config.seed * 100003 + epoch)
            torch.manual_seed(config.seed * 100003 + epoch)  # dropout
            # the model's noise: the shared stream in a single CPU process (as always); otherwise one stream
            # per rank on the device, so that ``g`` (order, replay, SNR) stays identical on every rank
            gn = g
            if separate_noise or (separate_noise is None and (dist.active or device.type != "cpu")):
                gn = torch.Generator(device=device).manual_seed((config.seed * 100003 + epoch) * 1009 + dist.rank)
            reps = math.ceil(steps * config.batch_size / len(pool))
            order = torch.cat([pool[torch.randperm(len(pool), generator=g)] for _ in range(reps)])
            model.train()
            sums = {"loss": 0.0, "task_loss": 0.0, "kd_loss": 0.0, "rate_loss": 0.0, "feature_loss": 0.0}
            correct = seen = 0
            t0 = time.perf_counter()
            bar = tqdm(range(steps), desc=f"student epoch {epoch + 1}/{config.epochs}", disable=not progress,
                       leave=False)
            for i in bar:
                gidx = order[i * config.batch_size:(i + 1) * config.batch_size]  # the global batch
                r = int(torch.randint(0, replays, (1,), generator=g))
                if cache is None:  # no cache: same seed rule, drawn here
                    gseeds = (torch.randint(0, 2**31 - 1, (len(gidx),), generator=g) if r
                              else torch.full((len(gidx),), -1))
                if config.fixed_snr_db is not None:
                    gsnr = torch.full((len(gidx),), float(config.fixed_snr_db))
                else:
                    gsnr = config.snr_min_db + (config.snr_max_db - config.snr_min_db) * torch.rand(len(gidx), generator=g)
                idx, snr = gidx[lo_b:hi_b], gsnr[lo_b:hi_b]  # this rank's slice (all of it in one process)
                seeds = cache.seeds(r, idx) if cache is not None else gseeds[lo_b:hi_b]
                x = augment_from_seeds(imgs[idx], seeds, pad=pad).to(device, non_blocking=True)
                snr = snr.to(device)
                t_logp = topk_idx = t_feat = None
                if config.kd and cache.num_classes is not None:
                    t_logp = cache.log_soft_targets(r, idx, config.temperature).to(device)
                    if cache.topk_k < dataset.num_classes:
                        topk_idx = cache.topk(r, idx)[0].to(device)
                if use_feat:
                    t_feat = ((cache.features(r, idx) - feat_mu) / feat_sd).to(device)
                for group in opt.param_groups:
                    group["lr"] = _lr_at(config, epoch * steps + i, total)
                idx_dev = idx.to(device)
                with autocast(device, amp):
                    out, feat_pred = net(x, snr, gn, config.rayleigh_prob)
                    out = {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
                    losses = ib_loss(
                        out, labels_dev[idx_dev], labelled=is_labelled_dev[idx_dev].float(), teacher_log_probs=t_logp,
                        topk_index=topk_idx, temperature=config.temperature, beta=config.beta,
                        task_weight=config.task_weight, kd_weight=config.kd_weight if config.kd else 0.0,
                        feature_pred=feat_pred.float() if use_feat else None, teacher_features=t_feat,
                        feature_weight=config.feature_weight if use_feat else 0.0,
                        label_smoothing=config.label_smoothing,
                    )
                if not torch.isfinite(losses["loss"]):
                    raise RuntimeError(f"training diverged at epoch {epoch + 1} step {i} (loss {float(losses['loss'])}); "
                                       "lower --lr")
                optimizer_step(losses["loss"], opt, scaler, clip_params=params, max_norm=5.0)
                for k in sums:
                    sums[k] += float(losses[k].detach()) * len(idx)
                correct += int((out["logits"].argmax(1) == labels_dev[idx_dev]).sum())
                seen += len(idx)
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{sums['loss'] / seen:.3f}", acc=f"{correct / seen:.3f}")
                tb.step(epoch, i, sums["loss"] / seen, opt.param_groups[0]["lr"])
            if dist.active:  # the epoch's figures over all ranks
                keys = list(sums)
                tot = dist.all_reduce_sum([sums[k] for k in keys] + [float(correct), float(seen)])
                sums = dict(zip(keys, tot[:len(keys)], strict=True))
                correct, seen = int(tot[-2]), int(tot[-1])
            rec: dict[str, Any] = {"epoch": epoch + 1, **{k: v / seen for k, v in sums.items()},
                                   "train_acc": correct / seen, "seconds": round(time.perf_counter() - t0, 1)}
            if test_sub is not None and dist.is_main:
                rec["test_acc_awgn"] = quick_accuracy(model, test_sub)
            history.append(rec)
            tb.epoch(rec)
            log.info("epoch %d: %s", epoch + 1, json.dumps(rec))
            if progress:
                tqdm.write(f"epoch {epoch + 1}/{config.epochs}: loss {rec['loss']:.4f} train acc {rec['train_acc']:.4f}"
                           + (f" test acc (AWGN -5/10/25 dB) {rec['test_acc_awgn']}" if test_sub is not None else ""))
            complete = epoch + 1 == config.epochs
            extra = {"train_config": cfg_dict, "epoch": epoch + 1, "complete": complete, "history": history,
                     "dataset": {"name": dataset.name, "split": dataset.split, "num_samples": n},
                     "world_size": dist.world_size, "device": device.type,
                     "labelled_samples": int(len(labelled_idx)),
                     "teacher_accuracy": teacher_acc,
                     "cache": None if cache is None else {"path": str(cache.path), "teacher_id": cache.teacher_id,
                                                          "replays_used": replays,
                                                          "settings_sha256": cache.manifest.get("settings_sha256")}}
            model.eval()
            # the state file (model + optimizer + history) is the resume point; written before the checkpoint
            if dist.is_main:
                if not complete:
                    flat = _flatten_state(opt, extra_modules)
                    flat.update({f"model.{k}": v.detach().cpu().clone().contiguous()
                                 for k, v in model.state_dict().items()})
                    with atomic_path(state_path) as tmp:
                        save_file(flat, str(tmp), metadata={"epoch": str(epoch + 1),
                                                            "train_config": json.dumps(cfg_dict),
                                                            "history": json.dumps(history)})
                save_checkpoint(model, out_path, extra=extra)
                if complete and state_path.exists():
                    state_path.unlink()
            dist.barrier()  # every rank sees the files of this epoch before going on
            epochs_run += 1
        seconds = time.perf_counter() - t_start
    finally:
        tb.close()
        torch.set_num_threads(threads_before)
    done = bool(history) and history[-1]["epoch"] == config.epochs
    return {"out": str(out_path), "complete": done, "epochs_run": epochs_run, "start_epoch": start_epoch,
            "world_size": dist.world_size, "rank": dist.rank, "device": str(device),
            "amp": str(amp_dtype(device)).replace("torch.", "") if amp and amp_dtype(device) else None,
            "seconds": round(seconds, 1), "parameters": model.num_parameters(),
            "labelled_samples": int(len(labelled_idx)), "history": history}
