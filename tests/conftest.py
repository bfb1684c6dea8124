"""Shared pytest set-up: offline Hugging Face, hardware/slow opt-in flags."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hardware",
        action="append",
        default=[],
        metavar="KIND",
        help="run hardware tests for a radio that is connected: pluto, usrp (repeatable)",
    )
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kinds = set(config.getoption("--hardware"))
    runslow = config.getoption("--runslow")
    for item in items:
        hw = item.get_closest_marker("hardware")
        if hw is not None:
            wanted = set(hw.args) or {"any"}
            if not (kinds & wanted or (kinds and "any" in wanted)):
                item.add_marker(pytest.mark.skip(reason=f"hardware test: run with --hardware {'/'.join(sorted(wanted))}"))
        if item.get_closest_marker("slow") is not None and not runslow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))
