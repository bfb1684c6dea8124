"""Child processes die with their parent, however the parent ends (SIGTERM, SIGKILL, a crash).

A parent that spawns a helper process (the channel simulator) puts its own pid in the child's environment
(:func:`child_env`); the child calls :func:`die_with_parent` first thing. On Linux that asks the kernel
(``prctl(PR_SET_PDEATHSIG, SIGTERM)`` through ctypes) to send the child SIGTERM the moment the parent
exits, even on SIGKILL, and the child's own SIGTERM handler then shuts it down cleanly. Elsewhere, or if
prctl is unavailable, a daemon thread polls the parent pid twice a second and sends SIGTERM to itself
when the parent is gone. Either way a parent that already died before the call is noticed at once.

PR_SET_PDEATHSIG fires when the *thread* that spawned the child ends, so spawn helpers from a thread that
lives as long as you need them (the main thread, in every sdr-tosc command).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger(__name__)

#: Environment variable holding the pid of the process the child must not outlive.
PARENT_ENV = "SDR_TOSC_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: ``os.environ``) naming this process as the parent to die with."""
    out = dict(os.environ if env is None else env)
    out[PARENT_ENV] = str(os.getpid())
    return out


def _prctl_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, interval_s: float) -> None:
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent:
            log.warning("parent process %d is gone: stopping", parent)
            os.kill(os.getpid(), signal.SIGTERM)
            return


def die_with_parent(parent_pid: int | None = None, interval_s: float = 0.5) -> bool:
    """Arrange SIGTERM to this process when ``parent_pid`` (default: from :data:`PARENT_ENV`) exits.

    Returns False when there is nothing to watch (started by hand, no parent named). Install the
    process's SIGTERM handler before or right after calling this.
    """
    if parent_pid is None:
        raw = os.environ.get(PARENT_ENV, "")
        if not raw.isdigit():
            return False
        parent_pid = int(raw)
    kernel = _prctl_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect (or we were re-parented)
        os.kill(os.getpid(), signal.SIGTERM)
        return True
    if not kernel:
        threading.Thread(target=_watch, args=(parent_pid, interval_s), name="sdr-tosc-parent-watch",
                         daemon=True).start()
    return True
