"""Helpers shared by verb modules: ``--json``/``--config`` flags, writing results with their config."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from ..config import save_config
from ..fileio import atomic_write_json


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", type=Path, help="also write the results as JSON to PATH ('-' = stdout)")


def add_config_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", type=Path, help="read settings from a TOML file (flags override it)")


def parse_range(text: str, name: str = "range") -> list[float]:
    """Parse ``start:stop:step`` (stop included), a comma list ``a,b,c`` or a single number."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [float(x) for x in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step == 0 or (stop - start) / step < 0:
                raise ValueError
            n = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 10) for i in range(n)]
        return [float(x) for x in text.split(",") if x.strip() != ""] or _raise()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid {name} {text!r}: use START:STOP:STEP (e.g. -5:25:5), a list (0,10,20) or one number"
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
