"""Streaming receiver: feed consecutive IQ buffers, get each frame exactly once, with absolute positions.

:meth:`Modem.demodulate` returns only frames that lie entirely inside the buffer it is given. A radio
delivers an endless stream cut into buffers at arbitrary points, so :class:`StreamReceiver` keeps the
last ``modem.max_burst_length`` samples of each buffer and prepends them to the next one: a frame cut by a
buffer boundary is found, complete, on the next call, and frames already reported are not repeated.
``RxFrame.start`` / ``end`` are absolute sample indices since the first sample pushed.

A link that knows its longest frame (e.g. the student's ``k_max`` symbols) passes ``max_frame_samples =
modem.burst_length(k_max)``: the carried tail, and so the work repeated per buffer, shrinks from the
``max_payload_symbols`` burst (about 30k samples) to that frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .frame import Modem, RxFrame, _as_complex_1d


class StreamReceiver:
    """Frame receiver over a continuous sample stream.

    Example::

        rx = StreamReceiver(modem)
        while True:
            for frame in rx.push(radio.rx(65536)):
                handle(frame)          # frame.start is an absolute sample index
    """

    def __init__(self, modem: Modem, max_frame_samples: int | None = None) -> None:
        if not isinstance(modem, Modem):
            raise TypeError(f"modem must be a Modem, got {type(modem).__name__}")
        if max_frame_samples is not None and not (isinstance(max_frame_samples, int) and max_frame_samples > 0):
            raise ValueError(f"max_frame_samples must be a positive int (modem.burst_length(n)), got {max_frame_samples!r}")
        self.modem = modem
        self.max_frame_samples = int(max_frame_samples or modem.max_burst_length)
        self._tail = np.zeros(0, np.complex64)
        self._tail_start = 0  # absolute index of self._tail[0]
        self._reported: list[int] = []  # absolute starts of recently reported frames
        self._headers: dict[int, tuple] = {}  # absolute start -> (header, header symbols) of frames cut short
        self.samples_seen = 0

    def push(self, iq: np.ndarray) -> list[RxFrame]:
        """Process the next buffer (complex64[k]); returns the frames completed so far, in order."""
        x = _as_complex_1d(iq, "iq")
        buf = np.concatenate([self._tail, x]) if self._tail.size else x
        base = self._tail_start
        self.samples_seen += x.size
        keep = self.max_frame_samples
        cut = max(buf.size - keep, 0)  # frames starting before this will not be seen again
        out = []
        cp = self.modem.cp
        # bursts reported before are skipped, headers of bursts cut by the last buffer are not decoded again
        known = {s - base: None for s in self._reported if s >= base}
        known.update({s - base: h for s, h in self._headers.items() if s >= base})
        frames = self.modem._demodulate(buf, known)
        # headers of bursts the buffer's end cut short: the carried tail holds them whole next time
        self._headers = {base + s: h for s, h in known.items() if h is not None and s >= cut - cp}
        for f in frames:
            start = base + f.start
            if any(abs(start - s) <= cp for s in self._reported):
                continue
            if not f.header_ok and f.start >= cut:
                continue  # may be complete (and decodable) in the next buffer
            out.append(dataclasses.replace(f, start=start, end=base + f.end))
            self._reported.append(start)
        self._tail = buf[cut:].copy()
        self._tail_start = base + cut
        self._reported = [s for s in self._reported if s >= self._tail_start - cp]
        return out

    def flush(self) -> list[RxFrame]:
        """At the end of a stream: also report frames in the carried tail whose header failed (not retried)."""
        out = []
        for f in self.modem.demodulate(self._tail) if self._tail.size else []:
            start = self._tail_start + f.start
            if any(abs(start - s) <= self.modem.cp for s in self._reported):
                continue
            out.append(dataclasses.replace(f, start=start, end=self._tail_start + f.end))
            self._reported.append(start)
        self._tail = np.zeros(0, np.complex64)
        return out
