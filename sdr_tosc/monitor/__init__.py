"""``sdr-tosc monitor``: a local web page showing a running link live (see :mod:`sdr_tosc.monitor.server`).

The link publishes per-frame events (:mod:`sdr_tosc.link.events`); the monitor subscribes, keeps a bounded
history (:mod:`sdr_tosc.monitor.state`) and serves the page; :func:`serve` runs it until stopped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import Any

from .state import MonitorState

__all__ = ["MonitorProcess", "MonitorState", "serve"]

log = logging.getLogger(__name__)


def serve(connect: list[str], host: str = "127.0.0.1", port: int = 8050, channel_control: str | None = None,
          history: int = 100_000, ready_line: bool = False, out: Any = None) -> None:
    """Subscribe to ``connect`` and serve the page on ``host:port`` (0: any free port) until interrupted.

    Prints ``monitor at http://HOST:PORT/`` (or, with ``ready_line``, one JSON line ``{"ready": true,
    "url": ...}``, the handshake ``demo --monitor`` waits for) once the page is reachable.
    """
    import uvicorn  # noqa: PLC0415

    from ..lifetime import PARENT_ENV, die_with_parent  # noqa: PLC0415
    from .server import ChannelLink, Subscriber, create_app  # noqa: PLC0415

    if os.environ.get(PARENT_ENV):
        die_with_parent()  # started by demo --monitor: stop with it
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"--port {port!r}: must be 0..65535 (0: any free port)")
    out = out or sys.stdout
    state = MonitorState(history)
    sub = Subscriber(state, connect)
    chan = ChannelLink(state, channel_control)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve the monitor on {host}:{port}: {exc.strerror or exc}; "
                      "choose another --port (0: any free one)") from None
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("the monitor page on %s is reachable from other hosts, and its controls change the channel "
                    "simulator", host)
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}/"
    app = create_app(state, chan)

    def announce() -> None:
        if ready_line:
            print(json.dumps({"ready": True, "url": url}), file=out, flush=True)
        else:
            print(f"monitor at {url} (subscribed to {', '.join(sub.endpoints)}); Ctrl-C to stop", file=out,
                  flush=True)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            announce()

    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1))
    sub.start()
    chan.start()
    try:
        server.run(sockets=[sock])
    finally:
        chan.stop()
        sub.stop()
        sock.close()


class MonitorProcess:
    """``sdr-tosc monitor`` as a child process (``demo --monitor``): started, its URL read, stopped on close.

    The child dies with this process however it ends (:mod:`sdr_tosc.lifetime`).
    """

    def __init__(self, connect: str, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 30.0) -> None:
        import selectors  # noqa: PLC0415
        import subprocess  # noqa: PLC0415
        import time  # noqa: PLC0415

        from ..lifetime import child_env  # noqa: PLC0415

        env = child_env()
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "sdr_tosc.cli", "monitor", "--connect", connect, "--host", host,
               "--port", str(port), "--ready-line"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                                     bufsize=1)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        self.url = None
        while self.url is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None or not sel.select(left):
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""
                self.close()
                raise RuntimeError(f"the monitor did not start within {timeout_s:g} s: {err.strip()[-500:]}")
            line = self.proc.stdout.readline()
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("ready"):
                self.url = str(msg["url"])
        sel.close()

    def close(self, timeout_s: float = 5.0) -> None:
        import subprocess  # noqa: PLC0415

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def __enter__(self) -> MonitorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
