"""Throughput of the radio path on loopback; prints one JSON object.

TX radio -> channel simulator process (AWGN + CFO + multipath) -> RX radio, in framed and raw modes, as
complex samples per second delivered to the receiver while the transmitter keeps the channel fed (one
continuous burst). Also whether two emulated Plutos (``sdr-tosc emulate pluto --count 2``) keep real time at
1 and 4 Msps with a continuous transmission read through pyadi-iio/libiio (``--only-pluto`` runs just that).

    python benchmarks/bench_radio.py [--seconds 5] [--sample-rate-hz 30.72e6] [--chunk 65536]

Targets: >= 20 Msps (3x what a Pluto sustains over USB 2), goal >= 61.44 Msps. Wall-clock Msps depends on
what else runs on the machine; ``cpu_ns_per_sample`` (CPU time of each process over samples delivered) is
the load-independent figure to compare changes with. ``summary`` gathers the headline numbers.

``--chunk`` is the TX message size and the RX request size in samples. Keep it well under 2**18: with
2 MiB messages libzmq's receive buffers land on fresh pages every time (the channel's I/O thread then
spends most of its time zeroing pages: ~25-40 ns/sample instead of ~5-9 at 2**16).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from sdr_tosc.channel import ChannelSimulator
from sdr_tosc.radio import open_radio


def _feed(endpoint: str, mode: str, fs: float, chunk: int, stop) -> None:
    """The TX radio, in its own process: one endless burst of a random-phase signal."""
    x = (0.3 * np.exp(2j * np.pi * np.random.default_rng(0).random(chunk))).astype(np.complex64)
    try:
        with open_radio("zmq", tx_endpoint=endpoint, sample_rate_hz=fs, mode=mode, chunk_samples=chunk,
                        timeout_s=10.0) as tx:
            first = True
            while not stop.is_set():
                tx.tx(x, start_of_burst=first, end_of_burst=False)
                first = False
    except (TimeoutError, RuntimeError):
        if not stop.is_set():
            raise


def bench_channel(mode: str, seconds: float, fs: float, chunk: int, multipath: str) -> dict:
    import multiprocessing as mp

    raw = mode == "raw"
    settings = dict(snr_db=20.0, cfo_hz=1000.0, multipath=multipath, sample_rate_hz=fs, seed=1)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    with ChannelSimulator(raw=raw, **settings) as ch:
        kw = dict(sample_rate_hz=fs, mode=mode, chunk_samples=chunk, timeout_s=10.0)
        feeder = ctx.Process(target=_feed, args=(ch.in_endpoint, mode, fs, chunk, stop), daemon=True)
        feeder.start()
        with open_radio("zmq", rx_endpoint=ch.out_endpoint, max_outstanding=4, **kw) as rx:
            ch.wait_received(4 * chunk, timeout_s=60)
            rx.rx(4 * chunk)  # warm-up
            n = 0
            c0, f0, s0 = _proc_cpu_s(ch.pid), _proc_cpu_s(feeder.pid), _self_cpu_s()
            th0 = _thread_cpu_s(ch.pid)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                n += rx.rx(4 * chunk).size
            dt = time.perf_counter() - t0
            c1, f1, s1 = _proc_cpu_s(ch.pid), _proc_cpu_s(feeder.pid), _self_cpu_s()
            th1 = _thread_cpu_s(ch.pid)
            stop.set()
            stats = ch.stats()
            rx.rx(8 * chunk)  # unblock the feeder if it waits on a full pipe, then let it finish
        feeder.join(timeout=15)
        if feeder.is_alive():
            feeder.terminate()
    return {"msps": n / dt / 1e6, "samples": n, "seconds": dt,
            "cpu_ns_per_sample": {"channel_process": (c1 - c0) / n * 1e9, "tx_radio_process": (f1 - f0) / n * 1e9,
                                  "rx_radio": (s1 - s0) / n * 1e9},
            "channel_threads_cpu_ns_per_sample": {k: round((th1[k] - th0.get(k, 0.0)) / n * 1e9, 1) for k in th1},
            "channel_stats": {k: stats[k] for k in ("samples_in", "samples_out", "underflows") if k in stats}}


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc), 0.0 where unavailable."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread group of a process: its main thread, libzmq I/O threads, other threads
    (the noise prefetch thread and pyzmq's garbage collector)."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        name = stat.split("(", 1)[1].rsplit(")", 1)[0]
        fields = stat.rsplit(")", 1)[1].split()
        key = "main" if int(tid) == pid else ("zmq_io" if name.startswith("ZMQbg/IO") else "other")
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def bench_channel_core(fs: float, chunk: int, multipath: str, seconds: float = 2.0) -> dict:
    """The simulator's engine alone, in this process, one thread: push + read, no sockets."""
    from sdr_tosc.channel.config import ChannelConfig
    from sdr_tosc.channel.core import ChannelCore

    core = ChannelCore(ChannelConfig(snr_db=20.0, cfo_hz=1000.0, multipath=multipath, sample_rate_hz=fs, seed=1))
    x = (0.3 * np.exp(2j * np.pi * np.random.default_rng(0).random(chunk))).astype(np.complex64)
    n, first = 0, True
    c0, t0 = _self_cpu_s(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        core.push(x, start_of_burst=first)
        first = False
        n += core.read(chunk)[0].size
    dt, cpu = time.perf_counter() - t0, _self_cpu_s() - c0
    core.close()
    return {"msps": n / dt / 1e6, "cpu_ns_per_sample": cpu / n * 1e9}


KERNEL_BUFFERS = 8


def bench_pluto_emulator(seconds: float, sample_rate_hz: float) -> dict | None:
    """Do two emulated Plutos keep real time? ``sdr-tosc emulate pluto --count 2 --ppm -18,11`` in its own
    process; here radio 0 transmits a continuous (cyclic) tone and radio 1 is read through pyadi-iio/libiio
    (buffers of 32768 samples, ``KERNEL_BUFFERS`` of them: 65 ms at 4 Msps, so a reader descheduled by
    other jobs on a shared 2-core host does not overflow on its own account) for ``seconds``. Real time: every sample of the
    receiver's clock delivered (rate within 0.5 % of the sample rate) and no overflow. Reports the
    emulator process's CPU load and its clock thread's worst lag behind wall time."""
    try:
        import adi  # noqa: F401
    except (ImportError, OSError):
        return None
    import re
    import signal
    import subprocess
    import sys
    import tempfile

    info = os.path.join(tempfile.mkdtemp(prefix="bench-emu-"), "plutos.json")
    cmd = [sys.executable, "-c", "import sys; from sdr_tosc.cli import main; sys.exit(main(sys.argv[1:]))",
           "emulate", "pluto", "--count", "2", "--ppm", "-18,11", "--json", info]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 60
        while not os.path.exists(info) and time.monotonic() < t_end and proc.poll() is None:
            time.sleep(0.05)
        uris = json.load(open(info))["uris"]
        with open_radio("pluto", uri=uris[0], sample_rate_hz=sample_rate_hz, tx_gain_db=-20.0, tx_cyclic=True) as tx, \
                open_radio("pluto", uri=uris[1], sample_rate_hz=sample_rate_hz, rx_gain_db=40.0,
                           kernel_buffers=KERNEL_BUFFERS) as rx:
            tx.tx((0.5 * np.exp(2j * np.pi * np.arange(1 << 14) / 16)).astype(np.complex64))
            rx.rx(1 << 18)  # warm-up
            before = rx.counters
            n = 0
            kids = _children(proc.pid)  # the channel simulator process
            c0, s0, k0 = _proc_cpu_s(proc.pid), _self_cpu_s(), sum(_proc_cpu_s(k) for k in kids)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                n += rx.rx(1 << 15).size
            dt = time.perf_counter() - t0
            c1, s1, k1 = _proc_cpu_s(proc.pid), _self_cpu_s(), sum(_proc_cpu_s(k) for k in kids)
            overflows = rx.counters.overflows - before.overflows
            tx.stop_tx()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    m = re.search(r"clock busy (\d+) %, worst lag ([0-9.]+) ms", err or "")
    rate = n / dt
    done = rate / sample_rate_hz  # > 1 when a backlog in the kernel queue was read during the window
    cpu = {"emulator": (c1 - c0) / dt, "channel": (k1 - k0) / dt, "client": (s1 - s0) / dt}
    return {"sample_rate_hz": sample_rate_hz, "kernel_buffers": KERNEL_BUFFERS, "delivered_sps": rate, "delivered_over_nominal": done,
            "overflows": overflows, "seconds": dt,
            "cpu_fraction": cpu,
            # CPU (in cores) that one second of air at this rate costs, whatever the machine's load
            "cores_per_realtime_second": {k: v / max(min(done, 1.0), 1e-9) for k, v in cpu.items()},
            "emulator_clock_busy_pct": int(m.group(1)) if m else None,
            "emulator_worst_lag_ms": float(m.group(2)) if m else None,
            "real_time": overflows == 0 and done >= 0.995}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        return []


def main() -> None:
    # the same glibc allocator tuning ChannelSimulator gives the channel process, for the TX process too
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 << 20))
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 30))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sample-rate-hz", type=float, default=30.72e6)
    p.add_argument("--chunk", type=int, default=1 << 16)
    p.add_argument("--multipath", default="epa")
    p.add_argument("--pluto-seconds", type=float, default=5.0, help="per rate in the emulated-Pluto real-time check")
    p.add_argument("--only-pluto", action="store_true", help="run only the emulated-Pluto real-time check")
    args = p.parse_args()
    if args.only_pluto:
        runs = [bench_pluto_emulator(args.pluto_seconds, fs) for fs in (1e6, 4e6)]
        print(json.dumps({"benchmark": "emulated_pluto_realtime", "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
            "pluto_emulator_realtime": runs,
            "summary": {f"{r['sample_rate_hz'] / 1e6:g} Msps": {
                "real_time": r["real_time"],
                "cores_per_realtime_second": {k: round(v, 2) for k, v in r["cores_per_realtime_second"].items()}}
                for r in runs if r}}, indent=2))
        return
    out = {
        "benchmark": "radio_loopback_throughput",
        "path": "TX radio -> channel process (AWGN + CFO + multipath) -> RX radio, tcp loopback",
        "settings": {"snr_db": 20.0, "cfo_hz": 1000.0, "multipath": args.multipath,
                     "sample_rate_hz": args.sample_rate_hz, "chunk_samples": args.chunk, "seconds": args.seconds},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg_1m": os.getloadavg()[0]},
        "target_msps": 20.0,
        "goal_msps": 61.44,
    }
    for mode in ("framed", "raw"):
        out[mode] = bench_channel(mode, args.seconds, args.sample_rate_hz, args.chunk, args.multipath)
    out["channel_engine_only"] = bench_channel_core(args.sample_rate_hz, args.chunk, args.multipath)
    out["pluto_emulator_realtime"] = [bench_pluto_emulator(args.pluto_seconds, fs) for fs in (1e6, 4e6)]
    out["meets_target"] = min(out["framed"]["msps"], out["raw"]["msps"]) >= out["target_msps"]
    out["meets_goal"] = min(out["framed"]["msps"], out["raw"]["msps"]) >= out["goal_msps"]
    out["summary"] = {
        "impairments": f"AWGN snr_db=20 + CFO 1000 Hz + multipath {args.multipath} (static taps)",
        "msps_through_process": {m: round(out[m]["msps"], 2) for m in ("framed", "raw")},
        "msps_engine_only_one_thread": round(out["channel_engine_only"]["msps"], 2),
        "cpu_ns_per_sample": {m: {k: round(v, 1) for k, v in out[m]["cpu_ns_per_sample"].items()}
                              for m in ("framed", "raw")},
        "cpu_ns_per_sample_engine_only": round(out["channel_engine_only"]["cpu_ns_per_sample"], 1),
        "channel_threads_cpu_ns_per_sample": {m: out[m]["channel_threads_cpu_ns_per_sample"]
                                              for m in ("framed", "raw")},
        "target_msps": out["target_msps"], "goal_msps": out["goal_msps"],
        "meets_target": out["meets_target"], "meets_goal": out["meets_goal"],
        "load_avg_1m": out["machine"]["load_avg_1m"],
        "emulated_plutos_real_time": {f"{r['sample_rate_hz'] / 1e6:g} Msps": r["real_time"]
                                      for r in out["pluto_emulator_realtime"] if r},
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
