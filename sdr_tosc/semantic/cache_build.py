"""Building the teacher cache: run the teacher once per replay, compress its answers, write shards + manifest.

The file format, the augmentation replay and the reader (:class:`~.cache.TeacherCache`) are in :mod:`.cache`;
this module writes what it reads: :func:`cache_settings` (the manifest keys that identify a cache),
:func:`build_cache` (teacher passes, the PCA fit, top-k/feature compression, shard files), the shard
registry in the manifest and the folder lock, and :func:`parse_shard` (``i/N`` or torchrun's ``auto``).

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

import torch

from ..fileio import atomic_path, atomic_write_json, read_json, sha256_file
from .cache import (
    DEFAULT_CHUNK,
    DEFAULT_PCA_SAMPLES,
    FORMAT,
    LOCK_FILE,
    MANIFEST,
    PCA_FILE,
    SEED_RULE,
    VERSION,
    _canonical_sha,
    _check_manifest,
    _chunks,
    _missing_chunks,
    _settings_of,
    _tensor_specs,
    augment_from_seeds,
    check_images,
    images_sha256,
    replay_seeds,
)
from .datasets import ImageSet

log = logging.getLogger(__name__)


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names and raw bytes, sorted by name): identifies a checkpoint."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def shard_file_name(start: int, stop: int) -> str:
    return f"shard-{start:07d}-{stop:07d}.safetensors"


def _bytes_per_record(m: dict[str, Any]) -> int:
    return sum(torch.empty((), dtype=dt).element_size() * math.prod(tail) for dt, tail in _tensor_specs(m).values())


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


