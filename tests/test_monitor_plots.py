"""The figures a researcher reads: measure's campaign plot, evaluate's accuracy plot, demo's plot."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sdr_tosc.measure import campaign_figure, plot_campaign
from sdr_tosc.semantic.evaluate import plot_accuracy, zoomed_ylim


def _campaign() -> dict:
    def point(i, v, snr, acc, loss):  # noqa: ANN001, ANN202
        return {"point": i, "value": v, "snr_db_set": v, "scheme": "semantic", "accuracy": acc, "frame_loss": loss,
                "snr_db_mean": snr, "snr_true_db_mean": v, "air_samples_per_image": 120.0, "images": 50}
    points = [point(0, -10.0, None, 0.0, 1.0), point(1, 0.0, 0.3, 0.7, 0.1), point(2, 10.0, 10.1, 0.9, 0.0)]
    frames = [{"scheme": "semantic", "received": True, "snr_db": 0.2, "n_symbols": 40},
              {"scheme": "semantic", "received": True, "snr_db": 10.2, "n_symbols": 16}]
    binned = [{"scheme": "semantic", "snr_db": 0.0, "frames": 45, "accuracy": 0.78, "ci95": [0.64, 0.87]},
              {"scheme": "semantic", "snr_db": 10.0, "frames": 5, "accuracy": 0.8, "ci95": [0.38, 0.96]}]
    return {"points": points, "binned": binned, "frames": frames, "sweep": "sweep-snr-db"}


def test_campaign_figure_shows_counts_losses_channel_and_simulation(tmp_path):
    sim = {"snr_db": [-10.0, 0.0, 10.0], "accuracy": [0.3, 0.8, 0.92], "symbols_per_image": [64, 40, 16],
           "source": "computed"}
    fig = campaign_figure(_campaign(), "t", {"cfo_hz": 2000.0, "multipath": "epa", "fading": "none"}, sim)
    acc, cost, per_point = fig.axes[:3]
    labels = [t.get_text() for t in acc.get_legend().get_texts()]
    assert any("every frame lost" in t for t in labels)  # the all-lost point is drawn, not dropped
    assert any(t.startswith("simulation") for t in labels)
    assert any("< 30 frames" in t for t in labels)  # thin bins drawn apart
    assert {t.get_text() for t in acc.texts} >= {"45", "5"}  # frames per bin
    assert any("frames lost" in t.get_text() for t in per_point.get_legend().get_texts())
    assert per_point.get_xlabel() == "channel SNR set (dB)"
    assert "multipath epa" in fig._suptitle.get_text() and "50 images per point" in fig._suptitle.get_text()
    assert any("symbols per image" in t.get_text() for t in cost.get_legend().get_texts())
    plot_campaign(_campaign(), tmp_path / "m.png")
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_axis_zooms_on_the_students(tmp_path):
    assert zoomed_ylim([[0.85, 0.9, 0.935]]) == (83.0, 96.0)
    assert zoomed_ylim([[0.999]]) == (96.0, 100.0)
    result = {"snr_db": [0, 10], "channel": "awgn", "num_images": 10, "dataset": {"name": "fashion-mnist"},
              "accuracy": {"student": [0.85, 0.93], "fixed_snr": [0.86, 0.92], "digital": [0.1, 0.9]},
              "symbols_per_image": {"student": [48, 24], "fixed_snr": [32, 32]}, "teacher_accuracy": 0.94}
    plot_accuracy(result, tmp_path / "e.png")
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_figure_shows_reference_evm_burst_spectrum_and_wrong_images_first():
    from sdr_tosc.commands.demo import demo_figure

    rng = np.random.default_rng(0)
    tx = (rng.standard_normal(100) + 1j * rng.standard_normal(100)).astype(np.complex64)
    burst = {"rx": tx * 1.1, "tx": tx, "evm_pct": 10.0, "snr_db": 12.0, "iq": tx, "start": 0, "end": 100}
    labels = np.array([1, 2, 3, 4, 5, 6, 7])
    frames = [{"index": i, "pred": int(labels[i]) if i != 5 else 0} for i in range(7)]
    report = SimpleNamespace(frames=frames, accuracy=6 / 7, images=7, snr_db_mean=12.0)
    fig = demo_figure(report, burst, np.zeros((7, 28, 28, 1), np.uint8), labels, [str(i) for i in range(10)], 1e6)
    const, spec, first_image = fig.axes[:3]
    assert "EVM 10.0 %" in const.get_title()
    assert "transmitted" in [t.get_text() for t in const.get_legend().get_texts()]
    assert "burst" in spec.get_title()
    assert first_image.get_title().startswith("#5") and "wrong" in first_image.get_title()
