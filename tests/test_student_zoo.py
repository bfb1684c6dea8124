"""The shipped students (sdr_tosc/zoo): the issue's targets checked at reduced size (1000 test images).

The full-size figures come from ``benchmarks/bench_student.py``; thresholds here leave room for the
smaller sample (binomial standard error ~0.8 points at 93 % on 1000 images).
"""

from __future__ import annotations

import numpy as np
import pytest
from _student_fixtures import fmnist

from sdr_tosc.semantic.checkpoint import load_checkpoint, read_checkpoint_metadata
from sdr_tosc.semantic.evaluate import accuracy_vs_snr
from sdr_tosc.zoo import baseline_path, default_student_path, teacher_record

pytestmark = pytest.mark.skipif(not default_student_path().exists(), reason="default student not shipped yet")

SNRS = [-5.0, 0.0, 10.0, 25.0]


@pytest.fixture(scope="module")
def data():
    return fmnist("test", 1000, offset=5000)


@pytest.fixture(scope="module")
def student():
    return load_checkpoint(default_student_path())


@pytest.fixture(scope="module")
def curves(student, data):
    out = {"student": dict(zip(SNRS, accuracy_vs_snr(student, data, SNRS), strict=True))}
    for name in ("fixed_snr", "no_kd"):
        if baseline_path(name).exists():
            out[name] = dict(zip(SNRS, accuracy_vs_snr(load_checkpoint(baseline_path(name)), data, SNRS), strict=True))
    return out


def test_shipped_student_is_small_and_carries_its_recipe(student):
    assert default_student_path().stat().st_size <= 2 * 1024 * 1024
    record, _ = teacher_record()
    assert record is not None, "the shipped teacher's JSON record is missing from sdr_tosc/zoo"
    assert student.num_parameters() <= record["parameters"] / 20, "issue target: <= 1/20 of the teacher"
    extra = read_checkpoint_metadata(default_student_path())["extra"]
    assert extra["complete"] and extra["train_config"]["kd"] and extra["train_config"]["adaptive"]
    assert extra["dataset"]["num_samples"] == 60000, "trained on the full training set"


def test_shipped_student_accuracy_targets(curves):
    s = curves["student"]
    assert s[25.0] >= 0.915, s  # 93.5 % on the full test set (target 93)
    assert s[0.0] >= 0.90, s
    assert s[-5.0] >= 0.85, s


def test_adaptive_vs_fixed_snr_baseline(curves):
    """The issue's target (adaptive >= fixed-SNR at every SNR within 0.3 points, >= 5 points ahead at -5 dB) is met
    on the full test set (benchmarks/bench_student.py: +5.8 points at -5 dB, +0.1 to +0.6 from 0 to 25 dB). On
    these 1000 images the sample noise of each curve is ~0.8 points (the fixed student leads by 0.9 at 10 dB
    here), so the tie rule is checked with a 1.5-point allowance and the lead at -5 dB with 4 points."""
    if "fixed_snr" not in curves:
        pytest.skip("fixed-SNR baseline not shipped")
    s, f = curves["student"], curves["fixed_snr"]
    assert all(s[x] >= f[x] - 0.015 for x in SNRS), (s, f)
    assert s[-5.0] - f[-5.0] >= 0.04, (s, f)


def test_no_kd_baseline_loads_and_works(curves):
    if "no_kd" not in curves:
        pytest.skip("no-KD baseline not shipped")
    assert curves["no_kd"][25.0] > 0.85


def test_shipped_student_over_a_numpy_awgn_link(student, data):
    """encode -> unit-power symbols -> AWGN at 10 dB (numpy) -> decode: the radio contract end to end."""
    rng = np.random.default_rng(0)
    imgs, labels = data.images[:300], data.labels[:300]
    sym = student.encode(imgs, 10.0)
    assert sym.shape == (300, student.num_symbols_for(10.0)) and sym.dtype == np.complex64
    no = 10 ** (-10 / 10)
    y = sym + np.sqrt(no / 2) * (rng.standard_normal(sym.shape) + 1j * rng.standard_normal(sym.shape))
    acc = float((student.decode(y.astype(np.complex64), 10.0).argmax(1) == labels).mean())
    assert acc > 0.88
