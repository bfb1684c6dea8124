"""Radio backends behind one interface (see DESIGN.md): zmq, pluto (pyadi-iio), usrp (UHD)."""

from .registry import BackendStatus, probe_backends

__all__ = ["BackendStatus", "probe_backends"]
