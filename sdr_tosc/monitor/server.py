"""The monitor's processes: a ZMQ subscriber thread, a channel-simulator poller, and the web page.

* :class:`Subscriber` connects a SUB socket to one or more event endpoints (``sdr-tosc demo --events``,
  ``rx --events``, ``measure --events``) and feeds :class:`~sdr_tosc.monitor.state.MonitorState`.
* :class:`ChannelLink` talks to the channel simulator's control socket (announced in the events, or given):
  it polls the per-burst truth (true SNR) and the settings, and applies the page's SNR/CFO/multipath
  changes with the simulator's own checks.
* :func:`create_app` is a Starlette (ASGI) app served by uvicorn: ``/`` the page, ``/static/*`` its assets
  (plotly.js from the installed ``plotly`` package: nothing is fetched from the internet), ``/events``
  server-sent events carrying a snapshot twice a second, ``/api/state`` the same snapshot once, and
  ``POST /api/channel`` the controls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from .state import MonitorState

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
#: Largest event message accepted (bytes); bigger ones are refused by libzmq.
MAX_EVENT_BYTES = 1 << 20
CONTROL_FIELDS = ("snr_db", "cfo_hz", "multipath")


class Subscriber:
    """A daemon thread reading JSON events from ``endpoints`` into ``state`` until :meth:`stop`."""

    def __init__(self, state: MonitorState, endpoints: list[str]) -> None:
        import zmq  # noqa: PLC0415

        from ..auth import secure_client  # noqa: PLC0415
        from ..radio.zmq import normalize_endpoint  # noqa: PLC0415

        if not endpoints:
            raise ValueError("the monitor needs at least one events endpoint to subscribe to (--connect)")
        self.endpoints = [normalize_endpoint(e, what="--connect") for e in endpoints]
        self.state = state
        self._zmq = zmq
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 100_000)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_EVENT_BYTES)
        self._sock.setsockopt(zmq.RCVTIMEO, 100)
        secure_client(self._sock)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        for e in self.endpoints:
            self._sock.connect(e)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-subscriber", daemon=True)

    def start(self) -> Subscriber:
        self._thread.start()
        return self

    def _run(self) -> None:
        zmq = self._zmq
        while not self._stop.is_set():
            try:
                raw = self._sock.recv()
            except zmq.Again:
                continue
            except zmq.ZMQError:
                break
            try:
                msg = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self.state.bad_messages += 1
                continue
            self.state.ingest(msg)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._sock.close(0)
        self._ctx.term()


class ChannelLink:
    """The channel simulator's control socket, polled for truth and settings; applies the page controls."""

    def __init__(self, state: MonitorState, endpoint: str | None = None, poll_s: float = 0.5) -> None:
        self.state = state
        self.endpoint = endpoint
        self.poll_s = poll_s
        self._ctl: Any = None
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-channel", daemon=True)
        self.error: str | None = None

    def start(self) -> ChannelLink:
        self._thread.start()
        return self

    def _control(self) -> Any:
        endpoint = self.endpoint or (self.state.status or {}).get("channel_control")
        if not isinstance(endpoint, str) or not endpoint:
            return None
        if self._ctl is None or self._ctl.endpoint != endpoint:
            from ..channel.process import ChannelControl  # noqa: PLC0415

            if self._ctl is not None:
                self._ctl.close()
            self._ctl = ChannelControl(endpoint, timeout_s=5.0)
            self._next = 0
        return self._ctl

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            with self._lock:
                try:
                    ctl = self._control()
                    if ctl is None:
                        continue
                    cfg = ctl.get()
                    recs = ctl.truth(since=self._next, max_bursts=10_000)
                except (TimeoutError, ValueError, OSError) as exc:
                    self.error = str(exc)
                    continue
            self.error = None
            fs = float(cfg.get("sample_rate_hz") or (self.state.status or {}).get("sample_rate_hz") or 1.0)
            if recs:
                self._next = int(recs[-1].get("burst", self._next)) + 1
                self.state.add_truth(recs, fs)
            self.state.channel = {k: cfg.get(k) for k in ("snr_db", "cfo_hz", "multipath", "fading",
                                                          "sample_rate_hz")}

    def apply(self, settings: Any) -> dict[str, Any]:
        """Check and apply ``{"snr_db", "cfo_hz", "multipath"}`` (any subset); returns the new settings."""
        if not isinstance(settings, dict) or not settings:
            raise ValueError("send a JSON object with some of snr_db, cfo_hz, multipath")
        unknown = sorted(set(settings) - set(CONTROL_FIELDS))
        if unknown:
            raise ValueError(f"unknown channel setting(s) {unknown}: the page may change {list(CONTROL_FIELDS)}")
        clean: dict[str, Any] = {}
        for k in ("snr_db", "cfo_hz"):
            if k in settings:
                v = settings[k]
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"{k} must be a finite number, got {v!r}")
                clean[k] = float(v)
        if "multipath" in settings:
            if not isinstance(settings["multipath"], str):
                raise ValueError(f"multipath must be a profile name, got {settings['multipath']!r}")
            clean["multipath"] = settings["multipath"]
        with self._lock:
            ctl = self._control()
            if ctl is None:
                raise RuntimeError("no channel simulator is known: the link does not run through 'sdr-tosc "
                                   "channel' (or give the monitor --channel-control ENDPOINT)")
            cfg = ctl.set(**clean)
        self.state.channel = {k: cfg.get(k) for k in ("snr_db", "cfo_hz", "multipath", "fading", "sample_rate_hz")}
        return self.state.channel

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3.0)
        if self._ctl is not None:
            self._ctl.close()


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package (served locally; no CDN)."""
    import plotly  # noqa: PLC0415

    p = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
    if not p.is_file():
        raise FileNotFoundError(f"{p} is missing: reinstall plotly (pip install --force-reinstall plotly)")
    return p


def create_app(state: MonitorState, channel: ChannelLink | None = None, period_s: float = 0.5) -> Any:
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import FileResponse, JSONResponse, StreamingResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    js = plotly_js()
    assets = {"plotly.min.js": js, "monitor.js": STATIC / "monitor.js", "monitor.css": STATIC / "monitor.css"}

    def dumps(obj: Any) -> str:
        return json.dumps(obj, separators=(",", ":"), default=_jsonable)

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def static(request: Request) -> Any:
        p = assets.get(request.path_params["name"])
        if p is None:
            return JSONResponse({"error": "no such asset"}, status_code=404)
        return FileResponse(p)

    async def api_state(request: Request) -> JSONResponse:
        return JSONResponse(json.loads(dumps(state.snapshot())))

    async def events(request: Request) -> StreamingResponse:
        async def gen():  # noqa: ANN202
            while True:
                if await request.is_disconnected():
                    break
                yield f"data: {dumps(state.snapshot())}\n\n"
                await asyncio.sleep(period_s)

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def api_channel(request: Request) -> JSONResponse:
        if channel is None:
            return JSONResponse({"ok": False, "error": "this monitor has no channel control"}, status_code=409)
        try:
            body = await request.body()
            if len(body) > 4096:
                raise ValueError("request too large")
            settings = json.loads(body.decode("utf-8"))
            cfg = await asyncio.to_thread(channel.apply, settings)
        except (ValueError, UnicodeDecodeError, TimeoutError, RuntimeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "channel": cfg})

    return Starlette(routes=[
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/state", api_state),
        Route("/events", events),
        Route("/api/channel", api_channel, methods=["POST"]),
    ])


def _jsonable(x: Any) -> Any:
    try:
        return float(x)
    except (TypeError, ValueError):
        return str(x)
