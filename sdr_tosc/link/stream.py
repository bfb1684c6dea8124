"""Frame detection on a continuous sample stream.

``Modem.demodulate`` finds the frames inside one buffer. A radio delivers an endless stream in chunks, and a
frame can straddle two chunks. :class:`StreamDemodulator` keeps the last ``max_frame_samples`` (+ margin) of
every chunk, prepends it to the next one, and reports each frame exactly once: a frame is reported when it
lies entirely in the buffer (its start is at least ``max_frame_samples`` before the buffer's end); later
frames wait for the next chunk. ``RxFrame.start`` is rewritten as the absolute sample index since the
stream began, so callers can relate frames to the radio's timeline.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


class StreamDemodulator:
    def __init__(self, modem: Any, max_frame_samples: int, margin_samples: int = 256):
        if max_frame_samples <= 0:
            raise ValueError(f"max_frame_samples must be > 0, got {max_frame_samples}")
        self.modem = modem
        self.max_frame_samples = int(max_frame_samples)
        self.margin = int(margin_samples)
        self._carry = np.zeros(0, dtype=np.complex64)
        self._carry_start = 0  # absolute index of _carry[0]
        self._reported_until = 0  # frames starting before this absolute index were already reported
        self.samples_in = 0

    def push(self, chunk: np.ndarray) -> list[Any]:
        """Add a chunk of samples; return the frames completed by it (absolute ``start``)."""
        chunk = np.asarray(chunk)
        buf = np.concatenate([self._carry, chunk.astype(np.complex64, copy=False)])
        base = self._carry_start
        self.samples_in += chunk.size
        end = base + buf.size
        cutoff = end - self.max_frame_samples  # frames starting before this are complete in buf
        frames = []
        for f in self.modem.demodulate(buf):
            start = base + int(f.start)
            if start < self._reported_until or start >= cutoff:
                continue
            frames.append(dataclasses.replace(f, start=start, end=start + (int(f.end) - int(f.start))))
        self._reported_until = max(self._reported_until, cutoff)
        keep = min(buf.size, self.max_frame_samples + self.margin)
        self._carry = buf[buf.size - keep:].copy()
        self._carry_start = end - keep
        return frames

    def flush(self) -> list[Any]:
        """Report frames still waiting in the carried tail (call at the end of a stream)."""
        frames = []
        for f in self.modem.demodulate(self._carry):
            start = self._carry_start + int(f.start)
            if start >= self._reported_until:
                frames.append(dataclasses.replace(f, start=start, end=start + (int(f.end) - int(f.start))))
        self._reported_until = self._carry_start + self._carry.size
        self._carry = np.zeros(0, dtype=np.complex64)
        return frames
