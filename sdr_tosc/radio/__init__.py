"""Radio backends behind one interface (see docs/design.md): zmq, pluto (pyadi-iio), usrp (UHD).

``open_radio(kind, **settings) -> Radio``; ``Radio.tx(iq)``, ``Radio.rx(n) -> iq`` (complex64, full scale
|x| <= 1), validated settings (``center_freq_hz``, ``sample_rate_hz``, ``tx_gain_db``, ``rx_gain_db``),
``close()``/context manager, ``counters``. Hardware libraries are imported inside their backend only.
"""

from .base import Radio, RadioCounters
from .profiles import RadioProfile, load_profile
from .registry import BACKENDS, BackendStatus, open_radio, probe_backends

__all__ = ["BACKENDS", "BackendStatus", "Radio", "RadioCounters", "RadioProfile", "load_profile", "open_radio",
           "probe_backends"]
