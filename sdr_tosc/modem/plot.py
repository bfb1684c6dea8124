"""Diagnostic plot of what the receiver saw: constellation of a frame's symbols + spectrum of the buffer.

matplotlib is imported lazily with the non-interactive Agg backend, so this module costs nothing until
used and works headless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import signal

from .frame import RxFrame


def plot_rx(
    path: str | Path,
    frame: RxFrame,
    iq: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    sample_rate_hz: float = 1e6,
    title: str | None = None,
) -> Path:
    """Write a PNG: constellation of ``frame.symbols`` (and ``reference``) + Welch PSD of ``iq``.

    Args:
        path: output PNG path (parent directories are created).
        frame: a frame from :meth:`Modem.demodulate`.
        iq: complex[k] received buffer for the spectrum panel (optional).
        reference: complex[n] sent symbols to overlay (optional), e.g. to see the error vector.
        sample_rate_hz: sample rate of ``iq`` (frequency axis).
        title: figure title (default: seq, SNR and CFO of the frame).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    panels = 2 if iq is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.8), squeeze=False)
    ax = axes[0, 0]
    sym = np.asarray(frame.symbols)
    label = f"received ({sym.size})"
    if reference is not None:
        ref = np.asarray(reference)
        if ref.shape == sym.shape and sym.size:
            evm_db = 10 * np.log10(np.mean(np.abs(sym - ref) ** 2) / max(np.mean(np.abs(ref) ** 2), 1e-30))
            label += f", EVM {evm_db:.1f} dB"
            k = min(sym.size, 300)  # error vectors of the first symbols
            ax.plot(
                np.stack([ref.real[:k], sym.real[:k]]),
                np.stack([ref.imag[:k], sym.imag[:k]]),
                c="0.6",
                lw=0.4,
            )
    ax.scatter(sym.real, sym.imag, s=4, c="tab:blue", alpha=0.5, label=label)
    if reference is not None:
        ax.scatter(ref.real, ref.imag, s=10, c="tab:orange", marker="x", lw=0.8, alpha=0.8, label="sent")
    lim = 1.2 * max(1.0, float(np.percentile(np.abs(sym), 99.5)) if sym.size else 1.0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("I")
    ax.set_ylabel("Q")
    ax.set_title("equalised payload symbols")
    ax.legend(loc="upper right", fontsize=8)
    if iq is not None:
        x = np.asarray(iq)
        ax2 = axes[0, 1]
        nper = int(min(1024, max(16, x.size)))
        f, pxx = signal.welch(x, fs=sample_rate_hz, nperseg=nper, return_onesided=False, detrend=False)
        order = np.argsort(f)
        ax2.plot(f[order] / 1e3, 10 * np.log10(np.maximum(pxx[order], 1e-20)), lw=0.8)
        ax2.set_xlabel("frequency (kHz)")
        ax2.set_ylabel("PSD (dB/Hz, full scale)")
        ax2.set_title("received spectrum (Welch)")
        ax2.grid(True, alpha=0.3)
    hdr = frame.header
    fig.suptitle(
        title
        or f"seq {hdr.seq}  header {'ok' if frame.header_ok else 'FAILED'}  SNR {frame.snr_db:.1f} dB  "
        f"CFO {frame.cfo_hz / 1e3:.2f} kHz  start {frame.start}"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
