"""The pre-stored teacher cache: format round trip, soft-target rebuilding, sharding, resuming, bad input.

Teachers are tiny random ``transformers`` models saved with ``save_pretrained`` and loaded by folder path
offline (HF_HUB_OFFLINE=1, set in conftest), exactly as a real hub model would be.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from sdr_tosc.fileio import sha256_file
from sdr_tosc.semantic.cache import MANIFEST, TeacherCache, augment_from_seeds, replay_seeds
from sdr_tosc.semantic.cache_build import build_cache, parse_shard
from sdr_tosc.semantic.datasets import ImageSet
from sdr_tosc.semantic.teachers import load_teacher

transformers = pytest.importorskip("transformers")

C = 10
FAST = {"batch_size": 16, "chunk_size": 24, "pca_samples": 40, "progress": False}


def _images(n: int, seed: int = 0, shape=(16, 16, 1)) -> ImageSet:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, C, size=n).astype(np.int64)
    return ImageSet("synthetic", "train", imgs, labels, tuple(f"c{i}" for i in range(C)))


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, num_labels=C)
    model = transformers.ViTForImageClassification(cfg)
    with torch.no_grad():  # spread the logits so the distribution is far from uniform
        model.classifier.weight.mul_(30.0)
    path = tmp_path_factory.mktemp("tiny-vit")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(1)
    cfg = transformers.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
    path = tmp_path_factory.mktemp("tiny-clip")
    transformers.CLIPVisionModelWithProjection(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def teacher(vit_dir):
    return load_teacher(str(vit_dir), C)


@pytest.fixture(scope="module")
def data():
    return _images(60)


@pytest.fixture(scope="module")
def single(teacher, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "cache"
    build_cache(teacher, data, out, replays=2, topk=C, feature_dim=8, **FAST)
    return out


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(folder.iterdir()) if p.is_file()}


# ---------------------------------------------------------------------------------------------- augmentation
def test_augment_replay0_is_identity_and_seeds_are_deterministic():
    imgs = torch.from_numpy(_images(8).images)
    assert torch.equal(augment_from_seeds(imgs, torch.full((8,), -1)), imgs)
    seeds = torch.from_numpy(replay_seeds(8, 3, seed=5)[1]).long()
    a, b = augment_from_seeds(imgs, seeds), augment_from_seeds(imgs, seeds)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == imgs.shape
    assert not torch.equal(a, imgs)
    # replay seeds are reproducible, -1 for replay 0, and independent of how the data set is split
    s = replay_seeds(20, 3, seed=5)
    assert (s[0] == -1).all() and (s[1:] >= 0).all()
    assert np.array_equal(s, replay_seeds(20, 3, seed=5)) and not np.array_equal(s, replay_seeds(20, 3, seed=6))


def test_augment_seed_arithmetic():
    imgs = torch.from_numpy(_images(1).images)
    pad, n = 2, 5
    centre = pad + pad * n  # dx = dy = pad: no shift
    assert torch.equal(augment_from_seeds(imgs, torch.tensor([centre]), pad), imgs)
    assert torch.equal(augment_from_seeds(imgs, torch.tensor([centre + n * n]), pad), imgs.flip(2))
    shifted = augment_from_seeds(imgs, torch.tensor([(pad + 1) + pad * n]), pad)  # dx = pad + 1: one pixel left
    assert torch.equal(shifted[0, :, :-1], imgs[0, :, 1:]) and (shifted[0, :, -1] == 0).all()
    with pytest.raises(ValueError, match="uint8"):
        augment_from_seeds(imgs.float(), torch.tensor([0]))
    with pytest.raises(ValueError, match="seeds"):
        augment_from_seeds(imgs, torch.tensor([0, 1]))


# ---------------------------------------------------------------------------------------------- round trip
def test_round_trip_k_equals_c_is_exact(single, teacher, data):
    cache = TeacherCache.open(single)
    assert (cache.num_samples, cache.num_replays, cache.num_classes, cache.topk, cache.feature_dim) == (60, 2, C, C, 8)
    assert cache.dataset_name == "synthetic" and cache.teacher_id == teacher.teacher_id
    assert cache.bytes_per_sample_per_replay == 4 * C + 4 + 8 + 4 <= 512
    idx = np.arange(0, 60, 3)
    logits, feats = teacher.predict(data.images[idx])
    assert logits.softmax(1).max(1).values.mean() > 0.5  # a peaked teacher, so the test has teeth
    for temp in (1.0, 4.0):
        want = torch.softmax(logits / temp, dim=1)
        got = cache.soft_targets(0, idx, temperature=temp)
        assert got.shape == (len(idx), C)
        torch.testing.assert_close(got, want, atol=2e-3, rtol=0)
        torch.testing.assert_close(got.sum(1), torch.ones(len(idx)))
    cls, lg = cache.topk(0, idx)
    assert cls.dtype == torch.int64 and lg.shape == (len(idx), C)
    torch.testing.assert_close(lg, logits.gather(1, cls), atol=0.02, rtol=1e-3)
    assert torch.equal(cls[:, 0], logits.argmax(1))
    # features: PCA coordinates; with D=8 of 32 dims the reconstruction is close to the real thing
    mean, comps = cache.feature_basis()
    assert comps.shape == (8, teacher.feature_dim)
    torch.testing.assert_close(comps @ comps.T, torch.eye(8), atol=1e-4, rtol=0)
    coords = cache.features(0, idx)
    torch.testing.assert_close(coords, (feats - mean) @ comps.T, atol=float(cache._pca["scale"].max()), rtol=0)
    assert torch.equal(cache.seeds(0, idx), torch.full((len(idx),), -1))


def test_replay_matches_teacher_on_replayed_augmentation(single, teacher, data):
    cache = TeacherCache.open(single)
    idx = torch.tensor([1, 7, 30, 59])
    seeds = cache.seeds(1, idx)
    assert seeds.dtype == torch.int64 and (seeds >= 0).all()
    aug = augment_from_seeds(torch.from_numpy(data.images)[idx], seeds)
    assert torch.equal(cache.images(1, idx, data.images), aug)
    logits, _ = teacher.predict(aug)
    torch.testing.assert_close(cache.soft_targets(1, idx), logits.softmax(1), atol=2e-3, rtol=0)
    with pytest.raises(IndexError):
        cache.soft_targets(2, idx)
    with pytest.raises(IndexError):
        cache.seeds(0, [60])


def test_topk_below_c_shares_the_remaining_mass(teacher, data, tmp_path):
    k = 3
    build_cache(teacher, data, tmp_path / "k3", replays=1, topk=k, feature_dim=0, **FAST)
    cache = TeacherCache.open(tmp_path / "k3")
    assert cache.topk == k and cache.bytes_per_sample_per_replay == 4 * k + 4 + 4
    idx = np.arange(10)
    p_true = teacher.predict(data.images[idx])[0].softmax(1)
    got = cache.soft_targets(0, idx)
    top = p_true.topk(k, dim=1)
    torch.testing.assert_close(got.gather(1, top.indices), top.values, atol=2e-3, rtol=0)
    rest = (1 - top.values.sum(1, keepdim=True)) / (C - k)
    mask = torch.ones_like(got, dtype=torch.bool).scatter_(1, top.indices, False)
    torch.testing.assert_close(got[mask].view(10, C - k), rest.expand(-1, C - k), atol=2e-3, rtol=0)
    torch.testing.assert_close(got.sum(1), torch.ones(10))
    hot = cache.soft_targets(0, idx, temperature=5.0)  # a higher temperature flattens, still sums to 1
    assert (hot.max(1).values < got.max(1).values).all()
    with pytest.raises(ValueError, match="no features"):
        cache.features(0, idx)


def test_features_only_teacher(clip_dir, data, tmp_path):
    t = load_teacher(str(clip_dir), C)
    assert t.num_classes is None and t.feature_dim == 16
    build_cache(t, data, tmp_path / "clip", replays=2, topk=10, feature_dim=6, **FAST)
    cache = TeacherCache.open(tmp_path / "clip")
    assert cache.num_classes is None and cache.topk == 0 and cache.bytes_per_sample_per_replay == 6 + 4
    assert cache.features(1, [0, 1, 2]).shape == (3, 6)
    with pytest.raises(ValueError, match="features only"):
        cache.soft_targets(0, [0])
    with pytest.raises(ValueError, match="features only"):
        cache.topk(0, [0])


# ---------------------------------------------------------------------------------------------- sharding, resuming
def _equal_caches(a, b):
    ca, cb = TeacherCache.open(a), TeacherCache.open(b)
    assert ca._t.keys() == cb._t.keys()
    for k in ca._t:
        assert torch.equal(ca._t[k], cb._t[k]), k
    # same shard files (safetensors orders its metadata at random, so the bytes of equal files can differ)
    assert [(e["file"], e["start"], e["stop"]) for e in ca.manifest["shards"]] == \
        [(e["file"], e["start"], e["stop"]) for e in cb.manifest["shards"]]
    torch.testing.assert_close(ca.feature_basis(), cb.feature_basis(), rtol=0, atol=0)


def test_two_shards_into_one_folder_equal_a_single_build(single, teacher, data, tmp_path):
    out = tmp_path / "sharded"
    build_cache(teacher, data, out, replays=2, topk=C, feature_dim=8, shard=(1, 2), **FAST)
    with pytest.raises(ValueError, match="incomplete"):
        TeacherCache.open(out)
    build_cache(teacher, data, out, replays=2, topk=C, feature_dim=8, shard=(0, 2), **FAST)
    _equal_caches(single, out)
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ValueError, match="shard"):
        parse_shard("4/4")


def test_interrupted_build_resumes_and_keeps_finished_shards(single, teacher, data, tmp_path):
    out = tmp_path / "resume"
    with pytest.raises(RuntimeError, match="simulated"):
        build_cache(teacher, data, out, replays=2, topk=C, feature_dim=8, _fail_after=60, **FAST)
    done = json.loads((out / MANIFEST).read_text())["shards"]
    assert len(done) == 1 and not json.loads((out / MANIFEST).read_text())["complete"]
    first = out / done[0]["file"]
    before = first.stat().st_mtime_ns
    build_cache(teacher, data, out, replays=2, topk=C, feature_dim=8, **FAST)
    assert first.stat().st_mtime_ns == before  # kept, not recomputed
    _equal_caches(single, out)
    # a deleted shard is rebuilt, the others are kept
    victim = out / json.loads((out / MANIFEST).read_text())["shards"][1]["file"]
    victim.unlink()
    build_cache(teacher, data, out, replays=2, topk=C, feature_dim=8, **FAST)
    assert first.stat().st_mtime_ns == before and victim.exists()
    _equal_caches(single, out)


# ---------------------------------------------------------------------------------------------- damaged caches
@pytest.fixture
def copy_of(single, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(single, dst)
    return dst


def _a_shard(folder):
    return folder / json.loads((folder / MANIFEST).read_text())["shards"][0]["file"]


def test_corrupt_shard_names_the_file(copy_of):
    f = _a_shard(copy_of)
    raw = bytearray(f.read_bytes())
    raw[-5] ^= 0xFF
    f.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=f"{f.name}.*corrupt"):
        TeacherCache.open(copy_of)


def test_truncated_shard_names_the_file(copy_of):
    f = _a_shard(copy_of)
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"{f.name}.*truncated"):
        TeacherCache.open(copy_of, verify=False)


def test_edited_manifest_is_detected(copy_of):
    m = json.loads((copy_of / MANIFEST).read_text())
    m["compression"]["topk"] = 5
    (copy_of / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ValueError, match="manifest.json.*edited"):
        TeacherCache.open(copy_of)
    (copy_of / MANIFEST).write_text("{ not json")
    with pytest.raises(ValueError, match="manifest.json"):
        TeacherCache.open(copy_of)


def test_missing_folder_or_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        TeacherCache.open(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="manifest"):
        TeacherCache.open(tmp_path)


def test_mismatched_settings_overwrite_nothing(copy_of, teacher, data, clip_dir):
    before = _snapshot(copy_of)
    with pytest.raises(ValueError, match="different settings.*topk"):
        build_cache(teacher, data, copy_of, replays=2, topk=5, feature_dim=8, **FAST)
    with pytest.raises(ValueError, match="different settings"):
        build_cache(teacher, _images(60, seed=9), copy_of, replays=2, topk=C, feature_dim=8, **FAST)
    other = load_teacher(str(clip_dir), C)
    with pytest.raises(ValueError, match="different settings"):
        build_cache(other, data, copy_of, replays=2, topk=C, feature_dim=8, **FAST)
    assert _snapshot(copy_of) == before


def test_cache_checks_the_students_images(single):
    cache = TeacherCache.open(single)
    cache.check_dataset(_images(60), full=True)
    with pytest.raises(ValueError, match="shape"):
        cache.check_images(np.zeros((60, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="channels"):
        cache.check_images(np.zeros((60, 16, 16, 2), np.uint8))
    with pytest.raises(ValueError, match="differ"):
        cache.check_dataset(_images(60, seed=3), full=True)


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_images_are_rejected_before_writing(teacher, tmp_path):
    bad = ImageSet("x", "train", np.zeros((8, 16, 16, 2), np.uint8), np.zeros(8, np.int64), tuple("0123456789"))
    with pytest.raises(ValueError, match="channels"):
        build_cache(teacher, bad, tmp_path / "a", **FAST)
    tiny = ImageSet("x", "train", np.zeros((8, 3, 3, 1), np.uint8), np.zeros(8, np.int64), tuple("0123456789"))
    with pytest.raises(ValueError, match="too small"):
        build_cache(teacher, tiny, tmp_path / "b", **FAST)
    five = ImageSet("x", "train", np.zeros((8, 16, 16, 1), np.uint8), np.zeros(8, np.int64), tuple("01234"))
    with pytest.raises(ValueError, match="classes"):
        build_cache(teacher, five, tmp_path / "c", **FAST)
    assert not any((tmp_path / n).exists() for n in "abc")


def test_refuses_a_non_cache_folder(teacher, data, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        build_cache(teacher, data, tmp_path, **FAST)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_cli_builds_verifies_and_reports_errors(vit_dir, tmp_path, capsys):
    from sdr_tosc.cli import main

    out = tmp_path / "cli"
    js = tmp_path / "r.json"
    assert main(["cache", "--teacher", str(vit_dir), "--limit", "40", "--out", str(out), "--replays", "2",
                 "--topk", "5", "--feature-dim", "4", "--chunk-size", "16", "--batch-size", "16",
                 "--pca-samples", "20", "--no-progress", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert res["complete"] and res["dataset"]["num_samples"] == 40 and res["bytes_per_sample_per_replay"] == 4 * 5 + 4 + 4 + 4
    assert main(["cache", "--verify", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    before = _snapshot(out)
    assert main(["cache", "--teacher", str(vit_dir), "--limit", "40", "--out", str(out), "--topk", "3",
                 "--no-progress"]) == 1
    assert "different settings" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert main(["cache", "--dataset", "no-such-set", "--out", str(tmp_path / "x")]) == 1
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["cache", "--teacher", str(tmp_path / "no-such-model"), "--limit", "8",
                 "--out", str(tmp_path / "y")]) == 1
    assert "cannot load teacher" in capsys.readouterr().err
    assert main(["cache", "--shard", "3/2", "--out", str(tmp_path / "z")]) == 1
    for bad, msg in ((["--finetune-from", str(tmp_path / "t.safetensors")], "needs --finetune-teacher"),
                     (["--finetune-teacher", "1", "--finetune-from", str(tmp_path / "t.safetensors")], "not found"),
                     (["--finetune-teacher", "1", "--label-smoothing", "1"], "--label-smoothing"),
                     (["--finetune-teacher", "1", "--finetune-lr", "0"], "--finetune-lr")):
        assert main(["cache", *bad, "--out", str(tmp_path / "z")]) == 1
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    # a corrupt file: --verify fails naming it
    f = _a_shard(out)
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    assert main(["cache", "--verify", str(out)]) == 1
    assert f.name in capsys.readouterr().err


def test_teacher_folder_without_weights(vit_dir, data, tmp_path):
    empty = tmp_path / "noweights"
    empty.mkdir()
    (empty / "config.json").write_text((vit_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        build_cache(str(empty), data, tmp_path / "out", **FAST)
    assert not (tmp_path / "out").exists()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_shipped_default_cache_verifies():
    from sdr_tosc.commands.cache import ZOO, default_teacher_file

    folder = ZOO / "cache" / "fashion-mnist-effnetlite0"
    if not (folder / MANIFEST).exists():
        pytest.skip("the default cache is not built (scripts/build_default_cache.sh)")
    cache = TeacherCache.open(folder)  # sha256 of every shard
    assert (cache.num_samples, cache.num_replays, cache.topk, cache.feature_dim) == (60000, 4, 10, 64)
    assert cache.bytes_per_sample_per_replay <= 512 and cache.summary()["total_bytes"] < 40e6
    assert cache.manifest["teacher"]["test_acc"] >= 0.935
    info = json.loads((ZOO / "teacher-efficientnet-lite0-fashion-mnist.json").read_text())
    assert info["test_acc"] >= 0.935 and info["sha256"] == sha256_file(ZOO / info["file"])
    assert default_teacher_file("fashion-mnist") == ZOO / info["file"]
    p = cache.soft_targets(0, np.arange(100))
    torch.testing.assert_close(p.sum(1), torch.ones(100))


def test_builder_names_stay_importable_from_cache():
    """The builder moved to cache_build; the names it had in cache resolve to the same objects."""
    from sdr_tosc.semantic import cache, cache_build

    for name in ("build_cache", "cache_settings", "parse_shard", "shard_file_name", "weights_sha256"):
        assert getattr(cache, name) is getattr(cache_build, name)
    assert cache.shard_file_name(0, 24) == "shard-0000000-0000024.safetensors"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = cache.no_such_name
