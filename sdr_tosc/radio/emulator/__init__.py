"""Emulated ADALM-Plutos that behave like real ones, for CI and for trying the radio path without hardware.

``sdr-tosc emulate pluto --count 2`` (or :class:`EmulatedPlutos`) serves N Plutos over libiio's network
protocol, so pyadi-iio, libiio and ``iio_info -u ip:127.0.0.1:PORT`` talk to them as to real ones. They
share one simulated air (the channel simulator process), run in real time at their own crystal-offset
clocks, and follow the AD9363 driver's rules. Modules: :mod:`.iiod` (the protocol server), :mod:`.context`
(devices and attributes of a real Pluto's context),
:mod:`.ad9363` (one radio: attributes, rules, DMA, front end), :mod:`.air` (clock and links).
"""

from .ad9363 import PlutoModel
from .air import EmulatedPlutos, StreamResampler, link_snr_db, path_loss_for_snr, running
from .iiod import IiodServer

__all__ = ["EmulatedPlutos", "IiodServer", "PlutoModel", "StreamResampler", "link_snr_db", "path_loss_for_snr", "running"]
