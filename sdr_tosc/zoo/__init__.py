"""Shipped artefacts: the default student, its baselines and the default teacher cache (see README.md here).

Paths are returned whether or not the file exists; callers check and say what to run when it is missing.
"""

from __future__ import annotations

from pathlib import Path

ZOO = Path(__file__).resolve().parent

#: The default student: adaptive, distilled from the default cache (``sdr-tosc train``; command in README.md).
DEFAULT_STUDENT = "student-fmnist-default.safetensors"
#: Baselines drawn by ``sdr-tosc evaluate``.
BASELINE_FILES = {
    "fixed_snr": "student-fmnist-fixed10db.safetensors",  # no channel-adaptive module, trained at 10 dB
    "no_kd": "student-fmnist-nokd.safetensors",  # adaptive, labels only (no teacher cache)
}
DEFAULT_CACHE = "cache/fashion-mnist-effnetlite0"


def default_student_path() -> Path:
    """The shipped default student checkpoint (safetensors, config inside)."""
    return ZOO / DEFAULT_STUDENT


def baseline_path(name: str) -> Path:
    """A shipped baseline checkpoint: ``fixed_snr`` or ``no_kd``."""
    if name not in BASELINE_FILES:
        raise ValueError(f"unknown baseline {name!r}: use one of {', '.join(BASELINE_FILES)}")
    return ZOO / BASELINE_FILES[name]


def default_cache_path() -> Path:
    """The shipped default teacher cache folder (the first cache under zoo/cache if the default name is absent)."""
    preferred = ZOO / DEFAULT_CACHE
    if (preferred / "manifest.json").exists():
        return preferred
    found = sorted(p.parent for p in (ZOO / "cache").glob("*/manifest.json"))
    return found[0] if found else preferred


def teacher_record() -> tuple[dict, Path] | tuple[None, None]:
    """The shipped teacher's JSON record (test accuracy, parameters ...) and its path, or ``(None, None)``."""
    import json

    for f in sorted(ZOO.glob("teacher-*.json")):
        try:
            return json.loads(f.read_text()), f
        except (OSError, ValueError):
            continue
    return None, None


def teacher_accuracy(record: dict | None) -> float | None:
    """Test accuracy from a teacher record (the key has been spelt three ways)."""
    for key in ("test_acc", "test_accuracy", "accuracy"):
        if record and isinstance(record.get(key), (int, float)):
            return float(record[key])
    return None


def require(path: Path, what: str, how: str) -> Path:
    """``path`` if it exists, else FileNotFoundError naming ``what`` and the command that makes it."""
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; make it with: {how}")
    return path
