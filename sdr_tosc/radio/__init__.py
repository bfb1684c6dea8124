"""Radio backends behind one interface: zmq (channel simulator), pluto (pyadi-iio), usrp (UHD, or the virtual
USRP with ``type=virtual``), file (SigMF replay).

``open_radio(kind, **settings) -> Radio``; ``Radio.tx(iq)``, ``Radio.rx(n) -> iq`` (complex64, full scale
|x| <= 1), validated settings (``center_freq_hz``, ``sample_rate_hz``, ``tx_gain_db``, ``rx_gain_db``),
``close()``/context manager, ``counters``. ``open_from_uri(kind, uri, role)`` opens one the way the command
line does. A backend is a module plus one registration (:mod:`sdr_tosc.radio.registry`). Hardware
libraries are imported inside their backend only.
"""

from .base import BackendStatus, Radio, RadioCounters
from .profiles import RadioProfile, load_profile
from .registry import BACKENDS, backend_kinds, open_from_uri, open_radio, probe_backends, register_backend

__all__ = ["BACKENDS", "BackendStatus", "Radio", "RadioCounters", "RadioProfile", "backend_kinds", "load_profile",
           "open_from_uri", "open_radio", "probe_backends", "register_backend"]
