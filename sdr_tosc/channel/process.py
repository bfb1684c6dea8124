"""Python API for the channel simulator as a real separate process, plus a client for its control socket.

::

    from sdr_tosc.channel import ChannelSimulator
    from sdr_tosc.radio import open_radio

    with ChannelSimulator(snr_db=10, cfo_hz=2000, seed=1, sample_rate_hz=1e6) as ch:
        with open_radio("zmq", tx_endpoint=ch.in_endpoint, sample_rate_hz=1e6) as tx, \\
             open_radio("zmq", rx_endpoint=ch.out_endpoint, sample_rate_hz=1e6) as rx:
            tx.tx(burst)
            iq = rx.rx(100_000)
            truth = ch.truth()[-1]          # what the channel applied: snr_db, start, cfo_hz ...
            ch.set(snr_db=0)                # like turning a real radio's gain
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..auth import secure_client
from ..lifetime import child_env
from .config import ChannelConfig


class ChannelControl:
    """Client of a running channel's control socket (JSON over ZMQ REQ, with a timeout on every call)."""

    def __init__(self, endpoint: str, timeout_s: float = 5.0) -> None:
        import zmq

        from ..radio.zmq import normalize_endpoint

        self.endpoint = normalize_endpoint(endpoint, what="control endpoint")
        self.timeout_s = float(timeout_s)
        self._zmq = zmq
        self._ctx = zmq.Context()
        self._sock = None
        self._connect()

    def _connect(self) -> None:
        zmq = self._zmq
        if self._sock is not None:
            self._sock.close(0)
        s = self._ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, int(self.timeout_s * 1000))
        s.setsockopt(zmq.RCVTIMEO, int(self.timeout_s * 1000))
        secure_client(s)  # CURVE keys from SDR_TOSC_CURVE_SECRET when set (sdr_tosc.auth)
        s.connect(self.endpoint)
        self._sock = s

    def request(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; returns the reply dict. ValueError if the channel refused it."""
        try:
            self._sock.send(json.dumps({"cmd": cmd, **fields}).encode())
            reply = json.loads(self._sock.recv().decode())
        except self._zmq.Again:
            self._connect()  # a REQ socket is stuck after a lost reply; start afresh
            raise TimeoutError(f"channel control at {self.endpoint} did not answer {cmd!r} within "
                               f"{self.timeout_s:g} s: is the channel simulator still running?") from None
        if not reply.get("ok"):
            raise ValueError(f"channel refused {cmd!r}: {reply.get('error')}")
        return reply

    def ping(self) -> int:
        return int(self.request("ping")["pid"])

    def set(self, **settings: Any) -> dict[str, Any]:
        """Change settings while running (snr_db, cfo_hz, tx_gain_db, ...); returns the new config."""
        if "taps" in settings and settings["taps"] is not None:
            settings["taps"] = [[complex(t).real, complex(t).imag] for t in settings["taps"]]
        return self.request("set", **settings)["config"]

    def get(self) -> dict[str, Any]:
        return self.request("get")["config"]

    def stats(self) -> dict[str, Any]:
        return self.request("stats")["stats"]

    def truth(self, since: int = 0, max_bursts: int = 10_000) -> list[dict[str, Any]]:
        """Per-burst truth records (burst index >= since): start, arrival, length, snr_db, cfo_hz, ..."""
        return self.request("truth", since=since, max=max_bursts)["bursts"]

    def shutdown(self) -> None:
        self.request("shutdown")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self._ctx.term()


class ChannelSimulator:
    """Spawn ``python -m sdr_tosc.channel`` as a subprocess on ephemeral loopback ports.

    Keyword arguments are :class:`~sdr_tosc.channel.config.ChannelConfig` fields (``snr_db``, ``cfo_hz``,
    ``multipath``, ``fading``, ``seed`` ...). After :meth:`start` (or ``with``), ``in_endpoint`` (give it
    to the TX radio) and ``out_endpoint`` (the RX radio) are the bound endpoints; :meth:`set`,
    :meth:`stats` and :meth:`truth` talk to its control socket.
    """

    def __init__(
        self,
        *,
        in_endpoint: str = "tcp://127.0.0.1:0",
        out_endpoint: str = "tcp://127.0.0.1:0",
        control_endpoint: str = "tcp://127.0.0.1:0",
        raw: bool = False,
        out_pattern: str = "rep",
        in_connect: bool = False,
        out_connect: bool = False,
        start_timeout_s: float = 30.0,
        control_timeout_s: float = 5.0,
        python: str | None = None,
        **settings: Any,
    ) -> None:
        self.config = ChannelConfig().replace(**settings)  # validate here, before spawning anything
        self._endpoints_wanted = (in_endpoint, out_endpoint, control_endpoint)
        self.raw = raw
        self.out_pattern = out_pattern
        self.in_connect, self.out_connect = in_connect, out_connect
        self.start_timeout_s = start_timeout_s
        self.control_timeout_s = control_timeout_s
        self.python = python or sys.executable
        self.proc: subprocess.Popen | None = None
        self.control: ChannelControl | None = None
        self.in_endpoint = self.out_endpoint = self.control_endpoint = None
        self.pid: int | None = None

    def command(self) -> list[str]:
        """The command line that runs this simulator (also useful to print for users)."""
        cfg = self.config
        default = ChannelConfig()
        cmd = [self.python, "-m", "sdr_tosc.channel", "--in", self._endpoints_wanted[0],
               "--out", self._endpoints_wanted[1], "--control", self._endpoints_wanted[2],
               "--out-pattern", self.out_pattern]
        if self.raw:
            cmd.append("--raw")
        if self.in_connect:
            cmd.append("--in-connect")
        if self.out_connect:
            cmd.append("--out-connect")
        for name, val in cfg.to_json().items():
            if name in ("max_pending_samples", "idle_ref_power_dbfs", "dc_offset_i", "dc_offset_q", "taps"):
                continue
            if val == getattr(default, name) and name != "seed":
                continue
            if name == "snr_db" and val is None:
                continue  # --noise-dbfs alone selects link-budget mode
            cmd += [f"--{name.replace('_', '-')}", str(val)]
        if cfg.snr_db is None and "--noise-dbfs" not in cmd:
            cmd += ["--noise-dbfs", str(cfg.noise_dbfs)]
        if cfg.taps:
            cmd += ["--taps", ",".join(repr(complex(t)).strip("()") for t in cfg.taps)]
        if cfg.dc_offset_i or cfg.dc_offset_q:
            cmd += ["--dc-offset", f"{cfg.dc_offset_i},{cfg.dc_offset_q}"]
        if cfg.max_pending_samples != default.max_pending_samples or cfg.idle_ref_power_dbfs != default.idle_ref_power_dbfs:
            raise ValueError("max_pending_samples/idle_ref_power_dbfs are not command-line settings; "
                             "use a --config TOML with run_server() for them")
        return cmd

    def start(self) -> ChannelSimulator:
        if self.proc is not None:
            return self
        env = child_env()  # the simulator stops when this process ends, however it ends (sdr_tosc.lifetime)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # glibc: keep multi-megabyte sample buffers on the heap for reuse instead of fresh mmaps (page
        # faults on every message); measured ~10-15 % less CPU per sample. Ignored by other allocators.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 << 20))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 30))
        # stderr goes to a file, not a pipe: a chatty child must never block on a full pipe
        self._stderr = tempfile.TemporaryFile(mode="w+", prefix="sdr-tosc-channel-")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     text=True, bufsize=1)
        ready = self._wait_ready()
        self.in_endpoint, self.out_endpoint, self.control_endpoint = ready["in"], ready["out"], ready["control"]
        self.pid = ready["pid"]
        self.control = ChannelControl(self.control_endpoint, timeout_s=self.control_timeout_s)
        return self

    def _wait_ready(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=0.2):
                    if self.proc.poll() is not None:
                        break
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict) and msg.get("ready"):
                    return msg
        finally:
            sel.close()
        err = self._kill_and_collect()
        raise RuntimeError(f"channel simulator did not start within {self.start_timeout_s:g} s "
                           f"(command: {' '.join(self.command())}); its stderr:\n{err}")

    def _kill_and_collect(self) -> str:
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return self.stderr_text()[-4000:]

    def stderr_text(self) -> str:
        """Everything the simulator wrote to stderr so far (log messages, final statistics)."""
        f = getattr(self, "_stderr", None)
        if f is None or f.closed:
            return ""
        f.flush()
        f.seek(0)
        text = f.read()
        f.seek(0, 2)
        return text

    def _ctl(self) -> ChannelControl:
        if self.control is None:
            raise RuntimeError("channel simulator is not running; call start() or use 'with ChannelSimulator(...)'")
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"channel simulator exited with status {self.proc.returncode}; stderr:\n"
                               f"{self._kill_and_collect()}")
        return self.control

    def set(self, **settings: Any) -> dict[str, Any]:
        """Change settings while it runs (e.g. ``set(snr_db=5, cfo_hz=0, tx_gain_db=-10)``)."""
        return self._ctl().set(**settings)

    def get(self) -> dict[str, Any]:
        return self._ctl().get()

    def stats(self) -> dict[str, Any]:
        return self._ctl().stats()

    def truth(self, since: int = 0, max_bursts: int = 10_000) -> list[dict[str, Any]]:
        """What the channel applied to each burst: ``start``, ``arrival``, ``length``, ``snr_db`` ..."""
        return self._ctl().truth(since, max_bursts)

    def wait_received(self, samples_in: int, timeout_s: float = 5.0) -> dict[str, Any]:
        """Handshake: wait until the channel has taken ``samples_in`` TX samples in total; returns stats.

        TX and RX use separate sockets, so a burst sent just before a read may land after it (as on a
        real radio). Tests and tools that want the burst inside the next read call this first.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.stats()
            if st["samples_in"] >= samples_in:
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"channel took {st['samples_in']} of {samples_in} TX samples within "
                                   f"{timeout_s:g} s: is the TX radio connected to {self.in_endpoint}?")
            time.sleep(0.0005)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout_s``); returns the exit status."""
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        code = self.proc.returncode
        self.proc = None
        return code

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> ChannelSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
        except Exception:  # noqa: BLE001 - finaliser must not raise
            pass
