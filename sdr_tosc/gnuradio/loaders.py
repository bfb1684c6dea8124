"""Student and images for the blocks, through the same loaders as the ``tx``/``rx`` verbs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def load_student(checkpoint: str | Path | None) -> Any:
    """The student at ``checkpoint`` ('' or None: the shipped default student)."""
    from ..commands.linkargs import load_student as _load

    return _load(argparse.Namespace(checkpoint=Path(checkpoint) if checkpoint else None))


def load_images(dataset: str, first_image: int, images: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``images`` test images of ``dataset`` from ``first_image``: ``(uint8 [N,H,W,C], labels [N], class names)``."""
    from ..commands.linkargs import load_images as _load

    return _load(argparse.Namespace(dataset=dataset, first_image=first_image, images=images))
