"""Student checkpoints: one safetensors file holds the weights and everything needed to rebuild the model.

The file's metadata carry ``format = sdr-tosc-student``, ``version``, the :class:`~.student.StudentConfig`
as JSON, ``extra`` (JSON, e.g. the training summary) and ``tensors_sha256`` (:func:`tensors_digest` of the
weights), so :func:`load_checkpoint` needs the file alone (no pickle anywhere) and refuses a file whose
weights changed after it was written (flipped bytes, a truncated copy) instead of loading a silently broken
model. :func:`save_checkpoint` writes atomically; :func:`read_checkpoint_metadata` reads and checks the
metadata without the weights.

The model itself is in :mod:`.student`, which re-exports these names.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..config import to_dict
from ..fileio import atomic_path
from .student import SemanticStudent, _config_from_dict

CHECKPOINT_FORMAT = "sdr-tosc-student"
CHECKPOINT_VERSION = "1"

log = logging.getLogger(__name__)


def save_checkpoint(model: SemanticStudent, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
    """Write the model's weights (fp32) with its config (and ``extra``, JSON-able) in the metadata, atomically."""
    from safetensors.torch import save_file  # noqa: PLC0415

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "config": json.dumps(to_dict(model.config)), "extra": json.dumps(extra or {}, default=str),
            "tensors_sha256": tensors_digest(state)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def tensors_digest(state: dict[str, Any]) -> str:
    """sha256 (hex) over every tensor in name order: name, dtype, shape and the raw bytes.

    Stored as ``tensors_sha256`` in a checkpoint's metadata by :func:`save_checkpoint` and checked by
    :func:`load_checkpoint`; independent of the file layout, so re-saving identical weights keeps it.
    """
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"config": dict, "extra": dict, "version": str}`` of a student checkpoint, checking its format."""
    from safetensors import safe_open  # noqa: PLC0415

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"student checkpoint not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a student checkpoint (.safetensors file)")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"{path}: not a readable safetensors file ({exc}); the file is corrupt, truncated or "
                         f"not a student checkpoint") from None
    fmt = meta.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an sdr-tosc student checkpoint (metadata format={fmt!r}, expected "
                         f"{CHECKPOINT_FORMAT!r}); teacher files and other models cannot be loaded as a student")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: student checkpoint version {meta.get('version')!r} is not supported "
                         f"(this sdr-tosc reads version {CHECKPOINT_VERSION})")
    try:
        cfg = json.loads(meta["config"])
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: student checkpoint metadata is damaged ({exc})") from None
    return {"config": cfg, "extra": extra, "version": meta["version"], "tensors_sha256": meta.get("tensors_sha256")}


def load_checkpoint(path: str | os.PathLike[str], with_extra: bool = False) -> Any:
    """Rebuild a :class:`SemanticStudent` (eval mode) from a checkpoint file alone.

    Raises ``FileNotFoundError`` if missing, ``ValueError`` (naming the file) if it is not a safetensors
    student checkpoint or its weights do not fit the architecture its config describes.
    With ``with_extra=True`` returns ``(model, extra)``.
    """
    from safetensors.torch import load_file  # noqa: PLC0415

    path = Path(path)
    meta = read_checkpoint_metadata(path)
    cfg = _config_from_dict(meta["config"], f"{path} (config)")
    model = SemanticStudent(cfg)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the weights ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path}: weights do not match the student architecture in its config (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}, wrong shapes {wrong[:3]}); the file was made by another model"
        )
    want = meta.get("tensors_sha256")
    if want is None:
        log.warning("%s: checkpoint has no tensors_sha256 (written before checksums); its weights cannot be "
                    "verified; re-save it with save_checkpoint to add one", path)
    elif tensors_digest(state) != want:
        raise ValueError(f"{path}: the weights do not match the checkpoint's sha256 (the file was damaged or "
                         "changed after it was written); nothing was loaded, restore or re-train it")
    model.load_state_dict(state)
    model.eval()
    return (model, meta["extra"]) if with_extra else model
