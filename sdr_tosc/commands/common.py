"""Helpers shared by verb modules: ``--json``/``--config`` flags, writing results with their config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from ..config import save_config
from ..fileio import atomic_write_json


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH ('-' = stdout)")


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", type=Path, help="read settings from a TOML file (flags override it)")


#: Most values a START:STOP:STEP range may expand to (a sweep point costs a whole link run).
MAX_RANGE_POINTS = 1000


def parse_range(text: str, name: str = "range") -> list[float]:
    """Parse ``start:stop:step`` (stop included), a comma list ``a,b,c`` or a single number.

    Values must be finite; at most ``MAX_RANGE_POINTS`` of them.
    """
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3 or not all(math.isfinite(v) for v in parts):
                raise ValueError
            start, stop, step = parts
            if step == 0 or (stop - start) / step < 0:
                raise ValueError
            n = int(round((stop - start) / step)) + 1
            if n > MAX_RANGE_POINTS:
                raise argparse.ArgumentTypeError(
                    f"{name} {text!r} expands to {n} values; at most {MAX_RANGE_POINTS} (use a larger step)")
            return [round(start + i * step, 10) for i in range(n)]
        values = [float(x) for x in text.split(",") if x.strip() != ""] or _raise()
        if not all(math.isfinite(v) for v in values) or len(values) > MAX_RANGE_POINTS:
            raise ValueError
        return values
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"invalid {name} {text!r}: use START:STOP:STEP (e.g. -5:25:5), a list (0,10,20) or one number, "
            f"finite values, at most {MAX_RANGE_POINTS} of them"
        ) from None


def _raise() -> list[float]:
    raise ValueError


def write_result(path: Path | None, result: dict[str, Any], config: Any = None) -> None:
    """Write ``result`` as JSON (``-`` for stdout); save ``config`` (dataclass(es)) beside it as TOML."""
    if path is None:
        return
    if config is not None:
        result = {**result, "config": _plain(config)}
    if str(path) == "-":
        json.dump(result, sys.stdout, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        sys.stdout.write("\n")
        return
    atomic_write_json(path, result)
    if config is not None:
        save_config(config, path.with_suffix(".config.toml"))


def _plain(cfg: Any) -> Any:
    from ..config import to_dict

    if dataclasses.is_dataclass(cfg):
        return to_dict(cfg)
    if isinstance(cfg, dict):
        return {k: _plain(v) for k, v in cfg.items()}
    return cfg


# -- checks on parsed arguments, run by the CLI before any verb starts work -------------------------------

#: Integer flags that must be >= 1 (every other integer flag must be >= 0).
POSITIVE_INTS = {"images", "batch_size", "frames", "record_max_samples", "chunk_size", "threads", "replays",
                 "pca_samples", "input_size", "epochs"}
#: Float flags that must be > 0 (every float flag must be finite).
POSITIVE_FLOATS = {"duration_s", "timeout_s", "bin_db", "sample_rate_hz", "lr", "finetune_lr", "temperature"}
#: Float flags that must be >= 0.
NONNEG_FLOATS = {"center_freq_hz", "beta", "kd_weight", "rayleigh_prob", "label_smoothing", "burst_drop_prob",
                 "phase_noise_hz", "distance_m"}
#: Endpoint flags a process binds (others connect).
BIND_ENDPOINTS = {"feedback_bind", "in_endpoint", "out_endpoint", "control_endpoint"}
CONNECT_ENDPOINTS = {"feedback"}
#: Output files (checked writable before the run starts; '-' means stdout for --json).
OUTPUT_FILES = {"json", "plot", "record"}


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> None:
    """Refuse bad flag values before a verb starts: ValueError naming the flag, the value and the rule.

    Every number finite, counts >= 0 (sizes >= 1), durations and widths > 0, endpoints well formed (ports
    0..65535), output files in an existing, writable folder and not a folder themselves.
    """
    flags = _flag_names(args, parser)
    for dest, value in vars(args).items():
        if dest.startswith("_") or value is None or isinstance(value, bool):
            continue
        flag = flags.get(dest, "--" + dest.replace("_", "-"))
        if isinstance(value, int):
            lo = 1 if dest in POSITIVE_INTS else 0
            if value < lo and not (dest == "verbose" or dest == "quiet"):
                raise ValueError(f"{flag} {value}: must be an integer >= {lo}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{flag} {value}: must be a finite number")
            if dest in POSITIVE_FLOATS and not value > 0:
                raise ValueError(f"{flag} {value:g}: must be > 0")
            if dest in NONNEG_FLOATS and value < 0:
                raise ValueError(f"{flag} {value:g}: must be >= 0")
        elif (dest in BIND_ENDPOINTS or dest in CONNECT_ENDPOINTS) and not (dest == "control_endpoint" and not value):
            from ..radio.zmq import normalize_endpoint  # noqa: PLC0415

            normalize_endpoint(value, for_bind=dest in BIND_ENDPOINTS, what=flag)
    if getattr(args, "radio", None) == "zmq" and getattr(args, "uri", None):
        from ..radio.zmq import normalize_endpoint  # noqa: PLC0415

        normalize_endpoint(args.uri, what="--uri")
    for dest in OUTPUT_FILES:
        path = getattr(args, dest, None)
        if path is not None and str(path) != "-":
            check_writable(Path(path), flags.get(dest, f"--{dest}"))


def check_writable(path: Path, flag: str = "output") -> None:
    """ValueError unless ``path`` can be written: its folder exists and is writable, it is not a folder,
    and an existing file there is writable. Nothing is created."""
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path}: the existing file is not writable")


def _flag_names(args: argparse.Namespace, parser: argparse.ArgumentParser | None) -> dict[str, str]:
    """dest -> the long option string, from the verb's sub-parser (falls back to --dest)."""
    out: dict[str, str] = {}
    if parser is None:
        return out
    sub = None
    for action in parser._actions:  # noqa: SLF001 - argparse offers no public accessor
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            sub = action.choices.get(getattr(args, "verb", None))
    for action in (sub or parser)._actions:  # noqa: SLF001
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            out[action.dest] = longs[0]
    return out
