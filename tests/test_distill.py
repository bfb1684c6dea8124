"""Distillation training: it learns, KD carries the teacher's knowledge, resume is exact, nothing is clobbered."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _student_fixtures import OracleCache, fmnist

from sdr_tosc.semantic.checkpoint import load_checkpoint
from sdr_tosc.semantic.distill import TrainConfig, labelled_subset, state_path_for, train

TINY = {"epochs": 2, "batch_size": 64, "eval_samples": 200, "threads": 1}


@pytest.fixture(scope="module")
def train_set():
    return fmnist("train", 1024)


@pytest.fixture(scope="module")
def test_set():
    return fmnist("test", 400)


def _acc(model, data, snr=10.0):
    pred = model.predict(data.images, snr, generator=torch.Generator().manual_seed(0))
    return float((pred == data.labels).mean())


def test_tiny_run_learns_without_kd(tmp_path, train_set, test_set):
    out = tmp_path / "s.safetensors"
    r = train(TrainConfig(kd=False, epochs=3, batch_size=64, lr=4e-3, threads=1), None, train_set, out,
              progress=False, test=test_set.subset(np.arange(200)))
    assert r["complete"] and r["epochs_run"] == 3
    m = load_checkpoint(out)
    acc = _acc(m, test_set)
    assert acc > 0.55, f"accuracy {acc} should be far above chance (0.10)"
    hist = r["history"]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert set(hist[0]["test_acc_awgn"]) == {"-5", "10", "25"}
    assert not state_path_for(out).exists(), "state file is removed when training completes"


def test_kd_carries_teacher_knowledge_with_few_labels(tmp_path, train_set, test_set):
    """With 1% labels, KD from an (oracle) cache beats labels alone by a wide margin; top-k-aware path used."""
    cache = OracleCache(train_set, confidence=0.9, topk=3)
    common = {**TINY, "epochs": 3, "label_fraction": 0.01, "steps_per_epoch": 16, "lr": 4e-3, "temperature": 1.0}
    train(TrainConfig(kd=True, **common), cache, train_set, tmp_path / "kd.safetensors", progress=False)
    train(TrainConfig(kd=False, **common), cache, train_set, tmp_path / "nokd.safetensors", progress=False)
    acc_kd = _acc(load_checkpoint(tmp_path / "kd.safetensors"), test_set)
    acc_no = _acc(load_checkpoint(tmp_path / "nokd.safetensors"), test_set)
    assert acc_kd > acc_no + 0.05, (acc_kd, acc_no)
    extra = load_checkpoint(tmp_path / "kd.safetensors", with_extra=True)[1]
    assert extra["labelled_samples"] == 10 and extra["train_config"]["kd"] is True


def test_feature_term_runs(tmp_path, train_set):
    cache = OracleCache(train_set, feature_dim=10)
    cfg = TrainConfig(**{**TINY, "epochs": 1}, steps_per_epoch=2, feature_weight=0.5)
    r = train(cfg, cache, train_set, tmp_path / "f.safetensors", progress=False)
    assert r["history"][0]["feature_loss"] > 0


def test_resume_after_interruption_gives_the_same_weights(tmp_path, train_set):
    data = train_set.subset(np.arange(256))
    cache = OracleCache(data)
    cfg = TrainConfig(**{**TINY, "epochs": 2}, rayleigh_prob=0.5)
    full = tmp_path / "full.safetensors"
    train(cfg, cache, data, full, progress=False)
    part = tmp_path / "part.safetensors"
    r1 = train(cfg, cache, data, part, progress=False, stop_after_epochs=1)  # "interrupted" after epoch 1
    assert not r1["complete"] and state_path_for(part).exists()
    assert load_checkpoint(part, with_extra=True)[1]["epoch"] == 1  # the epoch-1 checkpoint is usable
    r2 = train(cfg, cache, data, part, progress=False)
    assert r2["start_epoch"] == 1 and r2["complete"] and [h["epoch"] for h in r2["history"]] == [1, 2]
    a, b = load_checkpoint(full).state_dict(), load_checkpoint(part).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    r3 = train(cfg, cache, data, part, progress=False)  # already complete: nothing to do
    assert r3.get("already_complete")


def test_existing_files_are_not_overwritten(tmp_path, train_set):
    data = train_set.subset(np.arange(128))
    foreign = tmp_path / "x.safetensors"
    foreign.write_bytes(b"precious bytes")
    with pytest.raises(ValueError, match="nothing was changed"):
        train(TrainConfig(kd=False, **TINY), None, data, foreign, progress=False)
    assert foreign.read_bytes() == b"precious bytes"
    done = tmp_path / "done.safetensors"
    train(TrainConfig(kd=False, **{**TINY, "epochs": 1}), None, data, done, progress=False)
    before = done.read_bytes()
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(kd=False, **{**TINY, "epochs": 1, "lr": 1e-4}), None, data, done, progress=False)
    assert done.read_bytes() == before
    with pytest.raises(ValueError, match="needs a teacher cache"):
        train(TrainConfig(kd=True, **TINY), None, data, tmp_path / "y.safetensors", progress=False)
    assert not (tmp_path / "y.safetensors").exists()


def test_bad_train_configs():
    with pytest.raises(ValueError, match="label_fraction"):
        TrainConfig(label_fraction=0.0)
    with pytest.raises(ValueError, match="snr_min_db"):
        TrainConfig(snr_min_db=10, snr_max_db=5)
    with pytest.raises(ValueError, match="model"):
        TrainConfig(model="nope")


def test_labelled_subset_is_stratified_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    a = labelled_subset(labels, 0.05, seed=0)
    assert len(a) == 50 and np.all(np.bincount(labels[a]) == 5)
    assert np.array_equal(a, labelled_subset(labels, 0.05, seed=0))
    assert not np.array_equal(a, labelled_subset(labels, 0.05, seed=1))
    assert len(labelled_subset(labels, 1.0, 0)) == 1000


def test_real_cache_integration(tmp_path):
    """A real (tiny) cache built by build_cache drives a short KD run end to end."""
    transformers = pytest.importorskip("transformers")
    from sdr_tosc.semantic.cache import TeacherCache
    from sdr_tosc.semantic.cache_build import build_cache
    from sdr_tosc.semantic.teachers import load_teacher

    data = fmnist("train", 96)
    torch.manual_seed(0)
    vcfg = transformers.ViTConfig(image_size=28, patch_size=7, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32, num_labels=10)
    transformers.ViTForImageClassification(vcfg).save_pretrained(tmp_path / "vit")
    teacher = load_teacher(str(tmp_path / "vit"), 10)
    build_cache(teacher, data, tmp_path / "cache", replays=2, topk=5, feature_dim=4, batch_size=48,
                chunk_size=48, pca_samples=48, progress=False)
    cache = TeacherCache.open(tmp_path / "cache")
    out = tmp_path / "s.safetensors"
    r = train(TrainConfig(**{**TINY, "epochs": 1}, feature_weight=0.1), cache, data, out, progress=False)
    assert r["complete"] and np.isfinite(r["history"][0]["kd_loss"]) and r["history"][0]["kd_loss"] > 0
    extra = load_checkpoint(out, with_extra=True)[1]
    assert extra["cache"]["teacher_id"] == cache.teacher_id
    json.dumps(extra)


def test_train_cli_with_toml_config_and_json(tmp_path, capsys):
    from sdr_tosc.cli import main

    toml = tmp_path / "train.toml"
    toml.write_text("[train]\nepochs = 1\nbatch_size = 64\nthreads = 1\nkd = false\nlr = 0.002\n")
    out, js = tmp_path / "s.safetensors", tmp_path / "r.json"
    rc = main(["train", "--config", str(toml), "--limit", "256", "--out", str(out), "--no-progress", "--json", str(js)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(js.read_text())
    assert r["complete"] and r["config"]["lr"] == 0.002 and r["config"]["epochs"] == 1
    model, extra = load_checkpoint(out, with_extra=True)
    assert extra["train_config"]["batch_size"] == 64 and model.adaptive
    toml.write_text("[train]\nepochz = 1\n")
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "t.safetensors")]) == 1
    assert "epochz" in capsys.readouterr().err


def test_build_student_picks_the_fixed_rate_variant(train_set):
    """--no-adaptive builds the model's fixed-rate variant (40 symbols for fmnist-cnn) unless told otherwise."""
    from sdr_tosc.semantic.distill import build_student

    adaptive = build_student(TrainConfig(), train_set)
    assert adaptive.adaptive and adaptive.k_max == 64
    fixed = build_student(TrainConfig(adaptive=False, fixed_snr_db=10.0), train_set)
    assert not fixed.adaptive and {fixed.num_symbols_for(s) for s in (-5.0, 10.0, 25.0)} == {40}
    assert fixed.num_symbols_for(10.0) == adaptive.num_symbols_for(10.0), "same rate at the fixed model's SNR"
    assert build_student(TrainConfig(adaptive=False, num_symbols=24), train_set).k_max == 24
    assert build_student(TrainConfig(num_symbols=8), train_set).config.min_symbols == 8
    with pytest.raises(ValueError, match="num_symbols"):
        TrainConfig(num_symbols=-1)
