"""Optional TensorBoard logging of a training run (``--tensorboard DIR``).

:class:`TrainingLog` writes scalars with ``torch.utils.tensorboard`` (the ``tensorboard`` package:
``pip install 'sdr-tosc[tensorboard]'``; the set-up script installs it). The x axis of every scalar is the
optimizer step, so per-step and per-epoch curves line up and a resumed run continues the same curves:

* every ``every`` steps: ``step/loss`` (running mean over the epoch so far) and ``step/lr``;
* after each epoch: ``loss/<term>`` (total, task, kd, rate, feature: the epoch means), ``accuracy/train``,
  ``accuracy/test_awgn_<snr>dB`` (the held-out check at each SNR, when there is one), ``epoch`` and
  ``time/epoch_seconds``, at the step that ended the epoch.

Resuming after an interruption opens the folder with ``purge_step`` set to the first step after the last
finished epoch, so TensorBoard drops whatever the interrupted epoch had logged and the curves have no
doubled segment. Disabled (``log_dir=None``) or on a rank other than 0 every call is a no-op.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

EPOCH_TERMS = ("loss", "task_loss", "kd_loss", "rate_loss", "feature_loss")


def summary_writer(log_dir: str | os.PathLike[str], purge_step: int | None = None) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``; a clear error when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415
    except ImportError as exc:  # torch raises ImportError when the tensorboard package is absent
        raise ValueError(f"--tensorboard {log_dir}: the tensorboard package is not installed; install it with "
                         "\"pip install 'sdr-tosc[tensorboard]'\" (or pip install tensorboard)") from exc
    path = Path(log_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--tensorboard {log_dir}: exists and is not a folder")
    return SummaryWriter(log_dir=str(path), purge_step=purge_step)


class TrainingLog:
    """Scalars of one training run; ``log_dir=None`` or ``enabled=False`` makes every method a no-op."""

    def __init__(self, log_dir: str | os.PathLike[str] | None, *, steps_per_epoch: int, start_epoch: int = 0,
                 every: int = 20, enabled: bool = True, config: dict[str, Any] | None = None):
        self.steps_per_epoch = int(steps_per_epoch)
        self.every = max(1, int(every))
        self.writer = None
        if log_dir is None or not enabled:
            return
        purge = start_epoch * self.steps_per_epoch + 1 if start_epoch else None
        self.writer = summary_writer(log_dir, purge_step=purge)
        if config is not None and not start_epoch:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, sort_keys=True) + "\n```", 0)

    def step(self, epoch: int, i: int, running_loss: float, lr: float) -> None:
        """After step ``i`` (0-based) of ``epoch`` (0-based): the running loss every ``every`` steps."""
        if self.writer is None or (i + 1) % self.every:
            return
        g = epoch * self.steps_per_epoch + i + 1
        self.writer.add_scalar("step/loss", running_loss, g)
        self.writer.add_scalar("step/lr", lr, g)

    def epoch(self, record: dict[str, Any]) -> None:
        """The epoch's record (as in the run's history: ``epoch`` is 1-based)."""
        if self.writer is None:
            return
        g = int(record["epoch"]) * self.steps_per_epoch
        for k in EPOCH_TERMS:
            if k in record:
                self.writer.add_scalar("loss/" + ("total" if k == "loss" else k.removesuffix("_loss")), record[k], g)
        self.writer.add_scalar("accuracy/train", record["train_acc"], g)
        for snr, acc in (record.get("test_acc_awgn") or {}).items():
            self.writer.add_scalar(f"accuracy/test_awgn_{snr}dB", acc, g)
        self.writer.add_scalar("epoch", record["epoch"], g)
        self.writer.add_scalar("time/epoch_seconds", record["seconds"], g)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
