"""Registry of radio backends: :func:`open_radio`, :func:`open_from_uri` and :func:`probe_backends`.

A backend is a :class:`~sdr_tosc.radio.base.Radio` subclass in its own module that declares the plugin
contract (``kind``, ``default_profile``, ``probe()``, ``from_uri(uri, role)``, ``uri_help``, ``packages``;
see :mod:`sdr_tosc.radio.base`) and one registration: a line in :data:`BACKENDS` here, or, for a backend
shipped in another package, an entry point in the ``sdr_tosc.radio_backends`` group
(``soapy = "my_pkg.soapy:SoapyRadio"``). The command line's tables (``--radio`` choices, ``--uri`` help,
``sdr-tosc info``) are built from the registry, so nothing else changes when a backend is added.

Backend modules import their hardware library lazily, so this module (and ``import sdr_tosc``) works with
none of them installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
from typing import Any

from .base import BackendStatus, Radio

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "BackendStatus", "backend_class", "backend_kinds", "open_from_uri", "open_radio",
           "probe_backends", "register_backend", "uhd_version"]

#: Backend kind -> "module:Class" (the module is imported only when the backend is used).
BACKENDS: dict[str, str] = {
    "zmq": "sdr_tosc.radio.zmq:ZmqRadio",
    "pluto": "sdr_tosc.radio.pluto:PlutoRadio",
    "usrp": "sdr_tosc.radio.usrp:UsrpRadio",
    "file": "sdr_tosc.radio.file:FileRadio",
}

ENTRY_POINT_GROUP = "sdr_tosc.radio_backends"
_entry_points_loaded = False


def register_backend(kind: str, target: str) -> None:
    """Register ``kind`` -> ``"module:Class"`` (a Radio subclass implementing the plugin contract)."""
    if not isinstance(kind, str) or not kind.isidentifier():
        raise ValueError(f"backend kind must be a short identifier such as 'soapy', got {kind!r}")
    if not isinstance(target, str) or target.count(":") != 1:
        raise ValueError(f"backend target must be 'module:Class', got {target!r}")
    BACKENDS[kind] = target


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    try:
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except TypeError:  # Python < 3.10 signature
        eps = importlib.metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    for ep in eps:
        if ep.name in BACKENDS:
            log.warning("radio backend entry point %r ignored: the name is taken by %s", ep.name, BACKENDS[ep.name])
            continue
        BACKENDS[ep.name] = ep.value


def backend_kinds(transmit: bool = False, receive: bool = False) -> list[str]:
    """Registered kinds (those able to transmit and/or receive when asked)."""
    _load_entry_points()
    out = []
    for kind in BACKENDS:
        try:
            cls = backend_class(kind)
        except ImportError:
            continue
        if (transmit and not cls.can_transmit) or (receive and not cls.can_receive):
            continue
        out.append(kind)
    return out


def backend_class(kind: str) -> type[Radio]:
    """The Radio subclass registered as ``kind`` (imports its module, not its hardware library)."""
    _load_entry_points()
    if not isinstance(kind, str):
        raise TypeError(f"radio kind must be a string such as 'zmq', got {type(kind).__name__}")
    if kind not in BACKENDS:
        raise ValueError(f"unknown radio backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    modname, clsname = BACKENDS[kind].split(":")
    cls = getattr(importlib.import_module(modname), clsname)
    if not (isinstance(cls, type) and issubclass(cls, Radio)):
        raise TypeError(f"radio backend {kind!r} -> {BACKENDS[kind]} is not a Radio subclass")
    return cls


def probe_backends() -> list[BackendStatus]:
    """Status of every registered backend on this machine."""
    _load_entry_points()
    out = []
    for kind in list(BACKENDS):
        try:
            st = backend_class(kind).probe()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break `sdr-tosc info`
            st = BackendStatus(kind, False, f"backend module failed to load: {exc}")
        out.append(st)
    return out


def open_radio(kind: str, **settings: Any) -> Radio:
    """Open a radio: ``open_radio("zmq" | "pluto" | "usrp" | "file", **settings) -> Radio``.

    Settings have units in their names (``center_freq_hz``, ``sample_rate_hz``, ``tx_gain_db``,
    ``rx_gain_db``) and are validated against the device profile; backend-specific ones are documented
    on each class (:class:`~sdr_tosc.radio.zmq.ZmqRadio`, :class:`~sdr_tosc.radio.pluto.PlutoRadio`,
    :class:`~sdr_tosc.radio.usrp.UsrpRadio`, :class:`~sdr_tosc.radio.file.FileRadio`). Unknown settings
    raise TypeError naming the valid ones.
    """
    cls = backend_class(kind)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        valid = [n for n in params if n != "self"]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise TypeError(f"unknown setting(s) for the {kind} radio: {', '.join(unknown)}; "
                            f"valid: {', '.join(valid)}")
    return cls(**settings)


def open_from_uri(kind: str, uri: str | None, role: str, **settings: Any) -> Radio:
    """Open ``kind`` the way the command line does: the backend turns ``uri`` into its own settings."""
    cls = backend_class(kind)
    return open_radio(kind, **{**cls.from_uri(uri, role), **settings})


def uhd_version(uhd) -> str:  # noqa: ANN001
    """UHD's version: the Python module of UHD 4.x has none, so ask libuhd's C API (``uhd_get_version_string``)."""
    fn = getattr(uhd, "get_version_string", None) or getattr(getattr(uhd, "libpyuhd", None), "get_version_string", None)
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
