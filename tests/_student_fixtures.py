"""Shared helpers for the student / distillation / evaluation tests (small, fast, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sdr_tosc.semantic.datasets import ImageSet, load_dataset


def fmnist(split: str, n: int, offset: int = 0) -> ImageSet:
    """The first ``n`` images of Fashion-MNIST ``split`` (the offline Debian data set)."""
    data = load_dataset("fashion-mnist", split)
    return data.subset(np.arange(offset, offset + n))


class OracleCache:
    """A duck-typed stand-in for :class:`TeacherCache` whose 'teacher' is a confident oracle of the labels.

    It exercises the KD path of :func:`train` without building a real cache: soft targets put
    ``confidence`` on the true class. ``topk_k < C`` exercises the top-k-aware KL.
    """

    def __init__(self, data: ImageSet, confidence: float = 0.9, replays: int = 2, topk: int | None = None,
                 feature_dim: int = 0):
        self.path = Path("oracle-cache")
        self.data = data
        self.num_samples = len(data)
        self.num_replays = replays
        self.num_classes = data.num_classes
        self.topk_k = topk or data.num_classes
        self.feature_dim = feature_dim
        self.augment_pad = 2
        self.teacher_id = "oracle"
        self.manifest = {"settings_sha256": "oracle"}
        c = data.num_classes
        probs = np.full((len(data), c), (1 - confidence) / (c - 1), dtype=np.float32)
        probs[np.arange(len(data)), data.labels] = confidence
        self._logits = torch.from_numpy(np.log(probs))
        rng = np.random.default_rng(0)
        self._seeds = torch.from_numpy(rng.integers(0, 2**31 - 1, size=(replays, len(data))))
        self._seeds[0] = -1

    def check_dataset(self, dataset: ImageSet) -> None:
        if len(dataset) != self.num_samples:
            raise ValueError("dataset does not match the oracle cache")

    def seeds(self, replay: int, index: torch.Tensor) -> torch.Tensor:
        return self._seeds[replay, index]

    def log_soft_targets(self, replay: int, index: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        return torch.log_softmax(self._logits[index] / temperature, dim=1)

    def topk(self, replay: int, index: torch.Tensor):
        v, i = self._logits[index].topk(self.topk_k, dim=1)
        return i, v

    def features(self, replay: int, index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.from_numpy(self.data.labels)[index], self.feature_dim).float()
