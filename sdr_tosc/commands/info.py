"""``sdr-tosc info``: versions of the stack and which radio backends are usable here."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform

from .. import __version__
from .common import add_json_flag, write_result

HELP = "show package versions and which radio backends are usable on this machine"
EXAMPLES = """
  sdr-tosc info
  sdr-tosc info --json info.json
"""

# (label, distribution name for importlib.metadata, module to import as a fallback); each radio backend
# adds the libraries it needs (its ``packages``), so a new backend needs no line here
PACKAGES = [
    ("torch", "torch", "torch"),
    ("numpy", "numpy", "numpy"),
    ("scipy", "scipy", "scipy"),
    ("transformers", "transformers", "transformers"),
    ("safetensors", "safetensors", "safetensors"),
    ("sigmf", "sigmf", "sigmf"),
    ("gnuradio", None, "gnuradio.gr"),
]


def all_packages() -> list[tuple[str, str | None, str]]:
    from ..radio.registry import BACKENDS, backend_class

    out = list(PACKAGES)
    for kind in BACKENDS:
        try:
            extra = backend_class(kind).packages
        except ImportError:
            continue
        out += [p for p in extra if p[0] not in {q[0] for q in out}]
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_json_flag(p)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for label, dist, module in all_packages():
        version = None
        if dist:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = None
        if version is None:
            try:
                mod = importlib.import_module(module)
                version = getattr(mod, "__version__", None)
                if version is None and hasattr(mod, "version") and callable(mod.version):
                    version = str(mod.version())
                version = version or "installed"
            except (ImportError, OSError):
                version = None
        out[label] = version
    out["libiio"] = _libiio_version()
    if out.get("uhd") == "installed":
        from ..radio.registry import uhd_version

        out["uhd"] = uhd_version(importlib.import_module("uhd"))
    return out


def _libiio_version() -> str | None:
    try:
        iio = importlib.import_module("iio")
    except (ImportError, OSError):
        return None
    ver = getattr(iio, "version", None)
    if isinstance(ver, tuple):
        return ".".join(str(x) for x in ver[:2]) + (f" ({ver[2]})" if len(ver) > 2 else "")
    return str(ver) if ver else "installed"


def run(args: argparse.Namespace) -> int:
    from ..radio import probe_backends

    versions = package_versions()
    backends = probe_backends()
    print(f"sdr-tosc {__version__}  (Python {platform.python_version()}, {platform.machine()})")
    print("packages:")
    for name, ver in versions.items():
        print(f"  {name:<13} {ver or 'not installed'}")
    print("radio backends:")
    for b in backends:
        print(f"  {b.name:<6} {'usable' if b.usable else 'NOT usable'}: {b.detail}")
    write_result(
        args.json,
        {
            "version": __version__,
            "python": platform.python_version(),
            "packages": versions,
            "backends": {b.name: {"usable": b.usable, "detail": b.detail} for b in backends},
        },
    )
    return 0
