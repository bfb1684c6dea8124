"""Pure numpy/scipy PHY: OFDM burst modem for semantic symbols, digital baseline, impairments, plots.

Public API:

* :class:`ModemConfig`, :class:`Modem` (``modulate(payload, header) -> iq``, ``demodulate(iq) -> [RxFrame]``),
  :class:`FrameHeader`, :class:`RxFrame` (frame format in :mod:`sdr_tosc.modem.frame`).
* :class:`StreamReceiver`: frames from a continuous stream of buffers, each once, absolute positions.
* Digital mode for the separate-coding baseline: :class:`DigitalConfig`, :class:`DigitalMode`
  (bits -> K=7 convolutional code -> QAM -> OFDM frame, and back to LLRs/bits; or self-delimiting
  CRC-32-checked bytes: ``modulate_bytes`` / ``decode_frame_bytes``).
* Channel impairments (the project's one numpy channel model) live in :mod:`sdr_tosc.channel.impairments`;
  the modem does not import them.
* Plots: :func:`sdr_tosc.modem.plot.plot_rx` (imports matplotlib lazily).
"""

from .digital import DigitalConfig, DigitalMode
from .frame import FrameHeader, Modem, ModemConfig, RxFrame
from .stream import StreamReceiver

__all__ = ["DigitalConfig", "DigitalMode", "FrameHeader", "Modem", "ModemConfig", "RxFrame", "StreamReceiver"]
