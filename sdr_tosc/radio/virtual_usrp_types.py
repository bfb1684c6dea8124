"""``uhd.types`` for the virtual USRP: time specs, stream commands, metadata and their codes (UHD 4.3 names
and values), and the parser of its device args."""

from __future__ import annotations

import enum
import math
from typing import Any


class TimeSpec:
    """Seconds on the device clock (``uhd.types.TimeSpec``: full seconds + fractional seconds)."""

    def __init__(self, secs: float = 0.0, frac: float | None = None) -> None:
        total = float(secs) + (float(frac) if frac is not None else 0.0)
        if not math.isfinite(total):
            raise ValueError(f"TimeSpec must be finite, got {total!r}")
        self._secs = total

    def get_real_secs(self) -> float:
        return self._secs

    def get_full_secs(self) -> int:
        return int(math.floor(self._secs))

    def get_frac_secs(self) -> float:
        return self._secs - math.floor(self._secs)

    def to_ticks(self, rate: float) -> int:
        return int(round(self._secs * rate))

    def __add__(self, other: TimeSpec | float) -> TimeSpec:
        return TimeSpec(self._secs + (other.get_real_secs() if isinstance(other, TimeSpec) else float(other)))

    def __sub__(self, other: TimeSpec | float) -> TimeSpec:
        return TimeSpec(self._secs - (other.get_real_secs() if isinstance(other, TimeSpec) else float(other)))

    def __repr__(self) -> str:
        return f"TimeSpec({self._secs:.9f})"


class TuneRequest:
    def __init__(self, target_freq: float = 0.0, lo_off: float = 0.0) -> None:
        self.target_freq = float(target_freq)
        self.lo_off = float(lo_off)


class StreamMode(enum.Enum):
    start_cont = ord("a")
    stop_cont = ord("o")
    num_done = ord("d")
    num_more = ord("m")


class StreamCMD:
    def __init__(self, mode: StreamMode) -> None:
        if not isinstance(mode, StreamMode):
            raise TypeError(f"StreamCMD needs a StreamMode, got {mode!r}")
        self.mode = mode
        self.num_samps = 0
        self.stream_now = True
        self.time_spec = TimeSpec(0.0)


class RXMetadataErrorCode(enum.IntEnum):
    none = 0x0
    timeout = 0x1
    late = 0x2
    broken_chain = 0x4
    overflow = 0x8
    alignment = 0xC
    bad_packet = 0xF


_RX_STRERROR = {
    RXMetadataErrorCode.none: "ERROR_CODE_NONE",
    RXMetadataErrorCode.timeout: "ERROR_CODE_TIMEOUT",
    RXMetadataErrorCode.late: "ERROR_CODE_LATE_COMMAND",
    RXMetadataErrorCode.broken_chain: "ERROR_CODE_BROKEN_CHAIN",
    RXMetadataErrorCode.overflow: "ERROR_CODE_OVERFLOW",
    RXMetadataErrorCode.alignment: "ERROR_CODE_ALIGNMENT",
    RXMetadataErrorCode.bad_packet: "ERROR_CODE_BAD_PACKET",
}


class RXMetadata:
    """Filled by ``recv``; read-only for the host, like UHD's."""

    def __init__(self) -> None:
        self._set(RXMetadataErrorCode.none)

    def _set(self, code: RXMetadataErrorCode, time_spec: TimeSpec | None = None, end_of_burst: bool = False) -> None:
        self._error_code = code
        self._time_spec = time_spec or TimeSpec(0.0)
        self._has_time_spec = time_spec is not None
        self._end_of_burst = end_of_burst

    error_code = property(lambda self: self._error_code)
    time_spec = property(lambda self: self._time_spec)
    has_time_spec = property(lambda self: self._has_time_spec)
    end_of_burst = property(lambda self: self._end_of_burst)
    start_of_burst = property(lambda self: False)
    more_fragments = property(lambda self: False)
    out_of_sequence = property(lambda self: False)

    def strerror(self) -> str:
        return _RX_STRERROR[self._error_code]


class TXMetadata:
    def __init__(self) -> None:
        self.start_of_burst = False
        self.end_of_burst = False
        self.has_time_spec = False
        self.time_spec = TimeSpec(0.0)


class TXMetadataEventCode(enum.IntEnum):
    burst_ack = 0x1
    underflow = 0x2
    seq_error = 0x4
    time_error = 0x8
    underflow_in_packet = 0x10
    seq_error_in_packet = 0x20
    user_payload = 0x40


class TXAsyncMetadata:
    def __init__(self) -> None:
        self._set(TXMetadataEventCode.burst_ack, None)

    def _set(self, code: TXMetadataEventCode, time_spec: TimeSpec | None) -> None:
        self._event_code = code
        self._time_spec = time_spec or TimeSpec(0.0)
        self._has_time_spec = time_spec is not None

    event_code = property(lambda self: self._event_code)
    time_spec = property(lambda self: self._time_spec)
    has_time_spec = property(lambda self: self._has_time_spec)
    channel = property(lambda self: 0)


class StreamArgs:
    def __init__(self, cpu_format: str = "fc32", otw_format: str = "sc16") -> None:
        self.cpu_format = cpu_format
        self.otw_format = otw_format
        self.channels: list[int] = []
        self.args = ""


#: device-arg keys of the virtual USRP with their types and defaults
DEVICE_ARGS: dict[str, tuple[type, Any]] = {
    "type": (str, "virtual"),
    "serial": (str, "VIRT0001"),
    "in": (str, None),
    "out": (str, None),
    "link": (str, "default"),
    "air": (str, None),  # the emulate --json file: join the emulated Plutos' air as a guest node
    "node": (int, -1),  # which guest node (-1: the first)
    "ppm": (float, 0.0),
    "noise_floor_dbfs": (float, -75.0),
    "thermal_dbfs": (float, -110.0),
    "path_loss_db": (float, 30.0),
    "num_recv_frames": (int, 16),  # UHD's transport args: frames of one packet each (2040 samples)
    "num_send_frames": (int, 16),
    "seed": (int, 1),
    "tx_packet_loss": (float, 0.0),
}


def parse_device_args(text: str) -> dict[str, Any]:
    """``"type=virtual,ppm=-18,out=tcp://127.0.0.1:5556"`` -> validated dict (ValueError naming the key)."""
    if not isinstance(text, str):
        raise TypeError(f"device args must be a string like 'type=virtual,ppm=5', got {type(text).__name__}")
    out = {k: v for k, (_, v) in DEVICE_ARGS.items()}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or key not in DEVICE_ARGS:
            raise ValueError(f"virtual USRP device arg {item!r} not understood; known keys: "
                             f"{', '.join(DEVICE_ARGS)} (e.g. type=virtual,ppm=-18,serial=V1)")
        conv = DEVICE_ARGS[key][0]
        try:
            out[key] = conv(val)
        except ValueError:
            raise ValueError(f"virtual USRP device arg {key}={val!r} must be {conv.__name__}") from None
    if out["type"] != "virtual":
        raise ValueError(f"virtual USRP needs type=virtual, got type={out['type']!r}")
    if not abs(out["ppm"]) <= 200:
        raise ValueError(f"virtual USRP ppm={out['ppm']:g} is outside +-200 (crystals are within +-25 ppm)")
    if not 0.0 <= out["tx_packet_loss"] <= 1.0:
        raise ValueError(f"virtual USRP tx_packet_loss={out['tx_packet_loss']:g} must be a probability in [0, 1]")
    for key in ("num_recv_frames", "num_send_frames"):
        if not 1 <= out[key] <= 1 << 16:
            raise ValueError(f"virtual USRP {key}={out[key]} must be in 1..{1 << 16}")
    if (out["in"] or out["out"]) and out["link"] != "default":
        raise ValueError("virtual USRP: give either in=/out= (a running channel) or link= (a shared one), not both")
    if out["air"] is not None and (out["in"] or out["out"] or out["link"] != "default"):
        raise ValueError("virtual USRP: give either air= (the emulated Plutos' air) or in=/out=/link=, not both")
    if out["node"] != -1 and out["air"] is None:
        raise ValueError("virtual USRP: node= picks a guest node of air=; give air=plutos.json too")
    for key in ("in", "out"):
        if out[key] is not None:
            from .zmq import normalize_endpoint

            out[key] = normalize_endpoint(out[key], what=f"virtual USRP {key}=")
    return out
