"""Several radios on one simulated air: the channel server's ``--nodes N`` mode.

With ``N`` nodes the server keeps one :class:`~sdr_tosc.channel.core.ChannelCore` per directed link
``(src, dst)``, self links included (a radio hears its own TX through its antenna isolation). A TX message
from node ``src`` is addressed to one receiver ``dst`` (the sender does the fan-out, so each copy can carry
that receiver's timing); a read by node ``dst`` returns the sum of every link into it (fan-in). Each link
core applies its own settings (path loss, CFO, noise ...), changed through the control socket with a
``"link": [src, dst]`` field::

    {"cmd": "set", "link": [0, 1], "path_loss_db": 70, "cfo_hz": -1200}   -> {"ok": true, "config": {...}}
    {"cmd": "stats"}                                                      -> per-link stats under "links",
                                                                             read requests per node "node_reads"

Wire format (same sockets as the one-link server; samples in the framed format of
:mod:`sdr_tosc.radio.zmq`):

* ``--in`` (PULL): two frames ``[route, message]``, ``route = struct.pack("<HH", src, dst)``.
* ``--out`` (ROUTER, a DEALER connects): request ``[route, count]`` with ``route = struct.pack("<HB", dst,
  flags)`` (``flags & 1``: discard, advance ``dst``'s timelines without computing samples; the reply is
  empty; ``flags & 2``: first drop the samples pending on those timelines, for a radio attaching anew), reply ``[message]`` holding ``count`` samples of ``dst``'s air.

The emulated radios of ``sdr-tosc emulate`` use this mode; see :mod:`sdr_tosc.radio.emulator`.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import numpy as np

from ..radio import zmq as wire
from .config import RUNTIME_FIELDS, ChannelConfig
from .core import ChannelCore
from .server import MAX_REQUEST_SAMPLES, ChannelServer

log = logging.getLogger(__name__)

TX_ROUTE = struct.Struct("<HH")
RX_ROUTE = struct.Struct("<HB")
FLAG_DISCARD = 1
FLAG_RESET = 2  # first drop what is pending on the links into this node (a radio attaching anew)
MAX_NODES = 64


#: A link whose noise is below this adds none (the receiver's noise is on its own link).
SILENT_NOISE_DBFS = -250.0


def _plain(cfg: ChannelConfig) -> bool:
    """A link that only carries placed signal: no noise, no read-time impairments."""
    return (cfg.snr_db is None and cfg.noise_dbfs <= SILENT_NOISE_DBFS and cfg.cfo_hz == 0.0
            and cfg.phase_noise_hz == 0.0 and not (cfg.iq_imbalance_db or cfg.iq_imbalance_deg)
            and not (cfg.dc_offset_i or cfg.dc_offset_q))


def _skip(core: ChannelCore, n: int) -> None:
    """Advance a receiver's timeline by ``n`` samples nobody listens to, without computing them."""
    tl = core.timeline
    live = tl.end - tl.pos
    if n >= live:
        tl.pos += n
        tl.end, tl.head = tl.pos, 0
    else:
        tl.head += n
        tl.pos += n


class NodeChannelServer(ChannelServer):
    """A :class:`ChannelServer` whose air joins ``nodes`` radios (``nodes * nodes`` link cores)."""

    def __init__(self, config: ChannelConfig, *args: Any, nodes: int, **kwargs: Any) -> None:
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"nodes must be an int in [1, {MAX_NODES}], got {nodes!r}")
        if kwargs.get("out_pattern", "rep") != "rep":
            raise ValueError("--nodes needs the request/reply output pattern (out_pattern='rep')")
        super().__init__(config, *args, **kwargs)
        self.nodes = nodes
        self.links: dict[tuple[int, int], ChannelCore] = {(0, 0): self.core}
        for s in range(nodes):
            for d in range(nodes):
                if (s, d) not in self.links:
                    self.links[(s, d)] = ChannelCore(config.replace(seed=config.seed + 1 + s * nodes + d))
        self.endpoints["nodes"] = nodes
        self._bad = 0
        self.node_reads = [0] * nodes  # read requests per receiving node (an attached radio keeps reading)

    def _link_key(self, value: Any) -> tuple[int, int]:
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ValueError(f'"link" must be [src, dst] node numbers, got {value!r}')
        key = (int(value[0]), int(value[1]))
        if key not in self.links:
            raise ValueError(f"link {list(key)} does not exist: nodes are 0..{self.nodes - 1}")
        return key

    # -- TX side --------------------------------------------------------------------------------------
    def _drain_input(self, max_messages: int = 256) -> None:
        zmq = self._zmq
        for _ in range(max_messages):
            try:
                frames = self.sock_in.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                if len(frames) != 2 or len(frames[0].bytes) != TX_ROUTE.size:
                    raise ValueError("a node TX message is [route, samples] with route = <HH src, dst>")
                src, dst = TX_ROUTE.unpack(frames[0].bytes)
                core = self.links.get((src, dst))
                if core is None:
                    raise ValueError(f"link {src}->{dst} does not exist (nodes 0..{self.nodes - 1})")
                hdr, iq = wire.decode_message(frames[1].buffer, "TX message")
                wire.check_samples(iq, "TX message")
                if core.pending() >= core.config.max_pending_samples:
                    core.stats["overrun_chunks"] = core.stats.get("overrun_chunks", 0) + 1
                    continue
                core.push(iq, start_of_burst=bool(hdr.flags & wire.FLAG_SOB),
                          timestamp=hdr.timestamp if hdr.flags & wire.FLAG_TIMED else None,
                          tx_gain_db=hdr.tx_gain_db, tx_seq=hdr.seq)
            except ValueError as exc:
                self._bad += 1
                if self._bad <= 10:
                    log.error("dropped a bad node TX message: %s", exc)

    # -- RX side --------------------------------------------------------------------------------------
    def _serve_requests(self, max_requests: int = 64) -> None:
        zmq = self._zmq
        for _ in range(max_requests):
            try:
                frames = self.sock_out.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            ident = frames[0]
            payload: Any = b""
            try:
                if len(frames) != 3 or len(frames[1].bytes) != RX_ROUTE.size:
                    raise ValueError("a node request is [route, count] with route = <HB dst, flags>")
                dst, flags = RX_ROUTE.unpack(frames[1].bytes)
                if not 0 <= dst < self.nodes:
                    raise ValueError(f"node {dst} does not exist (nodes 0..{self.nodes - 1})")
                n = min(wire.decode_request(frames[2].buffer), MAX_REQUEST_SAMPLES)
                self.node_reads[dst] += 1
                cores = [self.links[(s, dst)] for s in range(self.nodes)]
                if flags & FLAG_RESET:
                    for c in cores:
                        _skip(c, c.timeline.end - c.timeline.pos)
                if flags & FLAG_DISCARD:
                    for c in cores:
                        _skip(c, n)
                elif n:
                    payload = self._read_sum(cores, n)
            except ValueError as exc:
                self._bad += 1
                if self._bad <= 10:
                    log.error("bad node request: %s", exc)
            self.sock_out.send(ident, zmq.SNDMORE)
            self.sock_out.send(payload, copy=False)

    def _read_sum(self, cores: list[ChannelCore], n: int) -> np.ndarray:
        buf = np.empty(wire.HEADER_SIZE + wire.SAMPLE_BYTES * n, np.uint8)
        out = buf[wire.HEADER_SIZE:].view(np.complex64)
        full = [c for c in cores if not _plain(c.config)]
        plain = [c for c in cores if _plain(c.config)]
        if full:
            _, ts = full[0].read(n, out=out)
            for c in full[1:]:
                out += c.read(n)[0]
        else:
            out[...] = 0
        for c in plain:  # no noise and no receiver impairments: the placed signal as it is (cheap)
            sig, _, ts = c.timeline.read(n)
            out += sig
            c.stats["samples_out"] += n
            c.stats["reads"] += 1
        cfg = cores[0].config
        wire.Header(0, self._out_seq, ts, cfg.sample_rate_hz, cfg.center_freq_hz, 0.0, n).pack_into(buf)
        self._out_seq += 1
        return buf

    # -- control --------------------------------------------------------------------------------------
    def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        if "link" in req:
            key = self._link_key(req.pop("link"))
            cmd = req.pop("cmd")
            core = self.links[key]
            if cmd == "set":
                bad = sorted(set(req) - set(RUNTIME_FIELDS))
                if bad:
                    raise ValueError(f"cannot change {', '.join(bad)} while running; changeable: "
                                     f"{', '.join(RUNTIME_FIELDS)}")
                return {"ok": True, "link": list(key), "config": core.set(**req).to_json()}
            if cmd == "get":
                return {"ok": True, "link": list(key), "config": core.config.to_json()}
            if cmd == "stats":
                return {"ok": True, "link": list(key), "stats": dict(core.stats, pending_samples=core.pending())}
            raise ValueError(f"per-link commands are set, get and stats, not {cmd!r}")
        return super()._control(req)

    def stats(self) -> dict[str, Any]:
        s = super().stats()
        total = {k: 0 for k in ("chunks", "samples_in", "samples_out", "late_bursts", "underflows", "reads")}
        for core in self.links.values():
            for k in total:
                total[k] += int(core.stats.get(k, 0))
        s.update(total, nodes=self.nodes, bad_messages=self._bad, node_reads=list(self.node_reads),
                 links={f"{a}->{b}": {"samples_in": c.stats["samples_in"], "late": c.stats["late_bursts"],
                                      "pending": c.pending()} for (a, b), c in self.links.items()})
        return s

    def close(self) -> None:
        for key, core in getattr(self, "links", {}).items():
            if key != (0, 0):
                core.close()
        super().close()
