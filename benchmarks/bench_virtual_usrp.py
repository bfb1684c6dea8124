"""Does the virtual USRP keep real time? Prints one JSON object.

For each sample rate, one virtual USRP (``type=virtual``: the usrp backend's real code, the device's clock
thread, the channel simulator process) streams RX continuously for ``--seconds`` while the host reads it in
32768-sample pieces and the same device transmits bursts at a 50 % duty cycle. It keeps real time when the
host received every sample its clock produced (no overflow, nothing dropped). Also reported: the host
process's CPU time per second of stream (``cpu_s_per_s``, includes the reader thread and the device
thread; the channel simulator is a separate process) and how far the delivered samples lag the clock.

    python benchmarks/bench_virtual_usrp.py [--seconds 4] [--rates 1e6,4e6]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time

import numpy as np

from sdr_tosc.radio import open_radio


def run(fs: float, seconds: float) -> dict:
    burst = (0.3 * np.exp(2j * np.pi * 0.05 * np.arange(int(0.02 * fs)))).astype(np.complex64)
    with open_radio("usrp", args=f"type=virtual,link=bench{int(fs)}", sample_rate_hz=fs, tx_gain_db=60,
                    rx_gain_db=40) as r:
        r.rx(1000)
        stop = threading.Event()

        def transmit() -> None:
            while not stop.is_set():
                r.tx(burst)  # 20 ms on, then 20 ms off
                time.sleep(burst.size / fs)

        t = threading.Thread(target=transmit, daemon=True)
        t.start()
        c0, w0 = os.times(), time.monotonic()
        got = 0
        while time.monotonic() - w0 < seconds:
            got += r.rx(32768).size
        wall = time.monotonic() - w0
        c1 = os.times()
        stop.set()
        t.join(2)
        counters = r.counters
        lag_s = r.time_now_s() - (r._usrp.virtual_stats()["stream_commands"][0][2] + (counters.rx_samples
                                                                                       + counters.dropped_samples) / fs)
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "sample_rate_hz": fs, "seconds": round(wall, 3), "rx_msps": round(got / wall / 1e6, 3),
        "overflows": counters.overflows, "dropped_samples": counters.dropped_samples,
        "underflows": counters.underflows, "late_bursts": counters.late_bursts, "tx_bursts": counters.tx_bursts,
        "real_time": counters.overflows == 0 and counters.dropped_samples == 0,
        "cpu_s_per_s": round(cpu / wall, 3), "host_lag_s": round(lag_s, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--rates", default="1e6,4e6")
    args = p.parse_args()
    results = [run(float(fs), args.seconds) for fs in args.rates.split(",")]
    print(json.dumps({"benchmark": "virtual_usrp_real_time", "machine": {"cpus": os.cpu_count(),
                                                                          "python": platform.python_version()},
                      "results": results,
                      "summary": {f"{r['sample_rate_hz'] / 1e6:g}_msps_real_time": r["real_time"] for r in results}},
                     indent=2))


if __name__ == "__main__":
    main()
