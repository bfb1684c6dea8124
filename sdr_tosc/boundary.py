"""Checks for values that cross a boundary (a socket, a command line, a file) and a counter for dropped input.

One way of saying "this value is wrong, and what to do": :func:`finite` / :func:`integer` raise
:class:`ValueError` naming the value, its range and the offending input. :class:`DropLog` is what a server
uses for a message it refuses: the message is dropped (never forwarded), counted per kind and logged once
per kind, so a flood of garbage neither stops the process nor floods its log.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

#: Largest integer accepted for counters and timestamps read from the wire (fits int64 and uint64).
MAX_INT = (1 << 63) - 1


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (error messages quote untrusted input)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def finite(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf) -> float:
    """``float(value)`` if it is a real number (not bool) in ``[lo, hi]``; else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {short(value)}")
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {short(value)}") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {short(value)}")
    return v


def integer(name: str, value: Any, lo: int = 0, hi: int = MAX_INT) -> int:
    """``value`` as an int in ``[lo, hi]`` (an integral float such as 3.0 is accepted); else ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {short(value)}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {short(value)}")
        value = int(value)
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {short(value)}")
    return value


class DropLog:
    """Counts refused messages per kind and logs the first of each kind (later ones only count).

    ``drop(kind, detail)`` returns the new count of that kind; ``counts`` is a plain dict for stats replies.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def drop(self, kind: str, detail: object = "") -> int:
        with self._lock:
            n = self.counts.get(kind, 0) + 1
            self.counts[kind] = n
        if n == 1:
            self.log.warning("dropped a bad %s (%s): %s; further ones of this kind are only counted",
                             self.what, kind, detail)
        return n

    @property
    def total(self) -> int:
        return sum(self.counts.values())
