"""Channel models (pure numpy impairments) and the ZMQ channel simulator.

* :mod:`.impairments`: AWGN at the one SNR definition, CFO, SCO, delay, multipath/fading, IQ imbalance,
  DC offset, phase noise: vectorised functions on complex64 arrays.
* :mod:`.core`: the continuous-timeline engine (no sockets).
* :mod:`.server`: the simulator process (``sdr-tosc channel``); :mod:`.process`: :class:`ChannelSimulator`
  (spawns it, handshakes, controls it) and :class:`ChannelControl` (client of a running one).
"""

from .config import ChannelConfig
from .process import ChannelControl, ChannelSimulator

__all__ = ["ChannelConfig", "ChannelControl", "ChannelSimulator"]
