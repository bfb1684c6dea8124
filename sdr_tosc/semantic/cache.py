"""The pre-stored, compressed teacher cache: run the teacher once, distil many times without it.

The teacher is run once per *replay* over a data set: replay 0 sees the clean images, replays 1.. see
images augmented by :func:`augment_from_seeds` with a per-sample seed that is stored in the cache (as
TinyViT does), so the student can replay exactly the same augmentation and read the teacher's answer from
disk instead of running the teacher. What is stored per sample and replay is compressed:

* the teacher's **top-k log-probabilities** (``log_softmax`` of the logits at temperature 1, fp16, sorted
  descending) with their **class indices** (int16), plus the fp32 **logsumexp** of the logits so the raw
  logits come back exactly (``logit = logp + logsumexp``);
* its **features projected onto a PCA basis** of ``feature_dim`` components, quantised to int8 with one
  scale per component (the basis and scales are fitted once, from the clean teacher features of the first
  ``pca_samples`` images of the data set, and shared by every shard);
* the **augmentation seed** (int32; ``-1`` = clean image).

Rebuilding the teacher distribution (:meth:`TeacherCache.soft_targets`): the top-k classes get their stored
log-probability, the other ``C - K`` classes share the remaining probability mass equally (TinyViT's rule);
the temperature is applied to that rebuilt log-distribution. With ``K == C`` this is the teacher's
``softmax(logits / T)`` exactly (up to fp16 rounding of the log-probabilities).

Bytes per sample and replay: ``4K`` (top-k) + ``4`` (logsumexp) + ``D`` (features) + ``4`` (seed); the
defaults ``K = 10``, ``D = 64`` give **112 B** (TinyViT: 404 B for K = 100), a features-only cache
(a backbone without a head) ``D + 4`` = 68 B.

Files in a cache folder
-----------------------

``manifest.json``
    ``format`` (``"sdr-tosc-teacher-cache"``), ``version`` (1), ``teacher`` (the teacher's ``describe()``
    plus ``weights_sha256``), ``dataset`` (``name``, ``split``, ``num_samples``, ``image_shape``,
    ``num_classes``, ``classes``, ``images_sha256``), ``transform`` (``teacher_input_size``,
    ``augmentation``: kind, ``pad``, the seed rule), ``compression`` (``topk``, ``feature_dim``,
    ``teacher_feature_dim``, ``pca_samples``, the quantisation of each tensor), ``replays``, ``seed``,
    ``chunk_size``, ``settings_sha256`` (sha256 of the canonical JSON of all the keys above: every shard
    carries it, so an edited manifest or a shard from another cache is caught), ``tensors`` (name -> dtype,
    shape), ``pca`` ({file, sha256, bytes}), ``shards`` (list of {file, start, stop, sha256, bytes,
    seconds}, sorted by ``start``), ``complete``, ``created``, ``updated``,
    ``bytes_per_sample_per_replay`` (payload), ``file_bytes_per_sample_per_replay`` (with headers),
    ``build_seconds_per_sample`` (teacher time per sample and replay).
``pca.safetensors``
    ``mean`` fp32 [F], ``components`` fp32 [D, F] (orthonormal rows, by decreasing variance),
    ``scale`` fp32 [D] (int8 step of each component), ``explained_variance`` fp32 [D].
``shard-SSSSSSS-EEEEEEE.safetensors`` (samples ``S <= i < E``; ``chunk_size`` samples each)
    ``seeds`` int32 [R, n]; ``topk_index`` int16 [R, n, K]; ``topk_logp`` fp16 [R, n, K];
    ``logsumexp`` fp32 [R, n]; ``features`` int8 [R, n, D] (the logit tensors are absent when the teacher
    has no task head, ``features`` when ``feature_dim == 0``). Metadata: ``format``, ``settings_sha256``,
    ``start``, ``stop``.

Building is split into shards of ``chunk_size`` samples; ``build_cache(..., shard=(i, n))`` builds the
i-th of n contiguous groups of them, so several machines (or ``torchrun`` ranks) can fill one folder. Every
file is written atomically; the manifest is updated under a file lock after each shard; a re-run skips the
shards that are listed and verify (an interrupted build resumes). Settings that differ from an existing
cache's raise :class:`ValueError` before anything is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import atomic_path, atomic_write_json, read_json, sha256_file
from .datasets import ImageSet

log = logging.getLogger(__name__)

FORMAT = "sdr-tosc-teacher-cache"
VERSION = 1
MANIFEST = "manifest.json"
PCA_FILE = "pca.safetensors"
LOCK_FILE = ".lock"
DEFAULT_CHUNK = 4096
DEFAULT_PCA_SAMPLES = 4096
SEED_RULE = ("n = 2*pad+1; dx = seed % n; dy = (seed // n) % n; flip = (seed // n**2) % 2; "
             "seed < 0: clean image; shifted images are zero-padded")
_SETTINGS_KEYS = ("format", "version", "teacher", "dataset", "transform", "compression", "replays", "seed",
                  "chunk_size")


# ---------------------------------------------------------------------------------------------- augmentation
def augment_from_seeds(images: torch.Tensor | np.ndarray, seeds: torch.Tensor | np.ndarray, pad: int = 2) -> torch.Tensor:
    """Replay the cache's augmentation: uint8 ``[B, H, W, C]`` -> uint8 ``[B, H, W, C]``.

    Each sample is shifted by ``(dx - pad, dy - pad)`` pixels (zero fill) and optionally flipped
    horizontally, all decided by arithmetic on its int64 seed (see ``SEED_RULE``); ``seed < 0`` leaves the
    image untouched (replay 0 is always the clean image). Vectorised and deterministic.
    """
    x = torch.as_tensor(images)
    s = torch.as_tensor(seeds).to(torch.int64).reshape(-1)
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"augment_from_seeds needs uint8 images [B, H, W, C], got {x.dtype} {tuple(x.shape)}")
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"augment_from_seeds: {x.shape[0]} images but {s.shape[0]} seeds")
    if pad < 0:
        raise ValueError(f"augment_from_seeds: pad must be >= 0, got {pad}")
    b, h, w, _ = x.shape
    if b == 0 or bool((s < 0).all()):
        return x.clone()
    n = 2 * pad + 1
    active = s >= 0
    sp = s.clamp(min=0)
    dx = torch.where(active, sp % n, torch.full_like(sp, pad))
    dy = torch.where(active, (sp // n) % n, torch.full_like(sp, pad))
    flip = active & (((sp // (n * n)) % 2) == 1)
    out = x
    if pad:
        padded = F.pad(x.permute(0, 3, 1, 2), (pad, pad, pad, pad)).permute(0, 2, 3, 1)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, :, None].expand(b, h, w)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, :].expand(b, h, w)
        out = padded[torch.arange(b)[:, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(2), out).contiguous()


def replay_seeds(num_samples: int, replays: int, seed: int) -> np.ndarray:
    """The augmentation seed of every sample and replay, int32 ``[replays, num_samples]``.

    Replay 0 is ``-1`` (clean); replay r draws from ``numpy.random.PCG64([seed, r])`` over the whole data set,
    so any shard of a build computes the same seeds.
    """
    out = np.full((replays, num_samples), -1, dtype=np.int32)
    for r in range(1, replays):
        rng = np.random.Generator(np.random.PCG64([int(seed), r]))
        out[r] = rng.integers(0, 2**31 - 1, size=num_samples, dtype=np.int64).astype(np.int32)
    return out


# ---------------------------------------------------------------------------------------------- fingerprints
def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names and raw bytes, sorted by name): identifies a checkpoint."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def images_sha256(images: np.ndarray, labels: np.ndarray | None = None) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    if labels is not None:
        h.update(np.ascontiguousarray(labels.astype(np.int64)).data)
    return h.hexdigest()


def _canonical_sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _settings_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: manifest.get(k) for k in _SETTINGS_KEYS}


# ---------------------------------------------------------------------------------------------- validation
def check_images(images: np.ndarray | torch.Tensor, what: str = "images", min_size: int = 4) -> None:
    """uint8 ``[N, H, W, C]`` with C in (1, 3) and H, W >= ``min_size``, or a ValueError that says so."""
    shape = tuple(images.shape)
    dtype = images.dtype
    if dtype not in (np.uint8, torch.uint8) or len(shape) != 4:
        raise ValueError(f"{what} must be uint8 [N, H, W, C], got {dtype} {shape}")
    if shape[-1] not in (1, 3):
        raise ValueError(f"{what} must have 1 (gray) or 3 (RGB) channels in the last axis, got shape {shape}")
    if shape[1] < min_size or shape[2] < min_size:
        raise ValueError(f"{what} are too small ({shape[1]}x{shape[2]}); need at least {min_size}x{min_size} pixels")
    if shape[0] == 0:
        raise ValueError(f"{what}: no images")


def _index(index: Any, n: int) -> torch.Tensor:
    idx = torch.as_tensor(np.asarray(index) if not isinstance(index, torch.Tensor) else index)
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise TypeError(f"index must hold integers, got {idx.dtype}")
    idx = idx.to(torch.int64).reshape(-1)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise IndexError(f"sample index out of range 0..{n - 1}: min {int(idx.min())}, max {int(idx.max())}")
    return idx


# ---------------------------------------------------------------------------------------------- the reader
class TeacherCache:
    """A teacher cache loaded into memory (see the module docstring for the format)."""

    def __init__(self, path: Path, manifest: dict[str, Any], tensors: dict[str, torch.Tensor],
                 pca: dict[str, torch.Tensor] | None):
        self.path = path
        self.manifest = manifest
        self._t = tensors
        self._pca = pca
        ds, comp = manifest["dataset"], manifest["compression"]
        self.num_samples = int(ds["num_samples"])
        self.num_replays = int(manifest["replays"])
        self.num_classes = manifest["teacher"].get("num_classes") if comp["topk"] else None
        self.topk_k = int(comp["topk"])
        self.topk = _CallableInt(self.topk_k, self._topk)
        self.feature_dim = int(comp["feature_dim"])
        self.dataset_name = str(ds["name"])
        self.dataset_split = str(ds["split"])
        self.image_shape = tuple(ds["image_shape"])
        self.teacher_id = str(manifest["teacher"]["teacher_id"])
        self.bytes_per_sample_per_replay = float(manifest["bytes_per_sample_per_replay"])
        self.augment_pad = int(manifest["transform"]["augmentation"]["pad"])

    # ``cache.topk`` is both the number K (an int: ``cache.topk == 10``) and the accessor
    # ``cache.topk(replay, index)``: a callable int (see _CallableInt). ``cache.topk_k`` is the plain int.

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = True) -> TeacherCache:
        """Open the cache folder ``path``: check the manifest, every shard's size, sha256 (``verify``),
        metadata, tensor names, dtypes and shapes, then load all shards into memory.

        Every problem raises ``ValueError`` (``FileNotFoundError`` for a missing folder/file) naming the file.
        """
        try:
            return cls._open(path, verify)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:  # a manifest missing a field
            raise ValueError(f"{Path(path) / MANIFEST}: the manifest is damaged ({type(exc).__name__}: {exc}); "
                             "rebuild the cache with 'sdr-tosc cache'") from None

    @classmethod
    def _open(cls, path: str | os.PathLike[str], verify: bool) -> TeacherCache:
        from safetensors import safe_open  # noqa: PLC0415

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"teacher cache folder not found: {path}")
        mpath = path / MANIFEST
        if not mpath.exists():
            raise FileNotFoundError(f"{mpath}: no manifest; {path} is not a teacher cache (build one with 'sdr-tosc cache')")
        manifest = read_json(mpath, "teacher cache manifest")
        _check_manifest(manifest, mpath)
        if not manifest.get("complete"):
            missing = _missing_chunks(manifest)
            raise ValueError(
                f"{mpath}: the cache is incomplete ({len(missing)} of {_num_chunks(manifest)} shards missing, first "
                f"samples {missing[0][0]}..{missing[0][1] - 1}); finish it by re-running the same 'sdr-tosc cache' "
                "command(s): the build resumes")
        fp = manifest["settings_sha256"]
        specs = _tensor_specs(manifest)

        def load(fpath: Path, entry: dict[str, Any], kind: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
            if not fpath.exists():
                raise ValueError(f"{fpath}: {kind} listed in {mpath.name} is missing")
            size = fpath.stat().st_size
            if size != int(entry["bytes"]):
                raise ValueError(f"{fpath}: {kind} is truncated or altered: {size} bytes, the manifest says {entry['bytes']}")
            if verify and sha256_file(fpath) != entry["sha256"]:
                raise ValueError(f"{fpath}: {kind} is corrupt: sha256 differs from the manifest's")
            try:
                with safe_open(str(fpath), "pt") as fh:
                    meta = fh.metadata() or {}
                    tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
            except Exception as exc:  # safetensors has its own error types for bad files
                raise ValueError(f"{fpath}: {kind} is not a readable safetensors file ({exc})") from None
            if meta.get("settings_sha256") != fp:
                raise ValueError(f"{fpath}: {kind} belongs to a different cache (settings differ from {mpath}); "
                                 "was the manifest edited or the file copied from another cache?")
            return meta, tensors

        pca = None
        if manifest["compression"]["feature_dim"]:
            pentry = manifest.get("pca")
            if not pentry:
                raise ValueError(f"{mpath}: the manifest lists no PCA file although feature_dim > 0")
            _, pca = load(path / pentry["file"], pentry, "PCA file")
            d, f = manifest["compression"]["feature_dim"], manifest["compression"]["teacher_feature_dim"]
            want = {"mean": (f,), "components": (d, f), "scale": (d,), "explained_variance": (d,)}
            for k, shape in want.items():
                if k not in pca or tuple(pca[k].shape) != shape:
                    raise ValueError(f"{path / pentry['file']}: tensor {k!r} missing or not of shape {shape}")
                pca[k] = pca[k].float()
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in specs}
        expect_start = 0
        for entry in sorted(manifest["shards"], key=lambda e: e["start"]):
            fpath = path / entry["file"]
            meta, tensors = load(fpath, entry, "shard")
            start, stop = int(entry["start"]), int(entry["stop"])
            if start != expect_start or int(meta.get("start", -1)) != start or int(meta.get("stop", -1)) != stop:
                raise ValueError(f"{fpath}: covers samples {meta.get('start')}..{meta.get('stop')}, the manifest expects "
                                 f"{start}..{stop} after {expect_start}")
            expect_start = stop
            if set(tensors) != set(specs):
                raise ValueError(f"{fpath}: tensors {sorted(tensors)} but the manifest lists {sorted(specs)}")
            for k, (dtype, tail) in specs.items():
                t = tensors[k]
                shape = (manifest["replays"], stop - start, *tail)
                if t.dtype != dtype or tuple(t.shape) != shape:
                    raise ValueError(f"{fpath}: tensor {k!r} is {t.dtype} {tuple(t.shape)}, expected {dtype} {shape}")
                parts[k].append(t)
        if expect_start != manifest["dataset"]["num_samples"]:
            raise ValueError(f"{mpath}: shards cover samples 0..{expect_start - 1} of {manifest['dataset']['num_samples']}")
        tensors = {k: torch.cat(v, dim=1) for k, v in parts.items()}
        return cls(path, manifest, tensors, pca)

    # ------------------------------------------------------------------ access
    def _check_replay(self, replay: int) -> int:
        r = int(replay)
        if not 0 <= r < self.num_replays:
            raise IndexError(f"replay {replay} out of range: the cache holds replays 0..{self.num_replays - 1}")
        return r

    def _need_logits(self) -> None:
        if "topk_index" not in self._t:
            raise ValueError(f"teacher cache {self.path} holds features only (teacher {self.teacher_id} has no "
                             "classification head for this task, or it was built with --topk 0)")

    def seeds(self, replay: int, index: Any) -> torch.Tensor:
        """Augmentation seeds ``int64 [B]`` (``-1`` for replay 0): pass them to :func:`augment_from_seeds`."""
        r = self._check_replay(replay)
        return self._t["seeds"][r, _index(index, self.num_samples)].to(torch.int64)

    def images(self, replay: int, index: Any, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The (augmented) uint8 images the teacher saw for ``index`` in ``replay``; ``images`` is the data set's
        full image array (``ImageSet.images``)."""
        idx = _index(index, self.num_samples)
        self.check_images(images)
        batch = torch.as_tensor(images)[idx]
        return augment_from_seeds(batch, self.seeds(replay, idx), pad=self.augment_pad)

    def _topk(self, replay: int, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``cache.topk(replay, index)``: top-k class indices ``int64 [B, K]`` and the teacher's logits for them ``float32 [B, K]``."""
        self._need_logits()
        r = self._check_replay(replay)
        idx = _index(index, self.num_samples)
        logits = self._t["topk_logp"][r, idx].float() + self._t["logsumexp"][r, idx, None]
        return self._t["topk_index"][r, idx].to(torch.int64), logits

    def log_soft_targets(self, replay: int, index: Any, temperature: float = 1.0) -> torch.Tensor:
        """``log`` of :meth:`soft_targets` (numerically safe), ``float32 [B, C]``."""
        self._need_logits()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        r = self._check_replay(replay)
        idx = _index(index, self.num_samples)
        logp = self._t["topk_logp"][r, idx].float()
        cls_idx = self._t["topk_index"][r, idx].to(torch.int64)
        c, k = int(self.num_classes), logp.shape[1]
        if k < c:
            rest = (1.0 - logp.exp().sum(dim=1, keepdim=True)).clamp(min=1e-12)
            full = (rest / (c - k)).log().expand(-1, c).clone()
        else:
            full = torch.empty(len(idx), c)
        full.scatter_(1, cls_idx, logp)
        return torch.log_softmax(full / float(temperature), dim=1)

    def soft_targets(self, replay: int, index: Any, temperature: float = 1.0) -> torch.Tensor:
        """The teacher's distribution at ``temperature`` rebuilt from the top-k, ``float32 [B, C]``.

        The top-k classes keep their stored log-probabilities, the others share the remaining mass equally
        (TinyViT); the temperature is applied to that rebuilt distribution. Exact (fp16) when ``K == C``.
        """
        return self.log_soft_targets(replay, index, temperature).exp()

    def features(self, replay: int, index: Any) -> torch.Tensor:
        """Dequantised PCA coordinates of the teacher's features, ``float32 [B, D]``
        (full features: ``mean + coords @ components``, see :meth:`feature_basis`)."""
        if "features" not in self._t:
            raise ValueError(f"teacher cache {self.path} holds no features (built with feature_dim 0)")
        r = self._check_replay(replay)
        idx = _index(index, self.num_samples)
        return self._t["features"][r, idx].float() * self._pca["scale"]

    def feature_basis(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The PCA used: ``mean float32 [F]``, ``components float32 [D, F]`` (orthonormal rows)."""
        if self._pca is None:
            raise ValueError(f"teacher cache {self.path} holds no features (built with feature_dim 0)")
        return self._pca["mean"], self._pca["components"]

    def reconstruct_features(self, replay: int, index: Any) -> torch.Tensor:
        """Approximate full teacher features ``float32 [B, F]`` from the stored PCA coordinates."""
        mean, comp = self.feature_basis()
        return mean + self.features(replay, index) @ comp

    # ------------------------------------------------------------------ checks against the student's data
    def check_images(self, images: np.ndarray | torch.Tensor) -> None:
        """Raise ValueError unless ``images`` is the cache's data set shape (uint8 ``[N, H, W, C]``)."""
        check_images(images, "images")
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images of shape {tuple(images.shape[1:])} do not match the teacher cache {self.path} "
                             f"(built on {self.dataset_name} images of shape {self.image_shape})")
        if images.shape[0] != self.num_samples:
            raise ValueError(f"{images.shape[0]} images but the teacher cache {self.path} holds {self.num_samples} "
                             f"samples of {self.dataset_name}/{self.dataset_split}")

    def check_dataset(self, dataset: ImageSet, full: bool = False) -> None:
        """Raise ValueError unless ``dataset`` is the one the cache was built from (``full``: compare bytes)."""
        if dataset.name != self.dataset_name or dataset.split != self.dataset_split:
            raise ValueError(f"teacher cache {self.path} was built on {self.dataset_name}/{self.dataset_split}, "
                             f"not {dataset.name}/{dataset.split}")
        self.check_images(dataset.images)
        if full and images_sha256(dataset.images, dataset.labels) != self.manifest["dataset"]["images_sha256"]:
            raise ValueError(f"the images or labels of {dataset.name}/{dataset.split} differ from those the teacher "
                             f"cache {self.path} was built on")

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "teacher": m["teacher"],
            "dataset": {k: m["dataset"][k] for k in ("name", "split", "num_samples", "image_shape", "num_classes")},
            "replays": self.num_replays,
            "topk": self.topk_k,
            "feature_dim": self.feature_dim,
            "shards": len(m["shards"]),
            "total_bytes": sum(int(s["bytes"]) for s in m["shards"]) + int((m.get("pca") or {}).get("bytes", 0))
            + (self.path / MANIFEST).stat().st_size,
            "bytes_per_sample_per_replay": m["bytes_per_sample_per_replay"],
            "file_bytes_per_sample_per_replay": m.get("file_bytes_per_sample_per_replay"),
            "build_seconds_per_sample": m.get("build_seconds_per_sample"),
            "pca_explained_variance_ratio": (m.get("pca") or {}).get("explained_variance_ratio"),
        }

    def __repr__(self) -> str:
        return (f"TeacherCache({str(self.path)!r}, teacher={self.teacher_id!r}, dataset={self.dataset_name!r}, "
                f"samples={self.num_samples}, replays={self.num_replays}, topk={self.topk_k}, "
                f"feature_dim={self.feature_dim})")


class _CallableInt(int):
    """An int that can also be called: ``cache.topk`` is K and ``cache.topk(replay, index)`` the accessor."""

    def __new__(cls, value: int, fn: Any) -> _CallableInt:
        obj = super().__new__(cls, value)
        obj._fn = fn
        return obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)


def _check_manifest(m: Any, mpath: Path) -> None:
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ValueError(f"{mpath}: not a teacher cache manifest (format {m.get('format') if isinstance(m, dict) else None!r})")
    if m.get("version") != VERSION:
        raise ValueError(f"{mpath}: cache format version {m.get('version')!r}; this sdr-tosc reads version {VERSION}")
    for key in (*_SETTINGS_KEYS, "settings_sha256", "shards"):
        if key not in m:
            raise ValueError(f"{mpath}: manifest key {key!r} missing")
    if _canonical_sha(_settings_of(m)) != m["settings_sha256"]:
        raise ValueError(f"{mpath}: the manifest's settings do not match its settings_sha256 (was it edited?)")
    for key in ("name", "split", "num_samples", "image_shape"):
        if key not in m["dataset"]:
            raise ValueError(f"{mpath}: manifest dataset.{key} missing")
    for key in ("topk", "feature_dim"):
        if key not in m["compression"]:
            raise ValueError(f"{mpath}: manifest compression.{key} missing")


def _tensor_specs(m: dict[str, Any]) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """Tensor name -> (dtype, trailing shape after [R, n])."""
    k, d = int(m["compression"]["topk"]), int(m["compression"]["feature_dim"])
    specs: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {"seeds": (torch.int32, ())}
    if k:
        specs.update(topk_index=(torch.int16, (k,)), topk_logp=(torch.float16, (k,)), logsumexp=(torch.float32, ()))
    if d:
        specs["features"] = (torch.int8, (d,))
    return specs


def _bytes_per_record(m: dict[str, Any]) -> int:
    return sum(torch.empty((), dtype=dt).element_size() * math.prod(tail) for dt, tail in _tensor_specs(m).values())


def _chunks(m: dict[str, Any]) -> list[tuple[int, int]]:
    n, c = int(m["dataset"]["num_samples"]), int(m["chunk_size"])
    return [(s, min(s + c, n)) for s in range(0, n, c)]


def _num_chunks(m: dict[str, Any]) -> int:
    return len(_chunks(m))


def _missing_chunks(m: dict[str, Any]) -> list[tuple[int, int]]:
    have = {(int(s["start"]), int(s["stop"])) for s in m.get("shards", [])}
    return [c for c in _chunks(m) if c not in have]


def shard_file_name(start: int, stop: int) -> str:
    return f"shard-{start:07d}-{stop:07d}.safetensors"


# ---------------------------------------------------------------------------------------------- building
@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder/.lock`` (several builders on one machine or a shared file system)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # pragma: no cover  (Windows: single builder per folder)
        yield
        return
    with open(folder / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (0-based i) -> ``(i, N)``; ``"auto"`` reads ``RANK``/``WORLD_SIZE`` (torchrun)."""
    if text == "auto":
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"invalid shard {text!r}: use i/N with 0 <= i < N (e.g. 0/4), or 'auto' under torchrun") from None
    if not 0 <= i < n:
        raise ValueError(f"invalid shard {text!r}: need 0 <= i < N")
    return i, n


def cache_settings(teacher: Any, dataset: ImageSet, *, replays: int, topk: int, feature_dim: int, seed: int,
                   pad: int = 2, chunk_size: int = DEFAULT_CHUNK, pca_samples: int = DEFAULT_PCA_SAMPLES) -> dict[str, Any]:
    """The manifest keys that identify a cache (compared when resuming or sharding into a folder)."""
    has_logits = teacher.num_classes is not None
    k = min(int(topk), int(teacher.num_classes)) if has_logits else 0
    d = min(int(feature_dim), int(teacher.feature_dim))
    desc = {k_: v for k_, v in teacher.describe().items()}
    desc["weights_sha256"] = weights_sha256(teacher)
    n = len(dataset)
    return {
        "format": FORMAT,
        "version": VERSION,
        "teacher": desc,
        "dataset": {"name": dataset.name, "split": dataset.split, "num_samples": n,
                    "image_shape": list(dataset.image_shape), "num_classes": dataset.num_classes,
                    "classes": list(dataset.classes), "images_sha256": images_sha256(dataset.images, dataset.labels)},
        "transform": {"teacher_input_size": int(teacher.input_size), "teacher_preprocess": "bilinear resize, mean/std",
                      "augmentation": {"kind": "shift+hflip", "pad": int(pad), "seed_rule": SEED_RULE}},
        "compression": {"topk": k, "feature_dim": d, "teacher_feature_dim": int(teacher.feature_dim),
                        "pca_samples": min(int(pca_samples), n) if d else 0,
                        "logits": "top-k log_softmax fp16 + int16 class indices + fp32 logsumexp" if k else "none",
                        "features": "PCA coordinates, int8 with one fp32 scale per component" if d else "none",
                        "seeds": "int32"},
        "replays": int(replays),
        "seed": int(seed),
        "chunk_size": int(chunk_size),
    }


def build_cache(
    teacher: Any,
    dataset: ImageSet,
    out_dir: str | os.PathLike[str],
    *,
    replays: int = 1,
    topk: int = 10,
    feature_dim: int = 64,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
    pad: int = 2,
    chunk_size: int = DEFAULT_CHUNK,
    pca_samples: int = DEFAULT_PCA_SAMPLES,
    extra: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    amp: bool = True,
    _fail_after: int | None = None,
) -> Path:
    """Run ``teacher`` once per replay over this shard's samples of ``dataset``; write shards + manifest.

    ``teacher``: a :class:`~sdr_tosc.semantic.teachers.Teacher` or a spec for
    :func:`~sdr_tosc.semantic.teachers.load_teacher`. ``shard=(i, n)`` builds the i-th of n contiguous groups
    of ``chunk_size``-sample shard files. Re-running resumes: shards listed in the manifest that verify are
    kept. An existing cache in ``out_dir`` with other settings (teacher weights, data set, replays, topk,
    feature_dim, seed, pad, chunk_size) raises ValueError and nothing is written. ``extra`` is stored
    under the manifest key ``extra`` (e.g. the teacher's test accuracy). ``device``: where the teacher runs
    (``auto``/``cpu``/``cuda``/``cuda:N``); batches of ``batch_size`` augmented images go to it and the
    outputs come back for compression; ``amp``: ``torch.autocast`` on CUDA (bfloat16/float16 inference; the
    stored log-probabilities are fp16 anyway), never on CPU. Returns ``out_dir``.
    """
    from .runtime import autocast, resolve_device  # noqa: PLC0415

    device = resolve_device(device) if not isinstance(device, torch.device) else device
    from safetensors import safe_open  # noqa: PLC0415
    from safetensors.torch import save_file  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    out = Path(out_dir)
    # ---- validate everything before touching the disk
    if not isinstance(dataset, ImageSet):
        raise TypeError(f"dataset must be an ImageSet (sdr_tosc.semantic.datasets.load_dataset), got {type(dataset).__name__}")
    check_images(dataset.images, f"{dataset.name} images", min_size=max(4, 2 * pad + 1))
    if isinstance(teacher, (str, os.PathLike)):
        from .teachers import load_teacher  # noqa: PLC0415

        teacher = load_teacher(str(teacher), dataset.num_classes)
    if int(replays) < 1:
        raise ValueError(f"replays must be >= 1 (replay 0 is the clean image), got {replays}")
    if topk < 0 or feature_dim < 0 or batch_size < 1 or chunk_size < 1 or pad < 0:
        raise ValueError("topk, feature_dim and pad must be >= 0; batch_size and chunk_size >= 1")
    tin = getattr(teacher, "in_channels", 3)
    if dataset.image_shape[-1] != tin and 1 not in (dataset.image_shape[-1], tin):
        raise ValueError(f"{dataset.name} images have {dataset.image_shape[-1]} channels; teacher "
                         f"{teacher.teacher_id} takes {tin}")
    if teacher.num_classes is not None and int(teacher.num_classes) != dataset.num_classes:
        raise ValueError(f"teacher {teacher.teacher_id} has {teacher.num_classes} classes but {dataset.name} has "
                         f"{dataset.num_classes}; use a teacher trained for this data set (or a backbone)")
    if teacher.num_classes is None and (feature_dim == 0 or teacher.feature_dim == 0):
        raise ValueError(f"teacher {teacher.teacher_id} has no task head and feature_dim is 0: nothing to cache")
    if teacher.num_classes is None:
        topk = 0
    if topk == 0 and feature_dim == 0:
        raise ValueError("topk and feature_dim are both 0: nothing to cache")
    if teacher.num_classes is not None and topk > 32767:
        raise ValueError("topk > 32767 does not fit int16 class indices")
    si, sn = shard
    if not 0 <= si < sn:
        raise ValueError(f"invalid shard {si}/{sn}: need 0 <= i < N")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if out.is_dir() and not (out / MANIFEST).exists():
        foreign = [p.name for p in out.iterdir() if p.name != LOCK_FILE and not p.name.startswith(".")]
        if foreign:
            raise ValueError(f"{out} is not empty and holds no {MANIFEST} ({', '.join(sorted(foreign)[:3])} ...): "
                             "refusing to write a teacher cache into it; choose an empty or new folder")

    teacher.eval()
    teacher.to(device)
    settings = cache_settings(teacher, dataset, replays=replays, topk=topk, feature_dim=feature_dim, seed=seed,
                              pad=pad, chunk_size=chunk_size, pca_samples=pca_samples)
    fp = _canonical_sha(settings)
    k, d = settings["compression"]["topk"], settings["compression"]["feature_dim"]
    n = len(dataset)
    mpath = out / MANIFEST

    # ---- create or check the manifest (under the lock, so concurrent shard builders agree)
    with _locked(out):
        if mpath.exists():
            manifest = read_json(mpath, "teacher cache manifest")
            _check_manifest(manifest, mpath)
            if manifest["settings_sha256"] != fp:
                diffs = _diff(_settings_of(manifest), settings)
                raise ValueError(f"{mpath}: an existing cache with different settings ({'; '.join(diffs[:4])}); "
                                 "nothing was written: use another --out folder or delete this one")
        else:
            manifest = {**settings, "settings_sha256": fp, "tensors": {}, "pca": None, "shards": [],
                        "complete": False, "created": _now(), "updated": _now()}
            if extra:
                manifest["extra"] = extra
            manifest["tensors"] = {name: {"dtype": str(dt).replace("torch.", ""), "shape": ["replays", "n", *tail]}
                                   for name, (dt, tail) in _tensor_specs(manifest).items()}
            manifest["bytes_per_sample_per_replay"] = _bytes_per_record(manifest)
            atomic_write_json(mpath, manifest)
            _readable(mpath)

    images = torch.from_numpy(dataset.images)
    all_seeds = replay_seeds(n, replays, seed)
    pre: dict[tuple[int, int], tuple[torch.Tensor | None, torch.Tensor]] = {}

    @torch.inference_mode()
    def run_teacher(lo: int, hi: int, r: int) -> tuple[torch.Tensor | None, torch.Tensor]:
        if r == 0 and (lo, hi) in pre:
            return pre.pop((lo, hi))
        batch = augment_from_seeds(images[lo:hi], torch.from_numpy(all_seeds[r, lo:hi]), pad=pad)
        with autocast(device, amp):
            logits, feats = teacher(teacher.preprocess(batch.to(device, non_blocking=True)))
        return (None if logits is None else logits.float().cpu()), feats.float().reshape(hi - lo, -1).cpu()

    # ---- the PCA basis: fitted once (first builder wins, others load it)
    pca: dict[str, torch.Tensor] | None = None
    ppath = out / PCA_FILE
    if d:
        if not ppath.exists():
            nfit = settings["compression"]["pca_samples"]
            feats = []
            bar = tqdm(total=nfit, desc="teacher cache: PCA fit", unit="img", disable=not progress)
            for lo in range(0, nfit, batch_size):
                hi = min(lo + batch_size, nfit)
                res = run_teacher(lo, hi, 0)
                pre[(lo, hi)] = res  # reused by the shard pass when it asks for exactly this batch
                feats.append(res[1])
                bar.update(hi - lo)
            bar.close()
            fitted = _fit_pca(torch.cat(feats), d)
            _write_exclusive(ppath, fitted, {"format": FORMAT + "-pca", "settings_sha256": fp}, save_file)
        try:
            with safe_open(str(ppath), "pt") as fh:
                pmeta = fh.metadata() or {}
                pca = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
        except Exception as exc:
            raise ValueError(f"{ppath}: PCA file is not readable ({exc}); delete it to refit") from None
        if pmeta.get("settings_sha256") != fp:
            raise ValueError(f"{ppath}: PCA file belongs to a different cache; nothing was written")
        with _locked(out):
            manifest = read_json(mpath, "teacher cache manifest")
            if not manifest.get("pca"):
                var = pca["explained_variance"]
                manifest["pca"] = {"file": PCA_FILE, "sha256": sha256_file(ppath), "bytes": ppath.stat().st_size,
                                   "explained_variance_ratio": float(pmeta.get("explained_ratio", "nan")),
                                   "component_variance": [round(float(v), 6) for v in var[:8]]}
                manifest["updated"] = _now()
                atomic_write_json(mpath, manifest)

    # ---- this builder's shard files
    chunks = _chunks(manifest)
    nc = len(chunks)
    mine = chunks[si * nc // sn:(si + 1) * nc // sn]
    listed = {(int(e["start"]), int(e["stop"])): e for e in manifest["shards"]}
    todo = []
    for lo, hi in mine:
        f = out / shard_file_name(lo, hi)
        e = listed.get((lo, hi))
        if e and f.exists() and f.stat().st_size == e["bytes"] and sha256_file(f) == e["sha256"]:
            continue
        if f.exists() and not e and _shard_ok(f, fp, lo, hi, safe_open):
            _register(out, f, lo, hi, 0.0, n)  # written by an interrupted run after its last manifest update
            continue
        if f.exists() or e:
            log.warning("teacher cache: rebuilding %s (missing, corrupt or unlisted)", f)
        todo.append((lo, hi))
    if not mine:
        log.warning("teacher cache: shard %d/%d has no samples (%d shard files in all)", si, sn, nc)
    bar = tqdm(total=sum(hi - lo for lo, hi in todo) * replays, desc=f"teacher cache {si}/{sn}", unit="img",
               disable=not progress)
    done = 0
    for lo, hi in todo:
        t0 = time.perf_counter()
        m = hi - lo
        rec: dict[str, torch.Tensor] = {"seeds": torch.from_numpy(all_seeds[:, lo:hi].copy())}
        if k:
            rec["topk_index"] = torch.empty(replays, m, k, dtype=torch.int16)
            rec["topk_logp"] = torch.empty(replays, m, k, dtype=torch.float16)
            rec["logsumexp"] = torch.empty(replays, m, dtype=torch.float32)
        if d:
            rec["features"] = torch.empty(replays, m, d, dtype=torch.int8)
        for r in range(replays):
            for b0 in range(lo, hi, batch_size):
                b1 = min(b0 + batch_size, hi)
                logits, feats = run_teacher(b0, b1, r)
                sl = slice(b0 - lo, b1 - lo)
                if k:
                    lse = torch.logsumexp(logits, dim=1)
                    vals, cls_idx = (logits - lse[:, None]).topk(k, dim=1)
                    rec["topk_index"][r, sl] = cls_idx.to(torch.int16)
                    rec["topk_logp"][r, sl] = vals.to(torch.float16)
                    rec["logsumexp"][r, sl] = lse
                if d:
                    coords = (feats - pca["mean"]) @ pca["components"].T / pca["scale"]
                    rec["features"][r, sl] = coords.round().clamp(-127, 127).to(torch.int8)
                bar.update(b1 - b0)
                done += b1 - b0
                if _fail_after is not None and done >= _fail_after:
                    raise RuntimeError("simulated interruption (test hook)")
        f = out / shard_file_name(lo, hi)
        with atomic_path(f) as tmp:
            save_file({kk: v.contiguous() for kk, v in rec.items()}, str(tmp),
                      metadata={"format": FORMAT + "-shard", "settings_sha256": fp, "start": str(lo), "stop": str(hi)})
        _readable(f)
        _register(out, f, lo, hi, time.perf_counter() - t0, n)
    bar.close()
    return out


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            sa, sb = json.dumps(a), json.dumps(b)
            out.append(f"{prefix}{key}: cache has {sa[:40]}, asked {sb[:40]}")
    return out


def _fit_pca(feats: torch.Tensor, d: int) -> dict[str, torch.Tensor]:
    """Exact PCA (eigendecomposition of the covariance, float64) + int8 scales from the fit sample."""
    x = feats.double()
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(1, x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:d]
    comps = evecs[:, order].T.contiguous()  # [D, F]
    # deterministic signs: the largest-magnitude entry of each component is positive
    pivot = comps.abs().argmax(dim=1)
    signs = torch.sign(comps[torch.arange(d), pivot])
    signs[signs == 0] = 1
    comps = comps * signs[:, None]
    proj = xc @ comps.T
    scale = proj.abs().amax(0) * 1.1 / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    total = evals.clamp(min=0).sum()
    var = evals[order].clamp(min=0)
    ratio = float(var.sum() / total) if total > 0 else 1.0
    return {"mean": mean.float(), "components": comps.float(), "scale": scale.float(),
            "explained_variance": var.float(), "_ratio": torch.tensor(ratio)}


def _write_exclusive(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str], save_file: Any) -> None:
    """Create ``path`` only if it does not exist yet (hard link = atomic create); another builder's file wins."""
    import tempfile  # noqa: PLC0415

    meta = {**meta, "explained_ratio": repr(float(tensors.pop("_ratio")))}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            log.info("%s was written by another builder; using it", path)
        except OSError:  # file systems without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _readable(path)


def _readable(path: Path) -> None:
    """Temporary files are created 0600; a cache is meant to be shared: make it world-readable (umask)."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~umask)


def _shard_ok(f: Path, fp: str, lo: int, hi: int, safe_open: Any) -> bool:
    try:
        with safe_open(str(f), "pt") as fh:
            meta = fh.metadata() or {}
            for key in fh.keys():  # noqa: SIM118
                fh.get_tensor(key)
    except Exception:
        return False
    return meta.get("settings_sha256") == fp and meta.get("start") == str(lo) and meta.get("stop") == str(hi)


def _register(out: Path, f: Path, lo: int, hi: int, seconds: float, n: int) -> None:
    entry = {"file": f.name, "start": lo, "stop": hi, "sha256": sha256_file(f), "bytes": f.stat().st_size,
             "seconds": round(seconds, 3)}
    mpath = out / MANIFEST
    with _locked(out):
        m = read_json(mpath, "teacher cache manifest")
        shards = [e for e in m["shards"] if (int(e["start"]), int(e["stop"])) != (lo, hi)]
        shards.append(entry)
        m["shards"] = sorted(shards, key=lambda e: e["start"])
        m["complete"] = not _missing_chunks(m)
        total = sum(int(e["bytes"]) for e in m["shards"])
        covered = sum(int(e["stop"]) - int(e["start"]) for e in m["shards"])
        m["file_bytes_per_sample_per_replay"] = round(total / max(1, covered * m["replays"]), 2)
        timed = [e for e in m["shards"] if e.get("seconds")]
        if timed:
            m["build_seconds_per_sample"] = round(
                sum(e["seconds"] for e in timed) / sum((e["stop"] - e["start"]) * m["replays"] for e in timed), 6)
        m["updated"] = _now()
        atomic_write_json(mpath, m)
        _readable(mpath)


def open_cache(path: str | os.PathLike[str], verify: bool = True) -> TeacherCache:
    """Shorthand for :meth:`TeacherCache.open`."""
    return TeacherCache.open(path, verify=verify)
