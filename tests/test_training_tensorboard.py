"""``train --tensorboard DIR``: the scalars TensorBoard reads back match the run's history, resume included."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _student_fixtures import OracleCache, fmnist

from sdr_tosc.cli import main
from sdr_tosc.semantic.distill import TrainConfig, train

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

CFG = {"epochs": 3, "batch_size": 32, "eval_samples": 64, "threads": 1, "steps_per_epoch": 4}


def _scalars(folder):
    """{tag: [(step, value), ...]} as TensorBoard's own reader sees the folder (every run file in it)."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def data():
    return fmnist("train", 256), fmnist("test", 64)


def test_epoch_scalars_match_the_history(tmp_path, data):
    train_set, test_set = data
    tb = tmp_path / "tb"
    r = train(TrainConfig(**CFG), OracleCache(train_set), train_set, tmp_path / "s.safetensors", progress=False,
              test=test_set, tensorboard=tb)
    s = _scalars(tb)
    steps = CFG["steps_per_epoch"]
    assert [st for st, _ in s["loss/total"]] == [steps, 2 * steps, 3 * steps]
    for tag, key in (("loss/total", "loss"), ("loss/task", "task_loss"), ("loss/kd", "kd_loss"),
                     ("loss/rate", "rate_loss"), ("accuracy/train", "train_acc")):
        assert [v for _, v in s[tag]] == pytest.approx([h[key] for h in r["history"]], rel=1e-6), tag
    assert [v for _, v in s["accuracy/test_awgn_10dB"]] == pytest.approx(
        [h["test_acc_awgn"]["10"] for h in r["history"]])
    assert [v for _, v in s["epoch"]] == [1, 2, 3]
    # the running loss every 20 steps is absent with 4 steps per epoch; the learning rate follows the schedule
    assert "step/loss" not in s


def test_resumed_run_continues_the_curves_without_doubled_points(tmp_path, data):
    train_set, _ = data
    cfg = TrainConfig(**{**CFG, "steps_per_epoch": 20})
    out, tb = tmp_path / "s.safetensors", tmp_path / "tb"
    cache = OracleCache(train_set)
    r1 = train(cfg, cache, train_set, out, progress=False, stop_after_epochs=1, tensorboard=tb)
    assert not r1["complete"]
    r2 = train(cfg, cache, train_set, out, progress=False, tensorboard=tb)
    assert r2["complete"] and r2["start_epoch"] == 1
    s = _scalars(tb)
    assert [st for st, _ in s["loss/total"]] == [20, 40, 60]
    assert [v for _, v in s["loss/total"]] == pytest.approx([h["loss"] for h in r2["history"]], rel=1e-6)
    assert [st for st, _ in s["step/loss"]] == [20, 40, 60]  # every 20 optimizer steps
    lrs = [v for _, v in s["step/lr"]]
    assert lrs[0] > lrs[-1] > 0, "the cosine schedule decays"


def test_cli_flag_and_a_file_in_the_way(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    args = ["train", "--no-kd", "--limit", "64", "--epochs", "1", "--batch-size", "32", "--threads", "1",
            "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a.safetensors"), "--tensorboard", str(blocker)]) == 1
    assert "is not a folder" in capsys.readouterr().err
    js = tmp_path / "r.json"
    assert main([*args, "--out", str(tmp_path / "b.safetensors"), "--tensorboard", str(tmp_path / "tb"),
                 "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    s = _scalars(tmp_path / "tb")
    assert [v for _, v in s["loss/total"]] == pytest.approx([r["history"][0]["loss"]], rel=1e-6)
    assert np.isfinite([v for _, v in s["time/epoch_seconds"]]).all()
