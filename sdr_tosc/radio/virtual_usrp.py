"""A virtual USRP with a clock: the subset of UHD's Python API the usrp backend uses, over the channel simulator.

Open it like a USRP, with the device args ``type=virtual``::

    sdr-tosc demo --radio usrp --uri type=virtual                      # TX -> RX of one device
    sdr-tosc calibrate --tx-radio usrp --tx-uri type=virtual,ppm=4 --rx-radio usrp --rx-uri type=virtual,ppm=-3
    sdr-tosc rx --radio usrp --uri type=virtual,out=tcp://127.0.0.1:5556   # with `sdr-tosc channel` running
    sdr-tosc rx --radio usrp --uri type=virtual,air=plutos.json  # with `sdr-tosc emulate pluto --json plutos.json`

:class:`~sdr_tosc.radio.usrp.UsrpRadio` then uses this module in place of ``import uhd`` and runs its
real code path: one RX and one TX streamer, stream commands with time specs, RX metadata error codes,
TX metadata and async messages. The device behaves as UHD reports a USB USRP:

* Samples travel through the ZMQ channel simulator (``sdr-tosc channel``; wire format in
  :mod:`sdr_tosc.radio.zmq`): TX bursts are pushed to its ``in`` socket when their first sample is due on
  the air; received samples are requested from its ``out`` socket as the device's sample clock produces
  them. Without ``in=``/``out=`` the virtual devices of one process share one channel simulator that the
  first of them starts (a cable with ``path_loss_db`` of attenuation and ``thermal_dbfs`` of noise).
  A channel's timeline advances with what its one receiver reads: one receiving device per channel.
  With ``air=`` (the ``--json`` file of ``sdr-tosc emulate pluto``) it is a guest node of the emulated
  Plutos' air instead (:mod:`sdr_tosc.radio.virtual_usrp_air`): emulated Plutos hear it and it hears them,
  each radio with its own crystal; its sample rate must be the air's (1 Msps).
* Clock: device time runs from ``set_time_now`` at ``1 + ppm 1e-6`` of real time. ``ppm`` is the
  crystal error: the TX and RX LOs are off by ``ppm 1e-6 fc`` (CFO) and the sample clock by ``ppm``
  (SCO), consistently. Two devices with ppm a and b show a CFO of ``(a - b) 1e-6 fc`` to each other.
* RX streaming is paced by that clock: ``start_cont`` (at its ``time_spec`` unless ``stream_now``),
  ``num_samps_and_done``/``num_samps_and_more`` and ``stop_cont``; a command whose time has passed
  reports ``ERROR_CODE_LATE_COMMAND``. The transport holds ``num_recv_frames`` packets; a host that reads too
  slowly loses what does not fit, and the next ``recv`` reports ``ERROR_CODE_OVERFLOW`` followed by
  samples whose ``time_spec`` jumps over the gap.
* TX: ``send`` blocks until all but ``num_send_frames`` packets of the burst have gone out (flow control);
  a burst whose ``time_spec`` has passed is dropped and reported as ``EVENT_CODE_TIME_ERROR``; a
  continuation that arrives after the previous chunk ran out is an ``EVENT_CODE_UNDERFLOW``; every
  ``end_of_burst`` is acknowledged with ``EVENT_CODE_BURST_ACK`` (all through ``recv_async_msg``).
  ``tx_packet_loss=P`` loses each host-to-device packet with probability P (a gap in the burst and an
  ``EVENT_CODE_SEQ_ERROR``, as a congested Ethernet link to an N210 does).
* Gain law: the TX sends ``x 10^((tx_gain_db - 89.8) / 20)`` (full scale at maximum gain); the channel
  applies its path loss and thermal noise; the RX multiplies by ``10^(rx_gain_db / 20)``, adds its own
  noise at ``noise_floor_dbfs`` and quantises to a 12-bit ADC that clips at full scale. Raising the TX
  gain raises the SNR dB for dB; raising the RX gain helps until the thermal noise dominates, and too
  much of either clips.

Device args (comma-separated ``key=value``): ``type=virtual`` (required), ``serial``, ``in``, ``out``,
``link`` (name of the shared channel, default ``default``), ``ppm``, ``noise_floor_dbfs`` (-75),
``thermal_dbfs`` (-110) and ``path_loss_db`` (30) for a channel it starts, ``num_recv_frames`` and
``num_send_frames`` (16 packets of 2040 samples each, UHD's names and B2xx defaults), ``tx_packet_loss``
(0), ``seed``, ``air`` (an ``emulate --json`` file) and ``node`` (which of its guest nodes; default the first).
"""

from __future__ import annotations

import types as _types
import weakref
from typing import Any

import numpy as np

from .virtual_usrp_device import MAX_NUM_SAMPS, RX_MAX_GAIN_DB, TX_MAX_GAIN_DB, Device
from .virtual_usrp_types import (
    RXMetadata,
    RXMetadataErrorCode,
    StreamArgs,
    StreamCMD,
    StreamMode,
    TimeSpec,
    TuneRequest,
    TXAsyncMetadata,
    TXMetadata,
    TXMetadataEventCode,
    parse_device_args,
)


class RxStreamer:
    def __init__(self, core: Device, args: StreamArgs) -> None:
        self._core = core
        self._args = args

    def get_max_num_samps(self) -> int:
        return MAX_NUM_SAMPS

    def get_num_channels(self) -> int:
        return len(self._args.channels) or 1

    def issue_stream_cmd(self, cmd: StreamCMD) -> None:
        self._core._check_alive()
        self._core.issue(cmd)

    def recv(self, buf: np.ndarray, md: RXMetadata, timeout: float = 0.1) -> int:
        if not (isinstance(buf, np.ndarray) and buf.dtype == np.complex64 and buf.ndim == 2):
            raise RuntimeError("recv buffer must be a complex64 array of shape (channels, samples) for fc32")
        return self._core.recv(buf, md, timeout)


class TxStreamer:
    def __init__(self, core: Device, args: StreamArgs) -> None:
        self._core = core
        self._args = args

    def get_max_num_samps(self) -> int:
        return MAX_NUM_SAMPS

    def send(self, buf: np.ndarray, md: TXMetadata, timeout: float = 0.1) -> int:
        if not (isinstance(buf, np.ndarray) and buf.dtype == np.complex64 and buf.ndim == 2):
            raise RuntimeError("send buffer must be a complex64 array of shape (channels, samples) for fc32")
        return self._core.send(buf, md, timeout)

    def recv_async_msg(self, md: TXAsyncMetadata, timeout: float = 0.1) -> bool:
        return self._core.recv_async(md, timeout)


class MultiUSRP:
    """The part of ``uhd.usrp.MultiUSRP`` the usrp backend uses, for ``type=virtual`` device args."""

    def __init__(self, args: str = "") -> None:
        parsed = parse_device_args(args)
        self._core = Device(parsed)
        weakref.finalize(self, self._core.shutdown)

    # settings (UHD coerces out-of-range values to the nearest possible one)
    def set_rx_rate(self, rate: float, chan: int = 0) -> None:
        self._core.rx_rate = float(rate)

    def set_tx_rate(self, rate: float, chan: int = 0) -> None:
        self._core.tx_rate = float(rate)

    def get_rx_rate(self, chan: int = 0) -> float:
        return self._core.rx_rate

    def get_tx_rate(self, chan: int = 0) -> float:
        return self._core.tx_rate

    def set_rx_bandwidth(self, bw: float, chan: int = 0) -> None:
        self._core.rx_bw = float(bw)

    def set_tx_bandwidth(self, bw: float, chan: int = 0) -> None:
        self._core.tx_bw = float(bw)

    def set_rx_freq(self, tune: TuneRequest, chan: int = 0) -> None:
        self._core.rx_freq = float(tune.target_freq)

    def set_tx_freq(self, tune: TuneRequest, chan: int = 0) -> None:
        self._core.tx_freq = float(tune.target_freq)

    def get_rx_freq(self, chan: int = 0) -> float:
        return self._core.rx_freq

    def get_tx_freq(self, chan: int = 0) -> float:
        return self._core.tx_freq

    def set_rx_gain(self, gain: float, chan: int = 0) -> None:
        self._core.rx_gain = min(max(float(gain), 0.0), RX_MAX_GAIN_DB)

    def set_tx_gain(self, gain: float, chan: int = 0) -> None:
        self._core.tx_gain = min(max(float(gain), 0.0), TX_MAX_GAIN_DB)

    def get_rx_gain(self, chan: int = 0) -> float:
        return self._core.rx_gain

    def get_tx_gain(self, chan: int = 0) -> float:
        return self._core.tx_gain

    def set_rx_antenna(self, ant: str, chan: int = 0) -> None:
        if ant not in ("RX2", "TX/RX"):
            raise RuntimeError(f"virtual USRP: no RX antenna {ant!r} (RX2, TX/RX)")
        self._core.rx_ant = ant

    def set_tx_antenna(self, ant: str, chan: int = 0) -> None:
        if ant != "TX/RX":
            raise RuntimeError(f"virtual USRP: no TX antenna {ant!r} (TX/RX)")
        self._core.tx_ant = ant

    def set_time_now(self, t: TimeSpec) -> None:
        self._core.set_time(t.get_real_secs())

    def get_time_now(self, mboard: int = 0) -> TimeSpec:
        return TimeSpec(self._core.now())

    def get_usrp_rx_info(self, chan: int = 0) -> dict[str, str]:
        return {"mboard_id": "B210 (virtual)", "mboard_name": "virtual", "mboard_serial": self._core.serial,
                "rx_id": "FE-RX2 (virtual)", "rx_antenna": self._core.rx_ant}

    def get_usrp_tx_info(self, chan: int = 0) -> dict[str, str]:
        return {"mboard_id": "B210 (virtual)", "mboard_name": "virtual", "mboard_serial": self._core.serial,
                "tx_id": "FE-TX2 (virtual)", "tx_antenna": self._core.tx_ant}

    def get_rx_stream(self, args: StreamArgs) -> RxStreamer:
        _check_formats(args)
        self._core.connect("rx")
        return RxStreamer(self._core, args)

    def get_tx_stream(self, args: StreamArgs) -> TxStreamer:
        _check_formats(args)
        self._core.connect("tx")
        return TxStreamer(self._core, args)

    def virtual_stats(self) -> dict[str, Any]:
        """What the device counted on its side (overflows, dropped samples, underflows, late bursts) and the
        stream commands it received (diagnostics; a real USRP has no such call)."""
        with self._core.lock:
            return {**self._core.stats, "stream_commands": list(self._core.commands)}

    def recv_num_samps(self, *args: Any, **kwargs: Any):
        raise RuntimeError("recv_num_samps makes a new streamer per call; UHD leaks them when it is called in "
                           "a loop. Use one rx streamer (get_rx_stream) for the session")


def _check_formats(args: StreamArgs) -> None:
    if args.cpu_format != "fc32":
        raise RuntimeError(f"virtual USRP: host format {args.cpu_format!r} is not supported; use fc32")
    if args.otw_format not in ("sc16", "sc8"):
        raise RuntimeError(f"virtual USRP: wire format {args.otw_format!r} is not supported; use sc16 or sc8")


#: ``uhd.usrp`` and ``uhd.types`` as the backend uses them
usrp = _types.SimpleNamespace(MultiUSRP=MultiUSRP, StreamArgs=StreamArgs)
types = _types.SimpleNamespace(
    TimeSpec=TimeSpec, TuneRequest=TuneRequest, StreamCMD=StreamCMD, StreamMode=StreamMode,
    RXMetadata=RXMetadata, RXMetadataErrorCode=RXMetadataErrorCode, TXMetadata=TXMetadata,
    TXAsyncMetadata=TXAsyncMetadata, TXMetadataEventCode=TXMetadataEventCode,
)
__version__ = "virtual (UHD 4.3 API subset)"


def is_virtual(args: str) -> bool:
    """True when UHD device args ask for this virtual device (``type=virtual``)."""
    return isinstance(args, str) and any(p.strip().replace(" ", "") == "type=virtual" for p in args.split(","))
