"""Teacher adapters: the offline EfficientNet-Lite0 default, its teacher file, Hugging Face models by folder."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sdr_tosc.semantic.datasets import load_dataset
from sdr_tosc.semantic.teacher_finetune import finetune_teacher, warmup_cosine_lr
from sdr_tosc.semantic.teachers import (
    EfficientNetLiteTeacher,
    _lite0_imagenet_state,
    load_teacher,
    load_teacher_file,
    save_teacher,
)


@pytest.fixture(scope="module")
def few():
    try:
        data = load_dataset("fashion-mnist", "test")
    except FileNotFoundError as exc:  # pragma: no cover
        pytest.skip(str(exc))
    return data.subset(np.arange(6))


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    return load_teacher("efficientnet-lite0", num_classes=10)


def test_efficientnet_lite0_loads_imagenet_weights_and_runs(lite0, few):
    assert isinstance(lite0, EfficientNetLiteTeacher)
    ref = _lite0_imagenet_state()
    stem = next(k for k in ref if k.endswith("_conv_stem.weight"))
    assert torch.equal(lite0.backbone.state_dict()[stem], ref[stem])  # the pretrained weights, not random ones
    x = lite0.preprocess(few.images)
    assert x.shape == (6, 3, 64, 64) and x.dtype == torch.float32
    logits, feats = lite0.predict(few.images)
    assert logits.shape == (6, 10) and feats.shape == (6, 1280) and torch.isfinite(feats).all()
    d = lite0.describe()
    assert d["feature_dim"] == 1280 and d["num_classes"] == 10 and 3e6 < d["parameters"] < 4e6
    with pytest.raises(ValueError, match="uint8"):
        lite0.preprocess(few.images.astype(np.float32))
    with pytest.raises(ValueError, match="1\\|3"):
        lite0.preprocess(np.zeros((2, 28, 28, 2), np.uint8))
    with pytest.raises(ValueError, match="num_classes"):
        load_teacher("efficientnet-lite0")


def test_teacher_file_fp16_round_trip(lite0, few, tmp_path):
    p32, p16 = tmp_path / "t32.safetensors", tmp_path / "t16.safetensors"
    hist = [{"epoch": 1, "test_acc": 0.9}, {"epoch": 2, "test_acc": 0.935}]
    save_teacher(lite0, p32, extra={"history": hist})
    save_teacher(lite0, p16, extra={"history": hist}, dtype=torch.float16)
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    t32, t16 = load_teacher_file(p32), load_teacher_file(p16)
    assert t16.describe()["test_acc"] == 0.935 and t16.describe()["epochs"] == 2
    ref = lite0.predict(few.images)[0]
    torch.testing.assert_close(t32.predict(few.images)[0], ref)
    torch.testing.assert_close(t16.predict(few.images)[0], ref, atol=0.05, rtol=0.02)
    assert load_teacher(str(p16), 10).num_classes == 10
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_teacher_file(bad)
    with pytest.raises(FileNotFoundError):
        load_teacher_file(tmp_path / "missing.safetensors")


def test_two_stage_finetune_chains_history_and_resumes(few, tmp_path):
    """Stage 1 from ImageNet, stage 2 from the stage-1 file without label smoothing (what the shipped teacher
    went through): the stage-2 file lists all epochs, names its parent by sha256, and a re-run resumes (no-op)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from sdr_tosc.fileio import sha256_file

    s1, s2 = tmp_path / "s1.safetensors", tmp_path / "s2.safetensors"
    h1 = finetune_teacher(few, None, s1, epochs=1, batch_size=3, input_size=32, progress=False)
    assert h1["config"]["init"] is None and h1["config"]["label_smoothing"] == 0.1
    h2 = finetune_teacher(few, None, s2, epochs=2, batch_size=3, lr=3e-4, input_size=32, progress=False,
                          init=s1, label_smoothing=0.0)
    assert [e["epoch"] for e in h2["epochs"]] == [2, 3]
    assert all(e["label_smoothing"] == 0.0 and e["lr"] == 3e-4 for e in h2["epochs"])
    assert h2["config"]["init"] == {"file": "s1.safetensors", "sha256": sha256_file(s1), "epochs": 1}
    t2 = load_teacher_file(s2)
    assert [e["epoch"] for e in t2.history] == [1, 2, 3] and t2.input_size == 32
    before = sha256_file(s2)
    again = finetune_teacher(few, None, s2, epochs=2, batch_size=3, lr=3e-4, input_size=32, progress=False,
                             init=s1, label_smoothing=0.0)
    assert again["epochs"] == h2["epochs"] and sha256_file(s2) == before  # finished: resumed, nothing re-trained
    with pytest.raises(ValueError, match="32 px"):
        finetune_teacher(few, None, tmp_path / "s3.safetensors", epochs=1, input_size=64, progress=False, init=s1)
    with pytest.raises(ValueError, match="label_smoothing"):
        finetune_teacher(few, None, tmp_path / "s4.safetensors", epochs=1, progress=False, label_smoothing=1.0)
    assert not (tmp_path / "s3.safetensors").exists() and not (tmp_path / "s4.safetensors").exists()


def test_hf_teacher_errors_and_head_mismatch(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, num_labels=5)
    folder = tmp_path / "vit"
    transformers.ViTForImageClassification(cfg).save_pretrained(folder)
    t = load_teacher(str(folder), 5)
    assert t.num_classes == 5 and t.input_size == 16 and t.feature_dim == 16
    logits, feats = t.predict(np.zeros((3, 28, 28, 1), np.uint8))
    assert logits.shape == (3, 5) and feats.shape == (3, 16)
    with pytest.raises(ValueError, match="--finetune-teacher EPOCHS"):  # 5-class head for a 10-class task
        load_teacher(str(folder), 10)
    assert load_teacher(str(folder), 10, features_only=True).num_classes is None  # asked for: features only
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_teacher(str(folder), 5)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_teacher(str(folder), 5)
    with pytest.raises(ValueError, match="cannot load teacher"):
        load_teacher("no-such-org/no-such-model", 5)
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a model folder"):
        load_teacher(str(f), 5)


def test_transformers_classifier_is_fine_tuned_to_the_data_sets_classes(tmp_path, capsys):
    """A 5-class ViT (saved offline) gets a new 10-class head, resumes, and is then cached as the teacher."""
    transformers = pytest.importorskip("transformers")
    import json

    from sdr_tosc.cli import main
    from sdr_tosc.semantic.datasets import load_dataset
    from sdr_tosc.semantic.hf_finetune import STATE, finetune_hf_teacher

    torch.manual_seed(0)
    cfg = transformers.ViTConfig(image_size=28, patch_size=7, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32, num_labels=5)
    src = tmp_path / "vit5"
    transformers.ViTForImageClassification(cfg).save_pretrained(src)
    train = load_dataset("fashion-mnist", "train").subset(np.arange(256))
    test = load_dataset("fashion-mnist", "test").subset(np.arange(200))
    out = tmp_path / "vit10"
    h1 = finetune_hf_teacher(str(src), train, test, out, epochs=1, batch_size=32, lr=3e-3, progress=False)
    assert len(h1["history"]) == 1 and (out / "config.json").exists() and (out / STATE).exists()
    t = load_teacher(str(out), 10)
    assert t.num_classes == 10, "the fine-tuned folder has the data set's 10 classes"
    h2 = finetune_hf_teacher(str(src), train, test, out, epochs=2, batch_size=32, lr=3e-3, progress=False)
    assert [e["epoch"] for e in h2["history"]] == [1, 2], "resumed after epoch 1"
    # it trains (a 16-wide ViT learns slowly: 0.23 test accuracy after 4 epochs of 512 images, chance 0.10)
    assert h2["history"][1]["train_loss"] < h2["history"][0]["train_loss"], h2["history"]
    with pytest.raises(ValueError, match="other settings"):
        finetune_hf_teacher(str(src), train, test, out, epochs=2, batch_size=16, progress=False)
    # the CLI: refused without fine-tuning, features-only when asked, fine-tune + cache in one command
    assert main(["cache", "--teacher", str(src), "--limit", "64", "--out", str(tmp_path / "c0"), "--no-progress"]) == 1
    assert "--finetune-teacher" in capsys.readouterr().err
    js = tmp_path / "c.json"
    rc = main(["cache", "--teacher", str(src), "--finetune-teacher", "1", "--finetune-lr", "3e-3", "--limit", "128",
               "--teacher-out", str(tmp_path / "cli-vit10"), "--freeze-backbone", "--chunk-size", "64",
               "--pca-samples", "64", "--feature-dim", "4", "--device", "cpu", "--out", str(tmp_path / "c1"),
               "--no-progress", "--json", str(js)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads(js.read_text())
    assert summary["teacher"]["num_classes"] == 10 and summary["topk"] == 10
    state = json.loads((tmp_path / "cli-vit10" / STATE).read_text())
    assert state["settings"]["freeze_backbone"] is True and state["settings"]["num_samples"] == 128


def test_warmup_cosine_lr():
    """Linear warm-up to the peak, then cosine decay to 0 at the last step; no warm-up starts at the peak."""
    assert [warmup_cosine_lr(s, 1.0, 4, 10) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine_lr(4, 1.0, 4, 10) == 1.0
    assert warmup_cosine_lr(7, 1.0, 4, 10) == pytest.approx(0.5)
    assert warmup_cosine_lr(10, 1.0, 4, 10) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine_lr(0, 2e-3, 0, 10) == 2e-3


def test_finetune_names_stay_importable_from_teachers_and_the_module_runs():
    """Fine-tuning moved to teacher_finetune; teachers still exports its names and runs as a module."""
    from sdr_tosc.semantic import teacher_finetune, teachers

    for name in ("augment_batch", "evaluate_teacher", "finetune_teacher"):
        assert getattr(teachers, name) is getattr(teacher_finetune, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = teachers.no_such_name
    out = subprocess.run([sys.executable, "-m", "sdr_tosc.semantic.teachers", "--help"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "fine-tune the default EfficientNet-Lite0 teacher" in out and "--init TEACHER" in out
