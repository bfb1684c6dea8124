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

This module reads a cache (:class:`TeacherCache`, :func:`open_cache`) and holds what reader and builder
share (the format constants, the augmentation replay, the data fingerprint, manifest checks). Building (sharded,
resumable, under a file lock) lives in :mod:`.cache_build`; its public names (``build_cache``,
``cache_settings``, ``parse_shard``, ``shard_file_name``, ``weights_sha256``) stay importable from here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fileio import read_json, sha256_file
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


def _chunks(m: dict[str, Any]) -> list[tuple[int, int]]:
    n, c = int(m["dataset"]["num_samples"]), int(m["chunk_size"])
    return [(s, min(s + c, n)) for s in range(0, n, c)]


def _num_chunks(m: dict[str, Any]) -> int:
    return len(_chunks(m))


def _missing_chunks(m: dict[str, Any]) -> list[tuple[int, int]]:
    have = {(int(s["start"]), int(s["stop"])) for s in m.get("shards", [])}
    return [c for c in _chunks(m) if c not in have]


def open_cache(path: str | os.PathLike[str], verify: bool = True) -> TeacherCache:
    """Shorthand for :meth:`TeacherCache.open`."""
    return TeacherCache.open(path, verify=verify)


# Names that moved to .cache_build stay importable from here; resolved on first use, because
# cache_build imports this module (PEP 562 module __getattr__, no import cycle).
_BUILD_NAMES = frozenset({"build_cache", "cache_settings", "parse_shard", "shard_file_name", "weights_sha256"})


def __getattr__(name: str) -> Any:
    if name in _BUILD_NAMES:
        from . import cache_build  # noqa: PLC0415

        return getattr(cache_build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
