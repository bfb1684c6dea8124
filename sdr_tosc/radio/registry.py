"""Registry of radio backends: :func:`open_radio` and :func:`probe_backends`.

Backends import their hardware library lazily, so this module (and ``import sdr_tosc``) works with none of
them installed. :func:`probe_backends` answers "can I use pluto here, and if not, what do I install?";
:func:`open_radio` builds a radio by name (timm-style registry of factories).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class BackendStatus:
    name: str
    usable: bool
    detail: str  # version info when usable; why not and what to install otherwise


def _probe_zmq() -> BackendStatus:
    try:
        zmq = importlib.import_module("zmq")
    except ImportError as exc:
        return BackendStatus("zmq", False, f"pyzmq not importable ({exc}); install it: pip install pyzmq")
    return BackendStatus("zmq", True, f"pyzmq {zmq.pyzmq_version()}, libzmq {zmq.zmq_version()}")


def _probe_pluto() -> BackendStatus:
    try:
        iio = importlib.import_module("iio")
    except (ImportError, OSError) as exc:
        return BackendStatus(
            "pluto",
            False,
            f"libiio Python bindings not usable ({exc}); install the C library (Debian/Ubuntu: "
            "apt install libiio0 libiio-utils) and pip install 'sdr-tosc[pluto]' (pyadi-iio, pylibiio==0.25)",
        )
    try:
        importlib.import_module("adi")
    except (ImportError, OSError) as exc:
        return BackendStatus("pluto", False, f"pyadi-iio not importable ({exc}); pip install 'sdr-tosc[pluto]'")
    ver = getattr(iio, "version", None)
    libver = ".".join(str(x) for x in ver[:2]) if isinstance(ver, tuple) else str(ver)
    return BackendStatus("pluto", True, f"libiio {libver} found, pyadi-iio importable")


def _probe_usrp() -> BackendStatus:
    try:
        uhd = importlib.import_module("uhd")
    except (ImportError, OSError) as exc:
        return BackendStatus(
            "usrp",
            False,
            f"UHD Python API not importable ({exc}); PyPI has no Linux wheel: install the system package "
            "(Debian/Ubuntu: apt install python3-uhd uhd-host) and use a venv made with --system-site-packages",
        )
    ver = getattr(uhd, "__version__", None) or uhd_version(uhd)
    return BackendStatus("usrp", True, f"uhd {ver} importable")


def uhd_version(uhd) -> str:  # noqa: ANN001
    """UHD's version: the Python module of UHD 4.x has none, so ask libuhd's C API (``uhd_get_version_string``)."""
    for name in ("get_version_string",):
        fn = getattr(uhd, name, None) or getattr(getattr(uhd, "libpyuhd", None), name, None)
        if callable(fn):
            return str(fn())
    try:
        import ctypes
        import ctypes.util

        libname = ctypes.util.find_library("uhd")
        if libname:
            buf = ctypes.create_string_buffer(64)
            if ctypes.CDLL(libname).uhd_get_version_string(buf, ctypes.c_size_t(len(buf))) == 0:
                return buf.value.decode(errors="replace")
    except (OSError, AttributeError):
        pass
    return "(version unknown)"


PROBES = {"zmq": _probe_zmq, "pluto": _probe_pluto, "usrp": _probe_usrp}


def probe_backends() -> list[BackendStatus]:
    """Status of every registered backend on this machine."""
    return [probe() for probe in PROBES.values()]


#: Backend name -> "module:class" (imported only when that backend is opened).
BACKENDS: dict[str, str] = {
    "zmq": "sdr_tosc.radio.zmq:ZmqRadio",
    "pluto": "sdr_tosc.radio.pluto:PlutoRadio",
    "usrp": "sdr_tosc.radio.usrp:UsrpRadio",
}


def backend_class(kind: str) -> type:
    """The Radio subclass registered as ``kind`` (imports its module)."""
    if not isinstance(kind, str):
        raise TypeError(f"radio kind must be a string such as 'zmq', got {type(kind).__name__}")
    if kind not in BACKENDS:
        raise ValueError(f"unknown radio backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    modname, clsname = BACKENDS[kind].split(":")
    return getattr(importlib.import_module(modname), clsname)


def open_radio(kind: str, **settings):
    """Open a radio: ``open_radio("zmq" | "pluto" | "usrp", **settings) -> Radio``.

    Settings have units in their names (``center_freq_hz``, ``sample_rate_hz``, ``tx_gain_db``,
    ``rx_gain_db``) and are validated against the device profile; backend-specific ones are documented
    on each class (:class:`~sdr_tosc.radio.zmq.ZmqRadio`, :class:`~sdr_tosc.radio.pluto.PlutoRadio`,
    :class:`~sdr_tosc.radio.usrp.UsrpRadio`). Unknown settings raise TypeError naming the valid ones.
    """
    cls = backend_class(kind)
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n != "self"]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise TypeError(f"unknown setting(s) for the {kind} radio: {', '.join(unknown)}; "
                            f"valid: {', '.join(valid)}")
    return cls(**settings)
