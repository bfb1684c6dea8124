"""File radio: replay a SigMF recording through the receiver (``--radio file --uri capture.sigmf-meta``).

``rx(n)`` returns the recording's samples in order, exactly as the live receiver read them (a recording
made with ``sdr-tosc rx --record`` keeps the samples around each frame, one capture segment per run of
frames), so the receiver finds the same frames and makes the same predictions as in the live run. At
the end of the recording ``rx`` pads the last read with zeros and the next one raises :class:`EOFError`.
The file radio cannot transmit. ``realtime=True`` paces reads to the sample rate (like a radio);
``loop=True`` starts over at the end instead.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .base import BackendStatus, Radio
from .profiles import RadioProfile
from .recording import load_recording

#: a recording has no analog limits; its own rate and frequency are checked against what the caller asks
FILE_PROFILE = RadioProfile(
    name="file", description="SigMF recording replay (no analog limits)", backend="file",
    sample_rate_hz=(1.0, 1e10), sustained_rate_sps=1e10, center_freq_hz=(0.0, 1e12),
    tx_gain_db=(-200.0, 200.0), rx_gain_db=(-200.0, 200.0))


class FileRadio(Radio):
    """A receive-only radio that plays back a SigMF recording (``path``: ``.sigmf-meta`` or its base name).

    ``sample_rate_hz``/``center_freq_hz`` default to the recording's; a different value raises
    ValueError (a replay at another rate would not be the same signal).
    """

    kind = "file"
    default_profile = "file"
    uri_help = "a SigMF recording to replay (capture.sigmf-meta, e.g. from 'sdr-tosc rx --record')"
    packages = (("sigmf", "sigmf", "sigmf"),)
    can_transmit = False

    @classmethod
    def probe(cls) -> BackendStatus:
        try:
            import sigmf
        except ImportError as exc:
            return BackendStatus("file", False, f"sigmf not importable ({exc}); pip install sigmf")
        return BackendStatus("file", True, f"replays SigMF recordings (sigmf {sigmf.__version__})")

    @classmethod
    def from_uri(cls, uri: str | None, role: str) -> dict[str, Any]:
        super().from_uri(uri, role)
        if not uri:
            raise ValueError("the file radio needs --uri PATH.sigmf-meta (a recording from 'sdr-tosc rx --record')")
        return {"path": uri}

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate_hz: float | None = None,
        center_freq_hz: float | None = None,
        tx_gain_db: float = 0.0,
        rx_gain_db: float = 0.0,
        realtime: bool = False,
        loop: bool = False,
        check_full_scale: bool = True,
    ) -> None:
        rec = load_recording(path)
        fs = rec.sample_rate_hz
        if sample_rate_hz is not None and abs(float(sample_rate_hz) - fs) > 1e-6 * fs:
            raise ValueError(f"{rec.path} was recorded at {fs:g} Hz, not {float(sample_rate_hz):g} Hz; replay it at "
                             f"its own rate (--sample-rate-hz {fs:g})")
        fc = rec.center_freq_hz
        if center_freq_hz is not None and fc is not None and abs(float(center_freq_hz) - fc) > 1.0:
            raise ValueError(f"{rec.path} was recorded at {fc:g} Hz, not {float(center_freq_hz):g} Hz")
        super().__init__(FILE_PROFILE, center_freq_hz=fc if fc is not None else (center_freq_hz or 0.0),
                         sample_rate_hz=fs, tx_gain_db=tx_gain_db, rx_gain_db=rx_gain_db,
                         check_full_scale=check_full_scale)
        if rec.iq.size == 0:
            raise ValueError(f"{rec.path} holds no samples")
        self.recording = rec
        self.path = rec.path
        self.uri = str(rec.path)
        self.realtime = bool(realtime)
        self.loop = bool(loop)
        self.position = 0  #: index in the recording of the next sample rx() returns
        self.exhausted = False
        self.serial = rec.metadata.get("global", {}).get("sdr_tosc:serial")
        self._t0: float | None = None

    def _apply_sample_rate_hz(self, value: float) -> None:
        if abs(value - self.recording.sample_rate_hz) > 1e-6 * value:
            raise ValueError(f"a recording plays at its own rate ({self.recording.sample_rate_hz:g} Hz)")

    def _apply_center_freq_hz(self, value: float) -> None:
        fc = self.recording.center_freq_hz
        if fc is not None and abs(value - fc) > 1.0:
            raise ValueError(f"a recording cannot be retuned (it was made at {fc:g} Hz)")

    def _tx(self, iq: np.ndarray, **kwargs: Any) -> None:
        raise RuntimeError("the file radio replays a recording and cannot transmit")

    def _rx(self, n: int) -> np.ndarray:
        if self.exhausted:
            raise EOFError(f"end of the recording {self.path} ({self.recording.iq.size} samples replayed)")
        if self.realtime:
            if self._t0 is None:
                self._t0 = time.monotonic() - self.position / self.sample_rate_hz
            due = self._t0 + (self.position + n) / self.sample_rate_hz
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        iq = self.recording.iq
        out = np.zeros(n, np.complex64)
        got = 0
        while got < n:
            take = min(n - got, iq.size - self.position)
            out[got:got + take] = iq[self.position:self.position + take]
            got += take
            self.position += take
            if self.position >= iq.size:
                if not self.loop:
                    self.exhausted = True
                    break
                self.position = 0
        return out
