"""Fine-tuning the default teacher (EfficientNet-Lite0) on a data set, and the pieces both fine-tunings share.

:func:`finetune_teacher` trains the whole network (AdamW, warm-up + cosine schedule, shift + flip
augmentation, label smoothing), resumable per epoch, from the ImageNet weights or from a teacher file (a
second stage); :func:`evaluate_teacher` scores a teacher with a task head. :func:`augment_batch`
and :func:`flatten_optimizer_state` / :func:`unflatten_optimizer_state` are also
used by :mod:`.hf_finetune` (``transformers`` teachers).

The teacher models, :func:`~.teachers.load_teacher` and the teacher file format are in :mod:`.teachers`,
which re-exports the public names here. Command line (fine-tune and write a teacher file)::

    python -m sdr_tosc.semantic.teachers --dataset fashion-mnist --epochs 4 --out teacher.safetensors
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import atomic_path, sha256_file
from .datasets import ImageSet
from .runtime import warmup_cosine_lr  # noqa: F401  (the schedule; also imported from here)
from .teachers import EfficientNetLiteTeacher, Teacher, load_teacher_file, save_teacher

log = logging.getLogger(__name__)


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 2, flip: bool = True) -> torch.Tensor:
    """Light augmentation on uint8 ``[B, H, W, C]``: random shifts up to ``pad`` pixels and horizontal flips.

    Deterministic given ``generator`` (the teacher cache stores the seed so a replay is exact).
    """
    b, h, w, _ = images.shape
    if pad:
        padded = F.pad(images.permute(0, 3, 1, 2), (pad, pad, pad, pad)).permute(0, 2, 3, 1)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None].expand(b, h, w)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :].expand(b, h, w)
        images = padded[torch.arange(b)[:, None, None], rows, cols]
    if flip:
        mask = torch.rand(b, generator=generator) < 0.5
        images = torch.where(mask[:, None, None, None], images.flip(2), images)
    return images


@torch.no_grad()
def evaluate_teacher(teacher: Teacher, data: ImageSet, batch_size: int = 256) -> float:
    """Top-1 accuracy of a teacher with a task head on ``data``."""
    teacher.eval()
    correct = 0
    imgs = torch.from_numpy(data.images)
    for i in range(0, len(data), batch_size):
        logits, _ = teacher(teacher.preprocess(imgs[i:i + batch_size]))  # on the teacher's device
        if logits is None:
            raise ValueError(f"teacher {teacher.teacher_id} has no task head; it cannot be scored on labels")
        correct += int((logits.argmax(1).cpu().numpy() == data.labels[i:i + batch_size]).sum())
    return correct / len(data)


def finetune_teacher(
    train: ImageSet,
    test: ImageSet | None,
    out_path: str | os.PathLike[str],
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    input_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    init: str | os.PathLike[str] | None = None,
    label_smoothing: float = 0.1,
    device: str | torch.device = "cpu",
    amp: bool = True,
) -> dict[str, Any]:
    """Fine-tune the whole default teacher on ``train`` (AdamW, warm-up + cosine schedule, shifts + flips).

    The network starts from the ImageNet weights, or from the teacher file ``init`` (a second stage: a warm
    restart of the schedule, typically at a lower ``lr`` and with ``label_smoothing=0`` so the soft labels the
    cache stores are not flattened). Writes ``out_path`` (the teacher) after every epoch together with
    ``out_path + '.state.safetensors'`` (optimizer state) and ``.history.json`` so an interrupted run resumes at
    the last finished epoch. The teacher file's history lists the epochs of ``init`` first, then this stage's.
    ``device``: where it trains (``auto``/``cpu``/``cuda``/``cuda:N``); ``amp``: ``torch.autocast`` on CUDA
    only. Returns this stage's history dict.
    """
    from .runtime import autocast, grad_scaler, optimizer_step, resolve_device  # noqa: PLC0415

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    from safetensors.torch import load_file, save_file  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    out_path = Path(out_path)
    state_path = out_path.with_name(out_path.name + ".state.safetensors")
    hist_path = out_path.with_name(out_path.name + ".history.json")
    torch.manual_seed(seed)
    teacher = EfficientNetLiteTeacher(train.num_classes, input_size=input_size, pretrained=init is None)
    parent_history: list[dict[str, Any]] = []
    init_info = None
    if init is not None:
        parent = load_teacher_file(init)
        if parent.num_classes != train.num_classes or parent.input_size != input_size:
            raise ValueError(f"{init}: a {parent.num_classes}-class teacher at {parent.input_size} px cannot start "
                             f"fine-tuning for {train.num_classes} classes at {input_size} px")
        teacher.load_state_dict(parent.state_dict())
        parent_history = list(parent.history)
        init_info = {"file": Path(init).name, "sha256": sha256_file(init), "epochs": len(parent_history)}
    teacher.to(device)
    scaler = grad_scaler(device, amp)
    opt = torch.optim.AdamW(teacher.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total = epochs * steps_per_epoch
    warmup = min(300, total // 10)

    history: dict[str, Any] = {"epochs": [], "config": {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                                                      "weight_decay": weight_decay, "input_size": input_size,
                                                      "seed": seed, "dataset": train.name,
                                                      "label_smoothing": label_smoothing, "init": init_info}}
    start_epoch = 0
    if out_path.exists() and state_path.exists() and hist_path.exists():
        resumed = load_teacher_file(out_path)
        teacher.load_state_dict(resumed.state_dict())
        flat = load_file(str(state_path))
        opt.load_state_dict(unflatten_optimizer_state(flat, opt))
        history = json.loads(hist_path.read_text())
        start_epoch = len(history["epochs"])
        log.warning("resuming teacher fine-tuning after epoch %d", start_epoch)

    imgs = torch.from_numpy(train.images)
    labels = torch.from_numpy(train.labels)
    for epoch in range(start_epoch, epochs):
        teacher.train()
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=g)
        t0, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"teacher epoch {epoch + 1}/{epochs}", disable=not progress)
        for i in bar:
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = teacher.preprocess(augment_batch(imgs[idx], g))
            y = labels[idx].to(device)
            for group in opt.param_groups:
                group["lr"] = warmup_cosine_lr(epoch * steps_per_epoch + i, lr, warmup, total)
            with autocast(device, amp):
                logits, _ = teacher(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            optimizer_step(loss, opt, scaler)
            seen += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(idx)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        train_time = time.perf_counter() - t0
        test_acc = evaluate_teacher(teacher, test) if test is not None else None
        number = len(parent_history) + epoch + 1  # counted over all stages, in the history and the log alike
        history["epochs"].append({"epoch": number, "train_loss": loss_sum / seen,
                                  "train_acc": correct / seen, "test_acc": test_acc, "seconds": train_time,
                                  "lr": lr, "label_smoothing": label_smoothing})
        log.warning("teacher epoch %d: train acc %.4f, test acc %s, %.0f s", number, correct / seen, test_acc, train_time)
        save_teacher(teacher, out_path, extra={"history": parent_history + history["epochs"]})
        with atomic_path(state_path) as tmp:
            save_file(flatten_optimizer_state(opt), str(tmp))
        with atomic_path(hist_path) as tmp:
            tmp.write_text(json.dumps(history, indent=2))
    return history


def flatten_optimizer_state(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat ``"{param_id}.{name}"`` tensors (for a safetensors file)."""
    flat = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            flat[f"{pid}.{k}"] = torch.as_tensor(v).detach().cpu().clone().contiguous()
    return flat


def unflatten_optimizer_state(flat: dict[str, torch.Tensor], opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer_state`: ``opt``'s state dict with that state, for ``load_state_dict``."""
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    sd["state"] = state
    return sd


def _main(argv: list[str] | None = None) -> int:
    import argparse  # noqa: PLC0415

    from .datasets import load_dataset  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m sdr_tosc.semantic.teachers",
                                description="fine-tune the default EfficientNet-Lite0 teacher on a data set")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, metavar="TEACHER",
                   help="start from this fine-tuned teacher file instead of the ImageNet weights (a second stage)")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    train = load_dataset(a.dataset, "train")
    if a.limit:
        train = train.subset(np.arange(a.limit))
    test = load_dataset(a.dataset, "test")
    hist = finetune_teacher(train, test, a.out, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                            input_size=a.input_size, seed=a.seed, init=a.init, label_smoothing=a.label_smoothing)
    print(json.dumps(hist, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
