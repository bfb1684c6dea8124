"""Fine-tune a ``transformers`` image classifier to a data set's classes before caching it as the teacher.

The classifier (hub id or local folder) gets a new head with the data set's classes (``num_labels``,
``id2label``; ``ignore_mismatched_sizes`` re-initialises a head of another size); the backbone is trained
too unless ``freeze_backbone``. The recipe is the default teacher's, with its helpers from
:mod:`.teacher_finetune` (AdamW, warm-up + cosine schedule :func:`~.runtime.warmup_cosine_lr`,
shifts + flips :func:`~.teacher_finetune.augment_batch`), on ``--device`` with autocast on CUDA only.

The result is an ordinary ``save_pretrained`` folder (load it with ``--teacher FOLDER``) that also holds
``sdr_tosc_finetune.json`` (settings + per-epoch history) and ``optimizer.safetensors``; each epoch
replaces the folder as a whole (written beside it, then renamed), so an interrupted run resumes after
its last finished epoch. A folder made with other settings is refused.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..fileio import read_json
from .datasets import ImageSet

log = logging.getLogger(__name__)

STATE = "sdr_tosc_finetune.json"
OPTIMIZER = "optimizer.safetensors"


def finetune_hf_teacher(
    model_id: str,
    train: ImageSet,
    test: ImageSet | None,
    out_dir: str | os.PathLike[str],
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 1e-4,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    freeze_backbone: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    amp: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model_id`` on ``train`` into the folder ``out_dir`` (resumable); returns the history dict."""
    import transformers  # noqa: PLC0415
    from safetensors.torch import load_file, save_file  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    from .runtime import autocast, grad_scaler, optimizer_step, resolve_device, warmup_cosine_lr  # noqa: PLC0415
    from .teacher_finetune import (  # noqa: PLC0415
        augment_batch,
        evaluate_teacher,
        flatten_optimizer_state,
        unflatten_optimizer_state,
    )
    from .teachers import HFTeacher  # noqa: PLC0415

    if epochs < 1 or batch_size < 1 or not lr > 0 or not 0.0 <= label_smoothing < 1.0:
        raise ValueError("epochs and batch_size must be >= 1, lr > 0, label_smoothing in [0, 1)")
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    out = Path(out_dir)
    settings = {"source": str(model_id), "dataset": train.name, "num_samples": len(train),
                "classes": list(train.classes), "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "label_smoothing": label_smoothing, "freeze_backbone": freeze_backbone, "seed": seed}
    history: list[dict[str, Any]] = []
    source = str(model_id)
    if out.exists():
        if not (out / STATE).exists():
            raise ValueError(f"{out} exists and is not a fine-tuned teacher folder from sdr-tosc; choose another "
                             "--teacher-out")
        state = read_json(out / STATE, "fine-tuning state")
        if state.get("settings") != settings:
            raise ValueError(f"{out} was fine-tuned with other settings ({state.get('settings')}); choose another "
                             "--teacher-out or delete it (nothing was changed)")
        history = state.get("history", [])
        if len(history) >= epochs:
            log.warning("%s is already fine-tuned for %d epochs: using it", out, len(history))
            return {"settings": settings, "history": history, "out": str(out)}
        source = str(out)
        log.warning("resuming the fine-tuning of %s after epoch %d", model_id, len(history))
    c = train.num_classes
    torch.manual_seed(seed)
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            source, num_labels=c, id2label=dict(enumerate(train.classes)),
            label2id={n: i for i, n in enumerate(train.classes)}, ignore_mismatched_sizes=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load {source!r} as a transformers image classifier ({str(exc).splitlines()[0]}); "
                         "fine-tuning needs an AutoModelForImageClassification (a backbone without a head: cache "
                         "its features with --features-only)") from None
    teacher = HFTeacher(str(model_id), num_classes=c, model=model).to(device)
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(source)
    except (OSError, ValueError, KeyError):
        processor = None  # none saved with the source: HFTeacher's defaults apply both here and when loading
    if freeze_backbone:
        for p in model.base_model.parameters():
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if history:
        opt.load_state_dict(unflatten_optimizer_state(load_file(str(out / OPTIMIZER)), opt))
    scaler = grad_scaler(device, amp)
    steps = math.ceil(len(train) / batch_size)
    total, warm = epochs * steps, max(1, min(300, epochs * steps // 10))
    imgs, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    for epoch in range(len(history), epochs):
        teacher.train()
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=g)
        t0, seen, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
        for i in tqdm(range(steps), desc=f"teacher epoch {epoch + 1}/{epochs}", disable=not progress):
            idx = order[i * batch_size:(i + 1) * batch_size]
            step = epoch * steps + i
            for group in opt.param_groups:
                group["lr"] = warmup_cosine_lr(step, lr, warm, total)
            y = labels[idx].to(device)
            with autocast(device, amp):
                logits, _ = teacher(teacher.preprocess(augment_batch(imgs[idx], g)))
                loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            optimizer_step(loss, opt, scaler)
            seen += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(idx)
        test_acc = evaluate_teacher(teacher, test) if test is not None else None
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_acc": correct / seen,
                        "test_acc": test_acc, "seconds": round(time.perf_counter() - t0, 1)})
        log.warning("teacher epoch %d: train acc %.4f, test acc %s", epoch + 1, correct / seen, test_acc)
        _write_folder(out, model, flatten_optimizer_state(opt), {"settings": settings, "history": history},
                      save_file, processor)
    return {"settings": settings, "history": history, "out": str(out)}


def _write_folder(out: Path, model: Any, opt_state: dict[str, torch.Tensor], state: dict[str, Any],
                  save_file: Any, processor: Any = None) -> None:
    """Write the whole folder beside ``out``, then swap it in (an interruption leaves the old one whole)."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)  # safetensors weights + config.json (with id2label)
    if processor is not None:  # the source's resize/normalisation travels with the fine-tuned model
        processor.save_pretrained(tmp)
    save_file(opt_state, str(tmp / OPTIMIZER))
    (tmp / STATE).write_text(json.dumps(state, indent=2))
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
