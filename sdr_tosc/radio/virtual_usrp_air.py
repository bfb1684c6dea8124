"""The virtual USRP's channels (the shared two-port channel of ``link=``, the emulated Plutos' air) and its
converters' quantisation.

Air: the virtual USRP as a guest node of the emulated Plutos' air (``type=virtual,air=plutos.json``).

``sdr-tosc emulate pluto --json plutos.json`` runs the N-node channel (:mod:`sdr_tosc.channel.nodes`) with
guest nodes after the Plutos and writes their endpoints under ``"air"``. A virtual USRP with ``air=`` takes
one (``node=``, default the first guest) and speaks the node protocol itself: it reads its node's air
(``[route <HB node, flags>, count]`` requests, which also tell the air it is attached) and sends each TX
burst to every other node (``[route <HH node, dst>, message]``, untimed: placed where that receiver reads).
Its samples are on the air's true clock at the air's centre frequency; the device applies its own crystal
error and tuning offset as with the two-port channel, and the air does the Plutos' side.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..channel.nodes import FLAG_DISCARD, FLAG_RESET, RX_ROUTE, TX_ROUTE
from . import wire

log = logging.getLogger(__name__)
CHUNK = 16384  # samples per TX message

_shared_lock = threading.Lock()
_shared_channels: dict[str, list] = {}  # link name -> [ChannelSimulator, users]
_shared_receivers: dict[str, Any] = {}  # link name -> the Device that receives on it


def _acquire_shared_channel(name: str, fs: float, fc: float, args: dict[str, Any]):
    from ..channel import ChannelSimulator

    with _shared_lock:
        entry = _shared_channels.get(name)
        if entry is None or not entry[0].running:
            log.info("virtual USRP: starting a channel simulator for link=%r (the devices of this process "
                     "without in=/out= share it)", name)
            ch = ChannelSimulator(snr_db=None, noise_dbfs=args["thermal_dbfs"], path_loss_db=args["path_loss_db"],
                                  gap_samples=0, gap_jitter_samples=0, sample_rate_hz=fs, center_freq_hz=fc,
                                  seed=args["seed"]).start()
            entry = _shared_channels[name] = [ch, 0]
        entry[1] += 1
        return entry[0]


def _release_shared_channel(name: str) -> None:
    with _shared_lock:
        entry = _shared_channels.get(name)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _shared_channels[name]
            entry[0].stop()


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Quantise I and Q to ``bits`` two's complement and clip, as an ADC does (codes -2^(b-1) .. 2^(b-1) - 1,
    seen by the host as code / 2^(b-1) after UHD's sc16 -> fc32 conversion)."""
    scale = np.float32(2 ** (bits - 1))
    f = x.view(np.float32)
    q = np.clip(np.rint(f * scale), -scale, scale - 1) / scale
    return q.astype(np.float32).view(np.complex64)


def load_air(path: str, node: int) -> dict[str, Any]:
    """The ``"air"`` entry of an ``emulate --json`` file, with the node this radio takes."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"virtual USRP air={path!r}: cannot read the emulate --json file: {exc}") from None
    air = doc.get("air") if isinstance(doc, dict) else None
    if not isinstance(air, dict) or not air.get("guest_nodes") or not all(air.get(k) for k in ("in", "out", "control")):
        raise ValueError(f"virtual USRP air={path!r}: the file has no guest nodes under \"air\" (write it with "
                         "`sdr-tosc emulate pluto --json PATH`)")
    guests = [int(g) for g in air["guest_nodes"]]
    node = guests[0] if node < 0 else node
    if node not in guests:
        raise ValueError(f"virtual USRP node={node}: the air's guest nodes are {guests} (the Plutos are "
                         f"nodes 0..{guests[0] - 1})")
    return dict(air, node=node)


class AirLink:
    """The device's transport on the air: ``rx(n)``, ``discard(n)``, ``tx(...)`` like its ZmqRadio link."""

    def __init__(self, air: dict[str, Any], timeout_s: float = 2.0) -> None:
        import zmq

        self.air = air
        self.node = int(air["node"])
        self.nodes = int(air["nodes"])
        self.sample_rate_hz = float(air["sample_rate_hz"])
        self.center_freq_hz = float(air["center_freq_hz"])
        self.timeout_s = timeout_s
        self.tx_gain_db = 0.0
        self._seq = 0
        ctx = zmq.Context.instance()
        self._push = ctx.socket(zmq.PUSH)
        self._dealer = ctx.socket(zmq.DEALER)
        for s in (self._push, self._dealer):
            s.setsockopt(zmq.LINGER, 0)
        self._push.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
        self._push.connect(air["in"])
        self._dealer.connect(air["out"])
        self.closed = False
        self._reset = FLAG_RESET  # the first read drops what an earlier guest of this node left pending

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait until the air has taken this node (its reads, which the device thread is making, were seen:
        the air then sets up the links, and unmutes the node's own link last), so the first burst is heard."""
        from ..channel.process import ChannelControl
        from .emulator.air import MUTED_DB  # a guest's own link at this path loss: the air has not taken it

        ctl = ChannelControl(self.air["control"])
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                cfg = ctl.request("get", link=[self.node, self.node])["config"]
                if cfg["path_loss_db"] < MUTED_DB:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"virtual USRP: the air ({self.air['control']}) did not take guest node "
                                       f"{self.node} within {timeout_s:g} s (is `sdr-tosc emulate` still running? "
                                       "is another radio on that node? try node=)")
                time.sleep(0.05)
        finally:
            ctl.close()

    def check_rate(self, fs: float, what: str) -> None:
        if abs(fs - self.sample_rate_hz) > 1e-6 * self.sample_rate_hz:
            raise RuntimeError(f"virtual USRP {what} rate {fs:.0f} sps cannot join the air at "
                               f"{self.sample_rate_hz:.0f} sps: the sample rates of the radios on one air must "
                               "match")

    def _request(self, n: int, flags: int) -> Any:
        self._dealer.send_multipart([RX_ROUTE.pack(self.node, flags | self._reset), struct.pack("<Q", n)])
        self._reset = 0
        if not self._dealer.poll(int(self.timeout_s * 1000)):
            raise TimeoutError(f"the air's channel ({self.air['out']}) did not answer within {self.timeout_s:g} s")
        return self._dealer.recv(copy=False)

    def rx(self, n: int) -> np.ndarray:
        _, iq = wire.decode_message(self._request(n, 0).buffer, "air reply")
        return iq

    def discard(self, n: int) -> None:
        """Let ``n`` samples of this node's air pass unheard (the radio is not streaming)."""
        self._request(n, FLAG_DISCARD)

    def tx(self, iq: np.ndarray, start_of_burst: bool = True, end_of_burst: bool = True) -> None:
        iq = np.ascontiguousarray(iq, dtype=np.complex64)
        for start in range(0, max(iq.size, 1), CHUNK):
            chunk = iq[start:start + CHUNK]
            flags = (wire.FLAG_SOB if start == 0 and start_of_burst else 0)
            flags |= wire.FLAG_EOB if start + CHUNK >= iq.size and end_of_burst else 0
            hdr = wire.Header(flags, self._seq, 0, self.sample_rate_hz, self.center_freq_hz, self.tx_gain_db,
                              chunk.size)
            self._seq += 1
            msg = wire.encode_message(chunk, hdr)
            for dst in range(self.nodes):
                if dst != self.node:
                    self._push.send_multipart([TX_ROUTE.pack(self.node, dst), msg])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._push.close(0)
            self._dealer.close(0)
