"""A fake of the ``uhd`` Python API surface the USRP backend uses (no UHD simulator exists).

It behaves like a USRP with its TX looped back to RX: samples sent come back on RX after the samples
already "in the air" (zeros), and it records every call so tests can check the adapter's logic: one
streamer per session, timed commands, fc32/sc16, overflow/underflow/late handling.
"""

from __future__ import annotations

import enum
import types

import numpy as np


class TimeSpec:
    def __init__(self, secs: float = 0.0) -> None:
        self.secs = float(secs)

    def get_real_secs(self) -> float:
        return self.secs


class TuneRequest:
    def __init__(self, freq: float) -> None:
        self.target_freq = float(freq)


class StreamMode(enum.Enum):
    start_cont = "a"
    stop_cont = "o"
    num_done = "d"
    num_more = "m"


class StreamCMD:
    def __init__(self, mode: StreamMode) -> None:
        self.mode = mode
        self.num_samps = 0
        self.stream_now = True
        self.time_spec = TimeSpec(0.0)


class RXMetadataErrorCode(enum.Enum):
    none = 0
    timeout = 1
    late = 2
    broken_chain = 4
    overflow = 8
    alignment = 12
    bad_packet = 15


class RXMetadata:
    def __init__(self) -> None:
        self.error_code = RXMetadataErrorCode.none
        self.end_of_burst = False

    def strerror(self) -> str:
        return f"ERROR_CODE_{self.error_code.name.upper()}"


class TXMetadata:
    def __init__(self) -> None:
        self.start_of_burst = False
        self.end_of_burst = False
        self.has_time_spec = False
        self.time_spec = TimeSpec(0.0)


class TXMetadataEventCode(enum.Enum):
    burst_ack = 1
    underflow = 2
    seq_error = 4
    time_error = 8
    underflow_in_packet = 16
    seq_error_in_packet = 32
    user_payload = 64


class TXAsyncMetadata:
    def __init__(self) -> None:
        self.event_code = TXMetadataEventCode.burst_ack
        self.channel = 0


class StreamArgs:
    def __init__(self, cpu: str, otw: str) -> None:
        self.cpu_format, self.otw_format = cpu, otw
        self.channels: list[int] = []


class Device:
    """Shared state of the fake device (the test inspects it)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.rx_streamers = 0
        self.tx_streamers = 0
        self.stream_args: list[StreamArgs] = []
        self.air: list[np.ndarray] = []  # TX -> RX loopback queue
        self.time = 0.0
        self.inject: list[RXMetadataErrorCode] = []  # errors the next recv() calls report
        self.async_events: list[TXMetadataEventCode] = []
        self.tx_bursts: list[tuple[np.ndarray, TXMetadata]] = []


class RxStreamer:
    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.remaining = 0  # samples left in the current command (-1: continuous)
        self.commands: list[StreamCMD] = []

    def get_max_num_samps(self) -> int:
        return 2000

    def issue_stream_cmd(self, cmd: StreamCMD) -> None:
        self.commands.append(cmd)
        if cmd.mode is StreamMode.stop_cont:
            self.remaining = 0
        elif cmd.mode is StreamMode.start_cont:
            self.remaining = -1
        else:
            self.remaining = cmd.num_samps

    def recv(self, buf: np.ndarray, md: RXMetadata, timeout: float) -> int:
        assert buf.dtype == np.complex64 and buf.ndim == 2, "fc32 host format, shape (channels, n)"
        if self.dev.inject and self.remaining != 0:
            md.error_code = self.dev.inject.pop(0)
            return 0
        if self.remaining == 0:
            md.error_code = RXMetadataErrorCode.timeout
            return 0
        n = buf.shape[1] if self.remaining < 0 else min(buf.shape[1], self.remaining)
        out = np.zeros(n, np.complex64)
        k = 0
        while self.dev.air and k < n:
            head = self.dev.air[0]
            take = min(head.size, n - k)
            out[k : k + take] = head[:take]
            k += take
            self.dev.air[0] = head[take:]
            if self.dev.air[0].size == 0:
                self.dev.air.pop(0)
        buf[0, :n] = out
        if self.remaining > 0:
            self.remaining -= n
        self.dev.time += n / 1e6
        md.error_code = RXMetadataErrorCode.none
        md.end_of_burst = self.remaining == 0
        return n


class TxStreamer:
    def __init__(self, dev: Device) -> None:
        self.dev = dev

    def send(self, buf: np.ndarray, md: TXMetadata, timeout: float) -> int:
        assert buf.dtype == np.complex64 and buf.ndim == 2
        self.dev.tx_bursts.append((buf[0].copy(), md))
        self.dev.air.append(buf[0].copy())
        return buf.shape[1]

    def recv_async_msg(self, md: TXAsyncMetadata, timeout: float) -> bool:
        if self.dev.async_events:
            md.event_code = self.dev.async_events.pop(0)
            return True
        return False


class MultiUSRP:
    device: Device | None = None  # the most recent instance's device (for tests)

    def __init__(self, args: str = "") -> None:
        if "absent" in args:
            raise RuntimeError(f"LookupError: KeyError: No devices found for ----->\nDevice Address:\n    {args}")
        self.args = args
        self.dev = Device()
        MultiUSRP.device = self.dev
        self.settings: dict[str, float | str] = {}

    def _set(self, name, value, chan=0):
        self.dev.calls.append((name, value, chan))
        self.settings[name] = value

    def set_rx_rate(self, r, c=0): self._set("rx_rate", r, c)  # noqa: E704
    def set_tx_rate(self, r, c=0): self._set("tx_rate", r, c)  # noqa: E704
    def get_rx_rate(self, c=0): return self.settings["rx_rate"]  # noqa: E704
    def set_rx_bandwidth(self, b, c=0): self._set("rx_bw", b, c)  # noqa: E704
    def set_tx_bandwidth(self, b, c=0): self._set("tx_bw", b, c)  # noqa: E704
    def set_rx_freq(self, t, c=0): self._set("rx_freq", t.target_freq, c)  # noqa: E704
    def set_tx_freq(self, t, c=0): self._set("tx_freq", t.target_freq, c)  # noqa: E704
    def set_rx_gain(self, g, c=0): self._set("rx_gain", g, c)  # noqa: E704
    def set_tx_gain(self, g, c=0): self._set("tx_gain", g, c)  # noqa: E704
    def set_rx_antenna(self, a, c=0): self._set("rx_ant", a, c)  # noqa: E704
    def set_tx_antenna(self, a, c=0): self._set("tx_ant", a, c)  # noqa: E704
    def set_time_now(self, t): self.dev.time = t.get_real_secs()  # noqa: E704
    def get_time_now(self): return TimeSpec(self.dev.time)  # noqa: E704

    def get_rx_stream(self, args: StreamArgs) -> RxStreamer:
        self.dev.rx_streamers += 1
        self.dev.stream_args.append(args)
        return RxStreamer(self.dev)

    def get_tx_stream(self, args: StreamArgs) -> TxStreamer:
        self.dev.tx_streamers += 1
        self.dev.stream_args.append(args)
        return TxStreamer(self.dev)

    def recv_num_samps(self, *a, **k):  # the leaky convenience call the backend must never use
        raise AssertionError("recv_num_samps creates a streamer per call; the backend must not use it")


def make_module() -> types.ModuleType:
    mod = types.ModuleType("uhd")
    mod.usrp = types.SimpleNamespace(MultiUSRP=MultiUSRP, StreamArgs=StreamArgs)
    mod.types = types.SimpleNamespace(
        TimeSpec=TimeSpec, TuneRequest=TuneRequest, StreamCMD=StreamCMD, StreamMode=StreamMode,
        RXMetadata=RXMetadata, RXMetadataErrorCode=RXMetadataErrorCode, TXMetadata=TXMetadata,
        TXAsyncMetadata=TXAsyncMetadata, TXMetadataEventCode=TXMetadataEventCode,
    )
    mod.__version__ = "fake"
    return mod
