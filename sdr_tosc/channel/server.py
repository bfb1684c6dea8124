"""The channel simulator process: ZMQ sockets around :class:`~sdr_tosc.channel.core.ChannelCore`.

Sockets (all bound by the simulator; radios connect):

* ``--in``: PULL, TX samples (framed or raw, see :mod:`sdr_tosc.radio.wire` for the wire format).
* ``--out``: ROUTER answering sample requests (DEALER from our radio, REQ from gr-zeromq ``req_source`` or
  srsRAN), or PUSH streaming (``out_pattern="push"``, for gr-zeromq ``pull_source``).
* ``--control``: REP, one JSON object per request, one JSON object per reply (never pickle)::

      {"cmd": "ping"}                          -> {"ok": true, "pid": ...}
      {"cmd": "get"}                           -> {"ok": true, "config": {...}}
      {"cmd": "set", "snr_db": 5, "cfo_hz": 0} -> {"ok": true, "config": {...}}
      {"cmd": "stats"}                         -> {"ok": true, "stats": {...}}
      {"cmd": "truth", "since": 0, "max": 1000}-> {"ok": true, "bursts": [...], "next": k}
      {"cmd": "shutdown"}                      -> {"ok": true}

  Errors come back as ``{"ok": false, "error": "..."}``. Limits: one frame of at most 64 KiB of UTF-8
  JSON; ``set`` takes only the run-time fields, each checked like the command-line flag (finite, in range);
  ``truth`` takes integers ``since`` in [0, 2**63) and ``max`` in [1, 100000].

Bad input never stops the process: a TX message that breaks the wire format's limits (see
:mod:`sdr_tosc.radio.wire`), a malformed sample request or control request is dropped, counted per kind in
``stats`` (``bad_messages`` and ``drops``) and logged once per kind; nothing of it reaches the timeline.

The control socket binds to 127.0.0.1 by default; anyone who can connect to it can change settings or
stop the channel. To bind it elsewhere, set a shared secret for CURVE (``SDR_TOSC_CURVE_SECRET`` on
both ends, see :mod:`sdr_tosc.auth`) or keep it on a trusted network.

On start the process prints one JSON line to stdout with the bound endpoints, e.g.
``{"ready": true, "in": "tcp://127.0.0.1:40123", "out": "...", "control": "...", "pid": 1234}``; that is
the handshake :class:`~sdr_tosc.channel.process.ChannelSimulator` waits for. SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import time
from typing import Any, TextIO

import numpy as np

from ..auth import release, secure_server
from ..boundary import DropLog, integer
from ..lifetime import die_with_parent
from ..radio import zmq as wire
from .config import RUNTIME_FIELDS, ChannelConfig
from .core import ChannelCore

log = logging.getLogger(__name__)

MAX_REQUEST_SAMPLES = wire.MAX_MESSAGE_SAMPLES
#: Largest control request (bytes); larger ones are refused by libzmq (the peer is disconnected).
MAX_CONTROL_BYTES = 1 << 16
MAX_TRUTH_RECORDS = 100_000


class ChannelServer:
    """Bind the sockets, then :meth:`serve` until stopped. Use :meth:`stop` from a signal handler."""

    def __init__(
        self,
        config: ChannelConfig,
        in_endpoint: str = "tcp://127.0.0.1:5555",
        out_endpoint: str = "tcp://127.0.0.1:5556",
        control_endpoint: str | None = "tcp://127.0.0.1:0",
        *,
        in_format: str = "framed",
        out_format: str = "framed",
        out_pattern: str = "rep",
        in_connect: bool = False,
        out_connect: bool = False,
    ) -> None:
        import zmq

        for name, val, allowed in (("in_format", in_format, wire.MODES), ("out_format", out_format, wire.MODES),
                                   ("out_pattern", out_pattern, ("rep", "push"))):
            if val not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {val!r}")
        self.core = ChannelCore(config, prefetch_noise=True)
        self.in_format, self.out_format, self.out_pattern = in_format, out_format, out_pattern
        self._zmq = zmq
        self.ctx = zmq.Context(io_threads=2)  # one for the TX side, one for the RX side
        self._running = False
        self._out_seq = 0
        self._rate_warned = False
        self.started = time.monotonic()
        self.sock_in = self._bind(zmq.PULL, in_endpoint, "--in", connect=in_connect)
        self.sock_in.setsockopt(zmq.RCVHWM, 16)
        self.drops = DropLog(log, "channel input")
        self.sock_out = self._bind(zmq.ROUTER if out_pattern == "rep" else zmq.PUSH, out_endpoint, "--out",
                                   connect=out_connect)
        if out_pattern == "push":
            self.sock_out.setsockopt(zmq.SNDHWM, 16)
        self.sock_ctl = self._bind(zmq.REP, control_endpoint, "--control") if control_endpoint else None
        self.endpoints = {
            "in": self._last(self.sock_in),
            "out": self._last(self.sock_out),
            "control": self._last(self.sock_ctl) if self.sock_ctl else None,
        }
        if in_connect:
            self.endpoints["in"] = wire.normalize_endpoint(in_endpoint)
        if out_connect:
            self.endpoints["out"] = wire.normalize_endpoint(out_endpoint)

    def _bind(self, kind: int, endpoint: str, flag: str, connect: bool = False):
        """Bind (default) or connect (to a peer that binds, e.g. GNU Radio's zeromq push_sink)."""
        ep = wire.normalize_endpoint(endpoint, for_bind=not connect, what=f"{flag} endpoint")
        s = self.ctx.socket(kind)
        s.setsockopt(self._zmq.LINGER, 0)
        if flag == "--in":  # libzmq refuses larger messages (and drops that peer) before we allocate them
            s.setsockopt(self._zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        elif flag == "--control":
            s.setsockopt(self._zmq.MAXMSGSIZE, MAX_CONTROL_BYTES)
            secure_server(s, ep, what="channel control socket")  # CURVE when SDR_TOSC_CURVE_SECRET is set
        else:
            s.setsockopt(self._zmq.MAXMSGSIZE, 1 << 12)  # sample requests are 4 or 8 bytes
        try:
            s.connect(ep) if connect else s.bind(ep)
        except self._zmq.ZMQError as exc:
            s.close(0)
            self.close()
            raise OSError(f"cannot bind {flag} {ep}: {exc} (another channel running? use port 0 for a free one)") from None
        return s

    @staticmethod
    def _last(sock) -> str:
        import zmq

        return sock.getsockopt(zmq.LAST_ENDPOINT).decode() or "(connected)"

    # -- main loop ------------------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._running = False

    def serve(self, ready_stream: TextIO | None | str = "stdout", max_seconds: float | None = None) -> dict[str, Any]:
        """Run until :meth:`stop`, a ``shutdown`` control command or ``max_seconds``; returns final stats."""
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self.sock_in, zmq.POLLIN)
        if self.out_pattern == "rep":
            poller.register(self.sock_out, zmq.POLLIN)
        if self.sock_ctl is not None:
            poller.register(self.sock_ctl, zmq.POLLIN)
        self._running = True
        if ready_stream == "stdout":  # looked up now: sys.stdout may have been replaced since import
            ready_stream = sys.stdout
        if ready_stream is not None:
            ready_stream.write(json.dumps({"ready": True, **self.endpoints, "pid": os.getpid(),
                                           "sample_rate_hz": self.core.config.sample_rate_hz}) + "\n")
            ready_stream.flush()
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        in_registered = True
        while self._running:
            if deadline is not None and time.monotonic() > deadline:
                break
            # Flow control: stop taking TX samples while plenty are pending (ZMQ then backpressures the TX)
            want_in = self.core.pending() < self.core.config.max_pending_samples
            if want_in != in_registered:
                (poller.register(self.sock_in, zmq.POLLIN) if want_in else poller.unregister(self.sock_in))
                in_registered = want_in
            try:
                events = dict(poller.poll(100))
            except zmq.ZMQError as exc:  # interrupted system call on a signal
                if exc.errno == getattr(zmq, "EINTR", 4):
                    continue
                raise
            if self.sock_ctl is not None and events.get(self.sock_ctl):
                self._handle_control()
            if events.get(self.sock_in):
                self._drain_input()
            if self.out_pattern == "rep" and events.get(self.sock_out):
                self._drain_input()  # what the TX already sent lands before this read
                self._serve_requests()
        return self.stats()

    def _drain_input(self, max_messages: int = 64) -> None:
        zmq = self._zmq
        for _ in range(max_messages):
            if self.core.pending() >= self.core.config.max_pending_samples:
                return
            try:
                msg = self.sock_in.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.accept_tx(msg.buffer)
            if self.out_pattern == "push":
                self._push_pending()

    def accept_tx(self, buf) -> bool:
        """Place one TX message on the timeline; a bad one is dropped and counted. True if placed."""
        try:
            self._place(buf)
            return True
        except (ValueError, OverflowError, TypeError) as exc:
            self._drop(_kind(exc), exc)
        except MemoryError as exc:
            self._drop("out_of_memory", exc)
        return False

    def _drop(self, kind: str, exc: BaseException) -> None:
        self.drops.drop(kind, exc)
        self.core.stats["bad_messages"] = self.drops.total

    def _place(self, buf) -> None:
        if self.in_format == "raw":
            iq = wire.check_samples(wire.decode_raw(buf, "TX message"), "TX message")
            self.core.push(iq, start_of_burst=False)
            return
        hdr, iq = wire.decode_message(buf, "TX message")
        wire.check_samples(iq, "TX message")
        fs = self.core.config.sample_rate_hz
        if hdr.sample_rate_hz and abs(hdr.sample_rate_hz - fs) > 1e-6 * fs and not self._rate_warned:
            log.warning("TX radio runs at %g Hz, channel at %g Hz: samples are used as they are",
                        hdr.sample_rate_hz, fs)
            self._rate_warned = True
        self.core.push(
            iq,
            start_of_burst=bool(hdr.flags & wire.FLAG_SOB),
            timestamp=hdr.timestamp if hdr.flags & wire.FLAG_TIMED else None,
            tx_gain_db=hdr.tx_gain_db,
            tx_seq=hdr.seq,
        )

    def _serve_requests(self, max_requests: int = 64) -> None:
        zmq = self._zmq
        for _ in range(max_requests):
            try:
                frames = self.sock_out.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            ident, body = frames[0], frames[-1]
            try:
                n = wire.decode_request(body.buffer)
            except ValueError as exc:
                self._drop("bad_request", exc)
                n = 0
            n = max(0, min(n, MAX_REQUEST_SAMPLES))
            payload = self._read_message(n) if n else b""
            for f in ([ident, b""] if len(frames) >= 3 else [ident]):
                self.sock_out.send(f, zmq.SNDMORE)
            # copy=False: the payload is a fresh buffer nobody else touches; pyzmq keeps it alive until
            # libzmq is done with it (saves a copy into a freshly allocated libzmq message)
            self.sock_out.send(payload, copy=False)

    def _push_pending(self) -> None:
        got = self.core.take_pending()
        if got is None:
            return
        self.sock_out.send(self._encode_out(*got), copy=False)  # a fresh buffer: no copy needed

    def _read_message(self, n: int):
        """Read ``n`` samples straight into a new outgoing message (no intermediate copy); sent without
        copying (pyzmq sends buffers over its copy threshold zero-copy, keeping a reference)."""
        if self.out_format == "raw":
            return self.core.read(n)[0]
        buf = np.empty(wire.HEADER_SIZE + wire.SAMPLE_BYTES * n, np.uint8)
        _, ts = self.core.read(n, out=buf[wire.HEADER_SIZE :].view(np.complex64))
        cfg = self.core.config
        wire.Header(0, self._out_seq, ts, cfg.sample_rate_hz, cfg.center_freq_hz, 0.0, n).pack_into(buf)
        self._out_seq += 1
        return buf

    def _encode_out(self, iq: np.ndarray, ts: int):
        if self.out_format == "raw":
            return iq  # a fresh array from ChannelCore.read
        cfg = self.core.config
        hdr = wire.Header(0, self._out_seq, ts, cfg.sample_rate_hz, cfg.center_freq_hz, 0.0, iq.size)
        self._out_seq += 1
        return wire.encode_message(iq, hdr)

    # -- control --------------------------------------------------------------------------------------
    def _handle_control(self) -> None:
        frames = self.sock_ctl.recv_multipart()  # REP: the whole request, so the reply is always allowed
        self.sock_ctl.send(self.control_reply(frames))

    def control_reply(self, frames: list[bytes]) -> bytes:
        """The JSON reply (bytes) to one control request of ``frames``; never raises for bad input."""
        try:
            if len(frames) != 1:
                raise ValueError(f"a control request is one frame, got {len(frames)}")
            req = json.loads(frames[0].decode("utf-8"))
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ValueError('a control request is a JSON object with a string "cmd"')
            reply = self._control(req)
        except (ValueError, TypeError, OverflowError, UnicodeDecodeError, RecursionError) as exc:
            self.drops.drop("bad_control", exc)
            reply = {"ok": False, "error": str(exc)[:500]}
        try:
            return json.dumps(reply, default=_json_default).encode()
        except (TypeError, ValueError) as exc:  # a value we cannot send as JSON: say so instead
            return json.dumps({"ok": False, "error": f"reply not serialisable: {exc}"}).encode()

    def _control(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.pop("cmd")
        if cmd == "ping":
            return {"ok": True, "pid": os.getpid()}
        if cmd == "get":
            return {"ok": True, "config": self.core.config.to_json()}
        if cmd == "set":
            bad = sorted(set(req) - set(RUNTIME_FIELDS))
            if bad:
                raise ValueError(f"cannot change {', '.join(bad)} while running; changeable: {', '.join(RUNTIME_FIELDS)}")
            cfg = self.core.set(**req)
            return {"ok": True, "config": cfg.to_json()}
        if cmd == "stats":
            return {"ok": True, "stats": self.stats()}
        if cmd == "truth":
            since = integer("truth since", req.get("since", 0))
            limit = integer("truth max", req.get("max", 10_000), 1, MAX_TRUTH_RECORDS)
            recs = [r for r in self.core.truth if r["burst"] >= since][:limit]
            nxt = recs[-1]["burst"] + 1 if recs else max(since, self.core.burst_index - 0)
            return {"ok": True, "bursts": recs, "next": nxt}
        if cmd == "shutdown":
            self._running = False
            return {"ok": True}
        raise ValueError(f"unknown control command {cmd!r}; use ping, get, set, stats, truth or shutdown")

    def stats(self) -> dict[str, Any]:
        s = dict(self.core.stats)
        s["bad_messages"] = self.drops.total
        s["drops"] = dict(self.drops.counts)
        s.update(pending_samples=self.core.pending(), timeline_pos=self.core.timeline.pos,
                 uptime_s=time.monotonic() - self.started)
        return s

    def close(self) -> None:
        if hasattr(self, "core"):
            self.core.close()
        for s in (getattr(self, "sock_in", None), getattr(self, "sock_out", None), getattr(self, "sock_ctl", None)):
            if s is not None:
                s.close(0)
        release(self.ctx)
        self.ctx.term()


def _kind(exc: BaseException) -> str:
    """A short kind name for the drop counter, from the check that refused the message."""
    text = str(exc)
    for key, kind in (("magic", "bad_magic"), ("version", "bad_version"), ("payload has", "bad_length"),
                      ("shorter than", "too_short"), ("over the limit", "too_many_samples"),
                      ("flag", "bad_flags"), ("2**63", "bad_seq_or_timestamp"), ("header field", "bad_header_field"),
                      ("NaN/inf", "bad_samples"), ("timed burst", "timestamp_too_far"), ("link gain", "gain_too_high"),
                      ("whole number", "bad_length"), ("raw mode", "framed_in_raw_mode")):
        if key in text:
            return kind
    return type(exc).__name__


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and math.isinf(o):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_server(config: ChannelConfig, in_endpoint: str, out_endpoint: str, control_endpoint: str | None,
               *, in_format: str = "framed", out_format: str = "framed", out_pattern: str = "rep",
               in_connect: bool = False, out_connect: bool = False,
               max_seconds: float | None = None, nodes: int = 0) -> dict[str, Any]:
    """Run a channel in the foreground with SIGINT/SIGTERM handled; returns the final stats.

    ``nodes > 0``: one air shared by that many radios (see :mod:`sdr_tosc.channel.nodes`)."""
    kw = dict(in_format=in_format, out_format=out_format, out_pattern=out_pattern, in_connect=in_connect,
              out_connect=out_connect)
    if nodes:
        from .nodes import NodeChannelServer

        server: ChannelServer = NodeChannelServer(config, in_endpoint, out_endpoint, control_endpoint,
                                                  nodes=nodes, **kw)
    else:
        server = ChannelServer(config, in_endpoint, out_endpoint, control_endpoint, **kw)
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, server.stop)
        except ValueError:  # not the main thread
            pass
    die_with_parent()  # spawned by ChannelSimulator: stop when that process ends, even on SIGKILL
    try:
        return server.serve(max_seconds=max_seconds)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        server.close()
