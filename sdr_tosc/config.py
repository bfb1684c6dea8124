"""Configuration: frozen dataclasses loaded from TOML, overridden by flags, saved next to every result.

Each part of the project defines its configuration as a frozen dataclass (``ModemConfig`` in
:mod:`sdr_tosc.modem`, radio settings in :mod:`sdr_tosc.radio`, training settings in
:mod:`sdr_tosc.semantic` ...). This module is the one way to turn them into and out of files:

* :func:`load_config` builds a dataclass from defaults, then a TOML file (its own table, or the whole file),
  then explicit overrides (usually command-line flags that the user actually gave), in that order.
* :func:`save_config` writes the effective configuration as TOML beside a result, atomically.
* Unknown keys and wrong types are errors that name the key and the file, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from .fileio import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key and the source."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value, 0)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        out = None
        if isinstance(value, (int, float)):
            try:
                out = float(value)
            except OverflowError:
                raise ConfigError(f"{where}: {str(value)[:40]}... is too large for a number") from None
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                pass
        if out is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(out):
            raise ConfigError(f"{where}: {value!r} is not a finite number")
        return out
    if tp is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], source: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid keys: {', '.join(sorted(types_))}"
        )
    kwargs = {k: _coerce(v, types_[k], f"{source}: {k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass as plain TOML/JSON-friendly values (tuples become lists, None values are dropped)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v) if getattr(v, f.name) is not None}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items() if x is not None}
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        return v

    return conv(cfg)


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TOML document at ``path``; ConfigError naming the file when it is not UTF-8 TOML or too large."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TOML_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config file "
                              f"(at most {MAX_TOML_BYTES})")
        text = path.read_bytes().decode("utf-8")
        return tomllib.loads(text)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text TOML file (byte {exc.start} is not UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


#: Largest TOML config file read (they are a few hundred bytes).
MAX_TOML_BYTES = 1 << 20


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    section: str | None = None,
) -> T:
    """Defaults < TOML file (table ``section`` if given and present, else the whole file) < overrides.

    ``overrides`` entries whose value is ``None`` are ignored (a flag the user did not give).
    """
    data: dict[str, Any] = {}
    source = cls.__name__
    if path is not None:
        raw = read_toml(path)
        if section is not None and section in raw:
            raw = raw[section]
        data.update(raw)
        source = f"{path}" + (f" [{section}]" if section else "")
    if overrides:
        data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(cls, data, source)


def save_config(cfg: Any, path: str | os.PathLike[str], section: str | None = None) -> Path:
    """Write ``cfg`` (a dataclass, or a mapping of section name -> dataclass) as TOML, atomically."""
    if dataclasses.is_dataclass(cfg):
        doc: dict[str, Any] = to_dict(cfg)
        if section:
            doc = {section: doc}
    elif isinstance(cfg, Mapping):
        doc = to_dict(dict(cfg))
    else:
        raise TypeError(f"save_config needs a dataclass or a mapping, got {type(cfg).__name__}")
    path = Path(path)
    atomic_write_text(path, tomli_w.dumps(doc))
    return path


def replace(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` with the same type checks as loading."""
    merged = {**to_dict(cfg), **{k: v for k, v in changes.items()}}
    return from_dict(type(cfg), merged, type(cfg).__name__)
