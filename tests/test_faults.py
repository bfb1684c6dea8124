"""Process faults: the channel simulator never outlives the process that spawned it (issue 13).

Real processes, real signals: a parent spawns the simulator, the parent is killed (SIGTERM, SIGKILL,
SIGINT), the simulator must be gone within a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

ROOT = Path(__file__).resolve().parents[1]

PARENT = textwrap.dedent("""
    import json, sys, time
    from sdr_tosc.channel import ChannelSimulator
    ch = ChannelSimulator(snr_db=10).start()
    print(json.dumps({"child": ch.pid}), flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours is dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _spawn(code_or_cmd, ready_key: str) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-c", code_or_cmd] if isinstance(code_or_cmd, str) else code_or_cmd
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SDR_TOSC_PARENT_PID", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    return proc, int(json.loads(line)[ready_key])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_simulator_dies_with_its_parent(sig):
    proc, child = _spawn(PARENT, "child")
    try:
        assert _alive(child)
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert _wait_gone(child), f"channel simulator {child} outlived its parent after {sig.name}"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def _channel_children(pid: int) -> list[int]:
    """Pids of ``python -m sdr_tosc.channel`` processes whose parent is ``pid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.split(")")[-1].split()[1]) == pid and b"sdr_tosc.channel" in cmd:
            out.append(int(d.name))
    return out


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the child")
@pytest.mark.parametrize("verb,sig", [("demo", signal.SIGKILL), ("demo", signal.SIGTERM), ("demo", signal.SIGINT),
                                      ("measure", signal.SIGTERM), ("measure", signal.SIGKILL),
                                      ("calibrate", signal.SIGTERM), ("calibrate", signal.SIGKILL)])
def test_cli_verbs_leave_no_channel_behind(verb, sig, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("SDR_TOSC_PARENT_PID", None)
    args = {"demo": ["--images", "10000", "--no-progress"],
            "measure": ["--images", "10000", "--sweep-snr-db", "10:10:1", "--no-progress"],
            "calibrate": ["--frames", "5000", "--out", str(tmp_path / "cal.json")]}[verb]
    main = "import sys; from sdr_tosc.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", main, verb, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        kids: list[int] = []
        while not kids and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            kids = _channel_children(proc.pid)
        if not kids:
            pytest.skip(f"{verb} exited or never started a channel ({proc.poll()})")
        time.sleep(0.5)
        proc.send_signal(sig)
        proc.wait(timeout=20)
        for k in kids:
            assert _wait_gone(k), f"{verb} killed by {sig.name} left channel {k} running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
