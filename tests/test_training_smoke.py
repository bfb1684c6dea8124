"""The whole recipe on small data through the CLI, and --device.

fine-tune a transformers classifier to the data set's classes -> cache --limit N -> train --limit N -> evaluate
-> demo with the new student over the channel simulator (the issue's smoke recipe, on 256 images).
"""

from __future__ import annotations

import json

import pytest
import torch

from sdr_tosc.cli import main
from sdr_tosc.semantic.runtime import amp_dtype, autocast, resolve_device
from sdr_tosc.semantic.student import load_checkpoint

transformers = pytest.importorskip("transformers")

N = 256


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    """A tiny ViT classifier with a 5-class head (not Fashion-MNIST's 10), saved with save_pretrained (offline)."""
    d = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=28, patch_size=7, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, num_labels=5)
    transformers.ViTForImageClassification(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def small_cache(vit_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    out = root / "c"
    # the 5-class head is refused for a 10-class data set; --finetune-teacher gives it a new head first
    rc = main(["cache", "--teacher", str(vit_dir), "--finetune-teacher", "1", "--finetune-lr", "3e-3",
               "--teacher-out", str(root / "vit10"), "--limit", str(N), "--replays", "2", "--topk", "10",
               "--feature-dim", "8", "--chunk-size", "128", "--pca-samples", "128", "--batch-size", "64",
               "--device", "cpu", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out


def test_fine_tune_cache_train_evaluate_demo_recipe_on_the_first_n_images(vit_dir, small_cache, tmp_path, capsys):
    manifest = json.loads((small_cache / "manifest.json").read_text())
    assert manifest["dataset"]["num_samples"] == N and manifest["complete"]
    ckpt, tj, ej = tmp_path / "s.safetensors", tmp_path / "t.json", tmp_path / "e.json"
    toml = tmp_path / "train.toml"
    toml.write_text("[train]\neval_samples = 100\nthreads = 1\n")
    rc = main(["train", "--cache", str(small_cache), "--limit", str(N), "--epochs", "3", "--batch-size", "32",
               "--config", str(toml), "--device", "cpu", "--out", str(ckpt), "--no-progress", "--json", str(tj)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(tj.read_text())
    assert r["complete"] and r["world_size"] == 1 and r["device"] == "cpu" and r["amp"] is None
    assert all(h["kd_loss"] > 0 for h in r["history"]), "the teacher's soft labels came from the cache"
    model, extra = load_checkpoint(ckpt, with_extra=True)
    assert extra["dataset"]["num_samples"] == N and manifest["teacher"]["num_classes"] == 10
    assert extra["cache"]["teacher_id"] == manifest["teacher"]["teacher_id"] == str(small_cache.parent / "vit10")
    assert extra["cache"]["path"] == str(small_cache)
    rc = main(["evaluate", "--checkpoint", str(ckpt), "--limit", "200", "--snr-db", "0,20", "--no-baselines",
               "--no-digital", "--device", "auto", "--json", str(ej)])
    assert rc == 0, capsys.readouterr().err
    e = json.loads(ej.read_text())
    assert e["num_images"] == 200 and e["device"] == "cpu"
    assert all(0.0 <= a <= 1.0 for a in e["accuracy"]["student"])
    # a plumbing check, not a quality one (the teacher is an untrained tiny ViT): the student learns something
    assert max(e["accuracy"]["student"]) > 0.2, "three epochs on 256 images beat chance (0.10)"
    assert r["history"][-1]["task_loss"] < r["history"][0]["task_loss"]
    # last step: the new student on the air (ZMQ radios through the channel simulator process)
    dj = tmp_path / "d.json"
    rc = main(["demo", "--checkpoint", str(ckpt), "--images", "64", "--snr-db", "20", "--json", str(dj), "-q"])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(dj.read_text())["summary"]
    assert d["images"] == 64 and d["received"] == 64 and d["frame_loss"] == 0.0
    assert abs(d["snr_db_mean"] - 20) < 1.5


def test_train_limit_must_match_the_cache(small_cache, tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    assert main(["train", "--cache", str(small_cache), "--limit", "128", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"pass --limit {N}" in err and "cache --limit 128" in err
    assert main(["train", "--cache", str(small_cache), "--out", str(out)]) == 1
    assert f"pass --limit {N}" in capsys.readouterr().err
    assert not out.exists()


def test_train_model_flag_picks_the_student_architecture(tmp_path, capsys):
    out, js = tmp_path / "s.safetensors", tmp_path / "r.json"
    rc = main(["train", "--no-kd", "--limit", "128", "--epochs", "1", "--batch-size", "64", "--model",
               "fmnist-cnn-fixed", "--threads", "1", "--device", "cpu", "--out", str(out), "--no-progress",
               "--json", str(js)])
    assert rc == 0, capsys.readouterr().err
    model, extra = load_checkpoint(out, with_extra=True)
    assert extra["train_config"]["model"] == "fmnist-cnn-fixed" and model.k_max == 40
    assert main(["train", "--no-kd", "--model", "no-such-net", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "no-such-net" in capsys.readouterr().err


def test_device_resolution_on_this_machine(capsys):
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert amp_dtype(torch.device("cpu")) is None
    with autocast(torch.device("cpu")):  # a no-op on CPU: float32 stays float32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda")
        for verb in (["train", "--no-kd", "--out", "x.safetensors"], ["evaluate"], ["cache", "--out", "x"]):
            assert main([*verb, "--device", "cuda"]) == 1
            err = capsys.readouterr().err.strip()
            assert "CUDA is not available here" in err and len(err.splitlines()) == 1, err
