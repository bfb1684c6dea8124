"""Shared helpers for the tests that run radios in processes of their own (emulated Plutos, virtual USRPs)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: ``sdr-tosc`` through this Python (no console script needed)
CLI = [sys.executable, "-c", "import sys; from sdr_tosc.cli import main; sys.exit(main(sys.argv[1:]))"]


@contextlib.contextmanager
def emulated_plutos(info: Path, *args: str, stdout: int | None = subprocess.PIPE) -> Iterator[tuple[dict, subprocess.Popen]]:
    """``sdr-tosc emulate pluto ARGS --json INFO`` in its own process: yields (the --json document, the process)
    once the radios are served; stops it with SIGTERM and checks that it exited cleanly."""
    proc = subprocess.Popen([*CLI, "emulate", "pluto", *args, "--json", str(info)], stdout=stdout,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "emulate did not write its --json file"
            time.sleep(0.1)
        yield json.loads(info.read_text()), proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, proc.stderr.read()


def random_student(path: Path) -> Path:
    """A freshly initialised default student written to ``path`` (the link tests need a model, not a good one)."""
    from sdr_tosc.semantic.student import create_model, save_checkpoint

    save_checkpoint(create_model("fmnist-cnn"), path)
    return path


def free_endpoint() -> str:
    """A TCP endpoint on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def rx_process_then_tx(rx_args: list[str], tx_args: list[str], *, env: dict[str, str] | None = None,
                       ready_s: float = 120.0, rx_wait_s: float = 90.0, settle_s: float = 0.5) -> tuple[int, int, str]:
    """``sdr-tosc rx RX_ARGS`` in a process of its own; once it says it is waiting for bursts (its radio
    streams), ``sdr-tosc tx TX_ARGS`` in this process; then wait for the receiver to finish.

    Returns (tx exit code, rx exit code, the receiver's output: stdout and stderr together)."""
    import threading

    from sdr_tosc.cli import main

    rx = subprocess.Popen([*CLI, "rx", *rx_args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:  # read as it comes: the receiver says when its radio streams
        for line in rx.stdout:
            lines.append(line)
            if "waiting for" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    rc_tx = -1
    try:
        assert ready.wait(ready_s), "".join(lines)[-3000:]
        time.sleep(settle_s)
        rc_tx = main(["tx", *tx_args])
        rx.wait(rx_wait_s)
        reader.join(10)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(5)
    return rc_tx, rx.returncode, "".join(lines)
