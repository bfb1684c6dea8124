"""Where training and inference run: the ``--device`` choice, mixed precision and torchrun/DDP.

* :func:`resolve_device` turns ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a :class:`torch.device`
  (``auto``: CUDA when available, else CPU); asking for CUDA on a machine without it is a one-line
  ``ValueError``. Under torchrun each rank takes ``cuda:LOCAL_RANK``.
* :func:`autocast` is ``torch.autocast`` on CUDA (bfloat16 where the GPU supports it, else float16 with a
  gradient scaler) and a no-op on CPU: CPU runs stay in float32 and bit-reproducible.
* :func:`distributed_context` reads torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` and, when the world
  has more than one process, initialises the default process group (``nccl`` on CUDA, ``gloo`` on CPU).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` -> :class:`torch.device`.

    ``local_rank`` (torchrun): a bare ``cuda`` / ``auto`` on a CUDA machine becomes ``cuda:local_rank``.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available here (torch {torch.__version__}, "
                             f"built with CUDA {torch.version.cuda}); use --device cpu or auto")
        index = local_rank or 0
        if text.startswith("cuda:"):
            try:
                index = int(text.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"--device {spec}: use {DEVICE_CHOICES}") from None
        if not 0 <= index < torch.cuda.device_count():
            raise ValueError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise ValueError(f"--device {spec!r}: use {DEVICE_CHOICES}")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``device``: None on CPU (float32), bfloat16 or float16 on CUDA."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, enabled: bool = True) -> Any:
    """``torch.autocast`` on CUDA (see :func:`amp_dtype`); a null context on CPU or when not ``enabled``."""
    dtype = amp_dtype(device)
    if not enabled or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def grad_scaler(device: torch.device, enabled: bool = True) -> Any:
    """A ``torch.amp.GradScaler`` when autocast runs in float16 (bfloat16 and float32 need none), else None."""
    if enabled and amp_dtype(device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: Any = None,
                   clip_params: Any = None, max_norm: float = 5.0) -> None:
    """``zero_grad``, backward, optional gradient-norm clipping of ``clip_params``, step: through ``scaler``
    (float16 autocast on CUDA: scaled loss, gradients unscaled before clipping) or plainly."""
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if clip_params is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(clip_params, max_norm)
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        if clip_params is not None:
            torch.nn.utils.clip_grad_norm_(clip_params, max_norm)
        opt.step()


def warmup_cosine_lr(step: int, lr: float, warmup: int, total: int) -> float:
    """The learning rate at ``step``: linear warm-up over ``warmup`` steps to ``lr``, then cosine decay to 0
    at ``total`` (the schedule of the student's distillation and of both teacher fine-tunings)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (``world_size == 1``: a plain single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sum a few floats over all ranks (float64 on CPU for gloo; on the device for nccl)."""
        if not self.active:
            return list(values)
        dev = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        t = torch.tensor(values, dtype=torch.float64, device=dev)
        torch.distributed.all_reduce(t)
        return [float(v) for v in t.cpu()]


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``0, 1, 0`` outside torchrun)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (they are set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world, local


@contextlib.contextmanager
def distributed_context(device_spec: str = "auto") -> Iterator[tuple[Dist, torch.device]]:
    """Join the torchrun job (if any) and pick this rank's device; tears the process group down on exit."""
    rank, world, local = env_world()
    device = resolve_device(device_spec, local_rank=local if world > 1 else None)
    if world == 1:
        yield Dist(), device
        return
    import torch.distributed as dist  # noqa: PLC0415

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend=backend)
    try:
        yield Dist(rank, world, local, backend), device
    finally:
        if owned:
            # the DistributedDataParallel wrapper holds the group through reference cycles (its hooks): free
            # it first, or its reducer is destroyed after the group at interpreter exit and the process aborts
            # ("terminate called without an active exception", seen on a clean CI run)
            import gc  # noqa: PLC0415

            gc.collect()
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
