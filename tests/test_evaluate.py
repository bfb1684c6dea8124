"""Evaluation: JSON schema and plot at reduced size, the digital baseline's cliff, bad input via the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _student_fixtures import fmnist

from sdr_tosc.cli import main
from sdr_tosc.semantic.checkpoint import load_checkpoint, save_checkpoint
from sdr_tosc.semantic.evaluate import (
    EvalConfig,
    _dequantise,
    _quantise,
    accuracy_vs_snr,
    digital_accuracy_vs_snr,
)
from sdr_tosc.semantic.student import create_model
from sdr_tosc.zoo import baseline_path, default_student_path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    out = {}
    for name, spec in (("student", "fmnist-cnn"), ("fixed", "fmnist-cnn-fixed"), ("nokd", "fmnist-cnn")):
        out[name] = save_checkpoint(create_model(spec).eval(), d / f"{name}.safetensors",
                                    extra={"teacher_accuracy": 0.93, "dataset": {"name": "fashion-mnist"}})
    return out


def test_evaluate_cli_json_schema_and_plot(tmp_path, ckpts, capsys):
    js, png = tmp_path / "out.json", tmp_path / "out.png"
    rc = main(["evaluate", "--checkpoint", str(ckpts["student"]), "--fixed-snr-checkpoint", str(ckpts["fixed"]),
               "--no-kd-checkpoint", str(ckpts["nokd"]), "--snr-db", "-5:25:15", "--channel", "awgn",
               "--limit", "60", "--json", str(js), "--plot", str(png), "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    r = json.loads(js.read_text())
    assert r["snr_db"] == [-5.0, 10.0, 25.0] and r["channel"] == "awgn"
    assert set(r["accuracy"]) >= {"student", "fixed_snr", "no_kd", "digital"}
    for name in ("student", "fixed_snr", "no_kd", "digital"):
        assert len(r["accuracy"][name]) == 3 and all(0.0 <= a <= 1.0 for a in r["accuracy"][name])
    assert r["teacher_accuracy"] == 0.93
    assert r["num_images"] == 60
    assert r["symbols_per_image"]["student"] == [64, 40, 16]
    assert r["symbols_per_image"]["fixed_snr"] == [40, 40, 40]
    assert r["digital"]["symbols_per_image"] > 16 and r["digital"]["bits_per_image"] == 16 * 2 * 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out.config.toml").exists()


def test_evaluate_rayleigh_runs(ckpts):
    m = load_checkpoint(ckpts["student"])
    data = fmnist("test", 40)
    acc = accuracy_vs_snr(m, data, [0.0, 20.0], channel="rayleigh")
    dig, info = digital_accuracy_vs_snr(m, data, [0.0, 20.0], channel="rayleigh")
    assert len(acc) == len(dig) == 2 and info["modulation"] == "16qam"
    assert accuracy_vs_snr(m, data, [5.0], seed=3) == accuracy_vs_snr(m, data, [5.0], seed=3), "seeded"


def test_quantiser_round_trip():
    v = np.random.default_rng(0).uniform(-2.5, 2.5, size=(7, 32)).astype(np.float32)
    b = _quantise(v, 4, 2.0)
    assert b.shape == (7, 128) and set(np.unique(b)) <= {0, 1}
    back = _dequantise(b, 32, 4, 2.0)
    step = 4.0 / 15
    assert np.all(np.abs(back - np.clip(v, -2, 2)) <= step / 2 + 1e-6)


def test_digital_baseline_is_error_free_at_high_snr_and_falls_off_a_cliff(ckpts):
    """At high SNR the bits arrive intact (accuracy == error-free accuracy); far below threshold they do not."""
    m = load_checkpoint(ckpts["student"])
    data = fmnist("test", 50)
    (hi, lo), info = digital_accuracy_vs_snr(m, data, [30.0, -5.0])
    assert hi == info["error_free_accuracy"]
    path = default_student_path()
    if path.exists():  # with the shipped student the cliff shows in accuracy too
        trained = load_checkpoint(path)
        data = fmnist("test", 300)
        (hi, mid, lo), _ = digital_accuracy_vs_snr(trained, data, [25.0, 15.0, -5.0])
        assert hi > 0.8 and mid > 0.8 and lo < 0.4, (hi, mid, lo)


@pytest.mark.parametrize("bad", ["5:1:2", "a:b:c", "0:10", "1,,x", ""])
def test_bad_snr_range_exits_2_naming_the_flag(bad, tmp_path, capsys):
    js = tmp_path / "o.json"
    assert main(["evaluate", "--snr-db", bad, "--json", str(js)]) == 2
    assert "--snr-db" in capsys.readouterr().err
    assert not js.exists()


def test_checkpoint_from_another_architecture_is_a_clear_error(tmp_path, capsys):
    from safetensors.torch import save_file

    other = tmp_path / "teacher.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "sdr-tosc-teacher"})
    js = tmp_path / "o.json"
    js.write_text("keep me")
    rc = main(["evaluate", "--checkpoint", str(other), "--no-baselines", "--json", str(js), "--limit", "10"])
    assert rc == 1
    assert "not an sdr-tosc student checkpoint" in capsys.readouterr().err
    assert js.read_text() == "keep me", "nothing is overwritten on error"


def test_student_for_other_images_is_a_clear_error(tmp_path, capsys):
    cifar = save_checkpoint(create_model("cifar-cnn"), tmp_path / "c.safetensors")
    rc = main(["evaluate", "--checkpoint", str(cifar), "--dataset", "fashion-mnist", "--no-baselines",
               "--no-digital", "--limit", "10", "--snr-db", "10"])
    assert rc == 1
    assert "expects images of shape (32, 32, 3)" in capsys.readouterr().err


def test_eval_config_validation():
    with pytest.raises(ValueError, match="channel"):
        EvalConfig(channel="none")
    with pytest.raises(ValueError, match="finite"):
        EvalConfig(snr_db=(float("inf"),))


def test_train_cli_bad_input_changes_nothing(tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    out.write_bytes(b"precious")
    assert main(["train", "--no-kd", "--limit", "64", "--epochs", "1", "--out", str(out), "--no-progress"]) == 1
    assert "nothing was changed" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["train", "--no-kd", "--snr-range-db", "20:5", "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "--snr-range-db" in capsys.readouterr().err
    assert main(["train", "--no-kd", "--label-fraction", "0", "--out", str(tmp_path / "y.safetensors")]) == 1
    assert "label_fraction" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()


def test_zoo_paths():
    assert default_student_path().name == "student-fmnist-default.safetensors"
    assert baseline_path("fixed_snr").name.endswith(".safetensors")
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_path("bogus")
