"""Accuracy vs SNR of a student, with the baselines on the same axes, as JSON and a PNG plot.

Curves (one accuracy per SNR, as fractions):

* ``student``: the checkpoint under test through the simulated channel (its ``forward`` in eval mode,
  which is exactly ``encode`` -> channel -> ``decode``; see the tests).
* ``fixed_snr``: the student without the channel-adaptive module, trained at one SNR (10 dB).
* ``no_kd``: the adaptive student trained on labels only (no teacher cache).
* ``digital``: separate source/channel coding through the modem's digital mode: the student's encoder
  output at ``digital_source_snr_db`` (its ``k`` sent values, real and imaginary parts) is uniformly
  quantised to ``digital_bits`` bits each (clipped to +-``digital_clip``), protected by the K=7 rate-1/2
  convolutional code, interleaved, mapped to ``digital_modulation`` (:class:`sdr_tosc.modem.DigitalMode`),
  sent through the same channel (AWGN, or one Rayleigh coefficient per image with zero-forcing and
  per-symbol noise variance in the LLRs; noise and fading from :mod:`sdr_tosc.channel.impairments`), soft-Viterbi decoded, de-quantised and classified by the student's
  decoder as an error-free input (conditioned on ``digital_source_snr_db``). One codeword per image, no
  retransmission: when the code fails the bits are wrong and so is the class, which is the cliff.
* ``teacher_accuracy``: the teacher's noise-free test accuracy (upper bound), drawn as a horizontal line.

Noise is seeded per (curve, SNR), so runs are reproducible.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..channel import impairments as imp
from .channels import CHANNELS
from .datasets import ImageSet
from .student import SemanticStudent

log = logging.getLogger(__name__)

BASELINES = ("fixed_snr", "no_kd")
CURVES = ("student", "fixed_snr", "no_kd", "digital")


@dataclass(frozen=True)
class EvalConfig:
    snr_db: tuple[float, ...] = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    channel: str = "awgn"
    limit: int = 0  # 0 = the whole test set
    seed: int = 0
    batch_size: int = 1000
    digital: bool = True
    digital_bits: int = 4
    digital_clip: float = 2.0
    digital_modulation: str = "16qam"
    digital_source_snr_db: float = 25.0

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS or self.channel == "none":
            raise ValueError(f"channel must be one of awgn, rayleigh, rician, got {self.channel!r}")
        if not self.snr_db:
            raise ValueError("snr_db needs at least one value")
        if not all(math.isfinite(s) for s in self.snr_db):
            raise ValueError("snr_db values must be finite")
        if not 1 <= self.digital_bits <= 12:
            raise ValueError("digital_bits must be in 1..12")
        if self.limit < 0:
            raise ValueError("limit must be >= 0")


@torch.no_grad()
def accuracy_vs_snr(model: SemanticStudent, data: ImageSet, snrs: list[float] | tuple[float, ...],
                    channel: str = "awgn", seed: int = 0, batch_size: int = 1000,
                    device: str | torch.device = "cpu") -> list[float]:
    """Top-1 accuracy at each SNR through the simulated ``channel`` (seeded).

    ``device``: where the forward passes run (a copy of the model goes there; the noise is drawn by a
    generator on that device, so CUDA and CPU draw different, equally valid, noise).
    """
    device = torch.device(device)
    if next(model.parameters()).device != device:
        import copy  # noqa: PLC0415

        model = copy.deepcopy(model).to(device)
    out = []
    for j, s in enumerate(snrs):
        g = torch.Generator(device=device).manual_seed(seed * 1000 + j)
        pred = model.predict(data.images, float(s), channel=channel, generator=g, batch_size=batch_size)
        out.append(float((pred == data.labels).mean()))
    return out


def _quantise(v: np.ndarray, bits: int, clip: float) -> np.ndarray:
    levels = 2 ** bits
    q = np.round((np.clip(v, -clip, clip) + clip) / (2 * clip) * (levels - 1)).astype(np.int64)
    shifts = np.arange(bits - 1, -1, -1)
    return ((q[..., None] >> shifts) & 1).astype(np.uint8).reshape(v.shape[0], -1)


def _dequantise(b: np.ndarray, n_values: int, bits: int, clip: float) -> np.ndarray:
    levels = 2 ** bits
    q = (b.reshape(b.shape[0], n_values, bits).astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(-1)
    return q / (levels - 1) * (2 * clip) - clip


def digital_accuracy_vs_snr(
    model: SemanticStudent,
    data: ImageSet,
    snrs: list[float] | tuple[float, ...],
    channel: str = "awgn",
    bits: int = 4,
    clip: float = 2.0,
    modulation: str = "16qam",
    source_snr_db: float = 25.0,
    seed: int = 0,
) -> tuple[list[float], dict[str, Any]]:
    """The separate source/channel coding baseline (module docstring); returns accuracies and its settings."""
    from ..modem import DigitalConfig, DigitalMode  # noqa: PLC0415
    from ..modem.fec import viterbi_decode  # noqa: PLC0415

    dm = DigitalMode(DigitalConfig(modulation=modulation))
    n = len(data)
    sym = np.concatenate([model.encode(data.images[i:i + 1000], source_snr_db) for i in range(0, n, 1000)])
    k = sym.shape[1]
    values = sym.view(np.float32).reshape(n, 2 * k)
    msg = _quantise(values, bits, clip)  # [n, 2k*bits]
    n_bits = msg.shape[1]
    tx = np.stack([dm.encode(msg[i]) for i in range(n)])  # [n, n_sym] unit-power QAM
    n_sym = tx.shape[1]
    clean_logits = model.decode(_dequantise(msg, 2 * k, bits, clip).astype(np.float32).view(np.complex64), source_snr_db)
    accs = []
    for j, s in enumerate(snrs):
        rng = np.random.default_rng([seed, 17, j])
        no = imp.noise_variance_for_snr(1.0, float(s))  # unit-power QAM symbols
        noise = imp.complex_noise(tx.size, no, rng).reshape(tx.shape)
        if channel == "awgn":
            y, nv = tx + noise, np.full(n, no)
        else:  # block fading, one coefficient per image (K = 1 = 0 dB for Rician, as the torch channel)
            h = imp.flat_fading(n, channel, rng, rician_k_db=0.0)[:, None]
            y = (h * tx + noise) / h  # zero-forcing with known CSI
            nv = no / np.abs(h[:, 0]) ** 2
        llr = np.stack([dm.llrs(y[i], nv[i], n_bits) for i in range(n)])
        rx_bits = np.concatenate([viterbi_decode(llr[i:i + 2000]) for i in range(0, n, 2000)])
        rx = _dequantise(rx_bits, 2 * k, bits, clip).astype(np.float32)
        logits = model.decode(np.ascontiguousarray(rx).view(np.complex64), source_snr_db)
        accs.append(float((logits.argmax(1) == data.labels).mean()))
    info = {"source": f"student encoder at {source_snr_db:g} dB ({k} complex symbols = {2 * k} real values)",
            "bits_per_value": bits, "clip": clip, "bits_per_image": int(n_bits),
            "code": "K=7 rate-1/2 convolutional (133, 171), soft Viterbi", "modulation": modulation,
            "symbols_per_image": int(n_sym),
            "error_free_accuracy": float((clean_logits.argmax(1) == data.labels).mean())}
    return accs, info


def evaluate(
    student: SemanticStudent,
    data: ImageSet,
    config: EvalConfig,
    baselines: dict[str, SemanticStudent | None] | None = None,
    teacher_accuracy: float | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """All curves of the module docstring for ``data`` (already limited) -> the result dict (JSON-able).

    ``device``: where the student and baseline curves run; the digital baseline's encoder/decoder is the
    numpy link path and always runs on the CPU."""
    if tuple(student.config.image_shape) != tuple(data.image_shape):
        raise ValueError(f"the student expects images of shape {tuple(student.config.image_shape)}, the test set "
                         f"{data.name} has {tuple(data.image_shape)}")
    snrs = [float(s) for s in config.snr_db]
    t0 = time.perf_counter()
    acc: dict[str, list[float] | None] = {}
    symbols: dict[str, Any] = {}

    def note(name: str) -> None:
        if progress:
            print(f"  {name}: " + " ".join(f"{s:g}dB={a:.4f}" for s, a in zip(snrs, acc[name] or [], strict=False)), flush=True)

    acc["student"] = accuracy_vs_snr(student, data, snrs, config.channel, config.seed, config.batch_size, device)
    symbols["student"] = [student.num_symbols_for(s) for s in snrs]
    note("student")
    for name in BASELINES:
        m = (baselines or {}).get(name)
        if m is None:
            acc[name] = None
            continue
        if tuple(m.config.image_shape) != tuple(data.image_shape):
            raise ValueError(f"baseline {name} expects images of shape {tuple(m.config.image_shape)}, not "
                             f"{tuple(data.image_shape)}")
        acc[name] = accuracy_vs_snr(m, data, snrs, config.channel, config.seed + 1, config.batch_size, device)
        symbols[name] = [m.num_symbols_for(s) for s in snrs]
        note(name)
    digital_info = None
    if config.digital:
        acc["digital"], digital_info = digital_accuracy_vs_snr(
            student, data, snrs, config.channel, config.digital_bits, config.digital_clip,
            config.digital_modulation, config.digital_source_snr_db, config.seed + 2)
        symbols["digital"] = [digital_info["symbols_per_image"]] * len(snrs)
        note("digital")
    else:
        acc["digital"] = None
    return {
        "snr_db": snrs,
        "channel": config.channel,
        "accuracy": acc,
        "teacher_accuracy": teacher_accuracy,
        "symbols_per_image": symbols,
        "digital": digital_info,
        "num_images": len(data),
        "dataset": {"name": data.name, "split": data.split},
        "student_parameters": student.num_parameters(),
        "seconds": round(time.perf_counter() - t0, 1),
        "device": str(device),
    }


SNR_NOTE = ("SNR: mean received signal power over the burst / complex noise variance per sample "
            "(for the semantic symbols: unit-power symbols, noise variance 10^(-SNR/10) per symbol)")


def zoomed_ylim(curves: list[list[float]], lo_floor: float = 0.0, pad: float = 2.0) -> tuple[float, float]:
    """Accuracy-axis limits (%) that fit ``curves`` (fractions) with ``pad`` points to spare."""
    vals = [100 * v for ys in curves for v in ys if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 100.0
    lo, hi = min(vals) - pad, max(vals) + pad
    lo = max(lo_floor, math.floor(lo))
    hi = min(100.0, math.ceil(hi))
    return (lo, hi) if hi - lo >= 4 else (max(0.0, hi - 4), hi)


def plot_accuracy(result: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Accuracy vs SNR (zoomed on the students, plus the full 0-100 % view) and symbols per image vs SNR.

    Written atomically as PNG. The teacher is a horizontal line; the SNR definition is stated on the figure.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from ..fileio import atomic_path  # noqa: PLC0415

    snrs = result["snr_db"]
    sym = result.get("symbols_per_image", {})
    labels = {
        "student": "student (KD + channel-adaptive)",
        "fixed_snr": "student, no adaptive module, trained at 10 dB",
        "no_kd": "student, no KD (labels only)",
        "digital": "separate coding: 4-bit latent + conv. code + QAM",
    }
    if result.get("digital"):
        d = result["digital"]
        labels["digital"] = (f"separate coding: {d['bits_per_value']}-bit latent, K=7 r1/2 code, "
                             f"{d['modulation'].upper()}")
    styles = {"student": ("C0", "o", "-"), "fixed_snr": ("C1", "s", "--"), "no_kd": ("C2", "^", "-."),
              "digital": ("C3", "D", ":")}
    fig = plt.figure(figsize=(11, 6.4), dpi=120)
    gs = fig.add_gridspec(2, 2, width_ratios=(1.7, 1), height_ratios=(1, 1))
    ax = fig.add_subplot(gs[:, 0])
    ax_full = fig.add_subplot(gs[0, 1])
    ax_k = fig.add_subplot(gs[1, 1])
    teacher = result.get("teacher_accuracy")
    students = [result["accuracy"][n] for n in ("student", "fixed_snr", "no_kd") if result["accuracy"].get(n)]
    lo, hi = zoomed_ylim(students + ([[teacher]] if teacher is not None else []))
    below = []
    for name in CURVES:
        ys = result["accuracy"].get(name)
        if ys is None:
            continue
        color, marker, ls = styles[name]
        pct = [100 * y for y in ys]
        for a in (ax, ax_full):
            a.plot(snrs, pct, color=color, marker=marker, linestyle=ls, label=labels[name] if a is ax else None)
        below += [(name, x, y) for x, y in zip(snrs, pct, strict=True) if y < lo]
        k = sym.get(name)
        if k:
            ax_k.plot(snrs, k, color=color, marker=marker, linestyle=ls)
    if teacher is not None:
        for a in (ax, ax_full):
            a.axhline(100 * teacher, color="k", linestyle="--", linewidth=1,
                      label=f"teacher, noise-free ({100 * teacher:.1f}%)" if a is ax else None)
    ax.set_ylim(lo, hi)
    if below:
        xs = sorted({x for _, x, _ in below})
        ax.annotate(f"below {lo:.0f} % (see the full view): {', '.join(f'{x:g}' for x in xs)} dB",
                    xy=(0.01, 0.01), xycoords="axes fraction", fontsize=7.5, color="0.3")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(snrs)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"{result['dataset']['name']} ({result['num_images']} test images), "
                          f"{result['channel'].upper()} channel", fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=7.5, frameon=False)
    ax_full.set_ylim(0, 100)
    ax_full.set_xticks(snrs)
    ax_full.set_ylabel("accuracy (%)")
    ax_full.set_title("full range", fontsize=9)
    ax_full.grid(True, alpha=0.3)
    ax_full.axhspan(lo, hi, color="0.85", zorder=0)
    ax_k.set_xticks(snrs)
    ax_k.set_xlabel("SNR (dB)")
    ax_k.set_ylabel("complex symbols / image")
    ax_k.set_title("symbols per image (adaptive module's choice)", fontsize=9)
    ax_k.grid(True, alpha=0.3)
    ax_k.set_ylim(bottom=0)
    fig.text(0.01, 0.005, SNR_NOTE, fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.025, 1, 1))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def teacher_accuracy_from_manifest(manifest: dict[str, Any]) -> float | None:
    """The teacher's test accuracy recorded in a teacher-cache manifest (``extra`` or the teacher's history)."""
    extra = manifest.get("extra") or {}
    for key in ("teacher_test_acc", "teacher_accuracy"):
        if isinstance(extra.get(key), (int, float)):
            return float(extra[key])
    per_epoch = extra.get("teacher_test_acc_per_epoch")
    if per_epoch and isinstance(per_epoch[-1], (int, float)):
        return float(per_epoch[-1])
    hist = (manifest.get("teacher") or {}).get("history")
    if isinstance(hist, list) and hist and isinstance(hist[-1], dict) and hist[-1].get("test_acc") is not None:
        return float(hist[-1]["test_acc"])
    return None
