"""Device profiles: the limits a radio's settings are validated against, and defaults for demos.

The profiles are TOML files in the repository's ``hardware/`` folder (one per device, with set-up notes).
This module carries the same numbers built in, so validation works from an installed wheel too, and
:func:`load_profile` prefers the TOML file when it exists (a test checks the two agree). A user can point
``SDR_TOSC_HARDWARE_DIR`` at a folder of their own profiles, or pass a path.

Units are in the key names: ``*_hz`` in hertz, ``*_db`` in dB, ``*_sps`` in complex samples per second.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Built-in copy of hardware/*.toml (limits and the default centre frequency; notes and demo defaults live in
#: the TOML files). Default centre frequency 2.44 GHz: the middle of the 2.4-2.4835 GHz ISM band, licence-exempt
#: worldwide (915 MHz is ISM in ITU Region 2, the Americas, only; 868 MHz SRD in Europe).
BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "zmq": {
        "description": "ZMQ channel simulator (sdr-tosc channel): no analog limits, any rate the CPU sustains",
        "backend": "zmq",
        "sample_rate_hz": [1.0, 1.0e9],
        "sustained_rate_sps": 20.0e6,
        "center_freq_hz": [0.0, 1.0e11],
        "default_center_freq_hz": 2.44e9,
        "tx_gain_db": [-120.0, 60.0],
        "rx_gain_db": [-120.0, 60.0],
    },
    "pluto": {
        "description": "ADALM-Pluto rev B (AD9363; LO/rate as shipped, firmware can unlock AD9364 ranges)",
        "backend": "pluto",
        "sample_rate_hz": [521e3, 61.44e6],
        "sustained_rate_sps": 4.0e6,
        "center_freq_hz": [325e6, 3.8e9],
        "default_center_freq_hz": 2.44e9,
        "tx_gain_db": [-89.75, 0.0],
        "rx_gain_db": [-3.0, 71.0],
    },
    "pluto_revc": {
        "description": "ADALM-Pluto rev C/D (AD9363, 2RX/2TX on u.FL; same ranges as rev B)",
        "backend": "pluto",
        "sample_rate_hz": [521e3, 61.44e6],
        "sustained_rate_sps": 4.0e6,
        "center_freq_hz": [325e6, 3.8e9],
        "default_center_freq_hz": 2.44e9,
        "tx_gain_db": [-89.75, 0.0],
        "rx_gain_db": [-3.0, 71.0],
    },
    "b200": {
        "description": "Ettus USRP B200 (AD9364, 1x1, USB 3)",
        "backend": "usrp",
        "sample_rate_hz": [200e3, 56e6],
        "sustained_rate_sps": 56.0e6,
        "center_freq_hz": [70e6, 6.0e9],
        "default_center_freq_hz": 2.44e9,
        "tx_gain_db": [0.0, 89.8],
        "rx_gain_db": [0.0, 76.0],
    },
    "b210": {
        "description": "Ettus USRP B210 (AD9361, 2x2, USB 3)",
        "backend": "usrp",
        "sample_rate_hz": [200e3, 56e6],
        "sustained_rate_sps": 56.0e6,
        "center_freq_hz": [70e6, 6.0e9],
        "default_center_freq_hz": 2.44e9,
        "tx_gain_db": [0.0, 89.8],
        "rx_gain_db": [0.0, 76.0],
    },
    "n210": {
        "description": "Ettus USRP N210 (Gigabit Ethernet) with a UBX daughterboard",
        "backend": "usrp",
        "sample_rate_hz": [195.3125e3, 25e6],
        "sustained_rate_sps": 25.0e6,
        "center_freq_hz": [10e6, 6.0e9],
        "default_center_freq_hz": 2.44e9,
        "tx_gain_db": [0.0, 31.5],
        "rx_gain_db": [0.0, 31.5],
    },
}

LIMIT_KEYS = ("sample_rate_hz", "center_freq_hz", "tx_gain_db", "rx_gain_db")


@dataclass(frozen=True)
class RadioProfile:
    """Validated limits of one device. Ranges are ``(min, max)`` inclusive, in the units of their names."""

    name: str
    description: str
    backend: str
    sample_rate_hz: tuple[float, float]
    sustained_rate_sps: float
    center_freq_hz: tuple[float, float]
    tx_gain_db: tuple[float, float]
    rx_gain_db: tuple[float, float]
    source: str = "built-in"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def check(self, key: str, value: float) -> float:
        """Return ``value`` as float if inside the profile's range for ``key``; ValueError naming the limit."""
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{key} must be a number, got {value!r}") from None
        if value != value:  # NaN
            raise ValueError(f"{key} is NaN")
        lo, hi = getattr(self, key)
        if not lo <= value <= hi:
            raise ValueError(
                f"{key}={value:g} is outside the {self.name} profile's range [{lo:g}, {hi:g}] "
                f"({self.description}; profile from {self.source})"
            )
        return value


def hardware_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml`` profiles: $SDR_TOSC_HARDWARE_DIR, then the checkout's hardware/."""
    dirs = []
    env = os.environ.get("SDR_TOSC_HARDWARE_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parents[2] / "hardware")
    return dirs


def _from_mapping(name: str, data: dict[str, Any], source: str) -> RadioProfile:
    missing = [k for k in (*LIMIT_KEYS, "description", "backend", "sustained_rate_sps") if k not in data]
    if missing:
        raise ValueError(f"radio profile {name!r} ({source}) lacks {', '.join(missing)}")
    ranges = {}
    for key in LIMIT_KEYS:
        val = data[key]
        if not (isinstance(val, (list, tuple)) and len(val) == 2 and float(val[0]) <= float(val[1])):
            raise ValueError(f"radio profile {name!r} ({source}): {key} must be [min, max], got {val!r}")
        ranges[key] = (float(val[0]), float(val[1]))
    known = {*LIMIT_KEYS, "description", "backend", "sustained_rate_sps", "name"}
    return RadioProfile(
        name=name,
        description=str(data["description"]),
        backend=str(data["backend"]),
        sustained_rate_sps=float(data["sustained_rate_sps"]),
        source=source,
        extra={k: v for k, v in data.items() if k not in known},
        **ranges,
    )


def load_profile(name_or_path: str | os.PathLike[str]) -> RadioProfile:
    """Load a profile by name (``pluto``, ``b210`` ...) or from a TOML file path."""
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"radio profile file not found: {path}")
        return _from_mapping(path.stem, _read_toml(path), str(path))
    for folder in hardware_dirs():
        path = folder / f"{text}.toml"
        if path.is_file():
            return _from_mapping(text, _read_toml(path), str(path))
    if text in BUILTIN_PROFILES:
        return _from_mapping(text, BUILTIN_PROFILES[text], "built-in")
    raise ValueError(
        f"unknown radio profile {text!r}; known: {', '.join(sorted(BUILTIN_PROFILES))} "
        "(or pass a path to a TOML file like hardware/pluto.toml)"
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"radio profile {path} is not valid TOML: {exc}") from None
    return data.get("profile", data)


#: Used when a profile names no ``default_center_freq_hz``: 2.44 GHz, ISM worldwide.
DEFAULT_CENTER_FREQ_HZ = 2.44e9


def default_center_freq_hz(profile: RadioProfile | str) -> float:
    """The centre frequency a radio uses when none is given: the profile's ``default_center_freq_hz``."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    value = float(prof.extra.get("default_center_freq_hz", DEFAULT_CENTER_FREQ_HZ))
    return prof.check("center_freq_hz", value)


def demo_defaults(name: str) -> dict[str, Any]:
    """The ``[demo]`` table of ``hardware/<name>.toml`` (two-radio demo defaults: URIs, gains ...); {} if none."""
    for folder in hardware_dirs():
        path = folder / f"{name}.toml"
        if path.is_file():
            with open(path, "rb") as fh:
                return dict(tomllib.load(fh).get("demo", {}))
    if name not in BUILTIN_PROFILES:
        raise ValueError(f"unknown radio profile {name!r}; known: {', '.join(sorted(BUILTIN_PROFILES))}")
    return {}
