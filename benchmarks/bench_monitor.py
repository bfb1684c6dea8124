"""Benchmark: does the live monitor keep up with the link, and what does it cost the link?

Prints one JSON object:

* ``link``: the loopback link (channel simulator process, zmq radios, feedback) run alternately without and
  with events published to a ``sdr-tosc monitor`` process; ``slowdown_pct`` compares the medians of the
  images/s of the two (same process, same images), ``cpu_overhead_pct`` the link process's CPU time per
  image (steadier than wall time on a shared machine). Target: <= 5 %.
* ``monitor_ingest``: frame events per second a monitor process takes in (events published as fast as the
  publisher's budget allows; counted by the monitor's own ``/api/state``). Target: >= 300/s with margin.
* ``snapshot``: time to build the page's snapshot with a full history (100 000 frames) and its size.

Usage: ``python benchmarks/bench_monitor.py [--images 1000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request

import numpy as np


def _state(url: str) -> dict:
    return json.loads(urllib.request.urlopen(url + "api/state", timeout=10).read())


def bench_link(images: int, repeats: int) -> dict:
    from sdr_tosc.link import LinkConfig
    from sdr_tosc.link.events import EventPublisher, LinkEvents
    from sdr_tosc.link.loopback import open_loopback
    from sdr_tosc.link.session import run_link
    from sdr_tosc.monitor import MonitorProcess
    from sdr_tosc.semantic.datasets import load_dataset
    from sdr_tosc.semantic.student import load_checkpoint
    from sdr_tosc.zoo import default_student_path

    student = load_checkpoint(default_student_path())
    data = load_dataset("fashion-mnist", "test").subset(np.arange(images))
    rates: dict[str, list[float]] = {"plain": [], "monitored": []}
    cpu: dict[str, list[float]] = {"plain": [], "monitored": []}
    dropped = 0
    with EventPublisher() as pub, MonitorProcess(pub.endpoint) as mon:
        assert pub.wait_subscriber(10.0)
        with open_loopback(student, LinkConfig(), snr_db=10.0, cfo_hz=2000.0, seed=1) as lb:
            run_link(lb.tx, lb.rx, data.images[:128], data.labels[:128], progress=False)  # warm up
            for _ in range(repeats):
                for mode in ("plain", "monitored"):
                    if mode == "monitored":
                        LinkEvents(pub, source="bench", labels=data.labels, images=data.images,
                                        sample_rate_hz=lb.tx.modem.config.sample_rate_hz,
                                        channel_control=lb.channel.control_endpoint).attach(lb.tx, lb.rx)
                    else:
                        lb.tx.events = lb.rx.events = None
                    c0 = time.process_time()
                    rep = run_link(lb.tx, lb.rx, data.images, data.labels, progress=False)
                    cpu[mode].append(1e3 * (time.process_time() - c0) / images)
                    rates[mode].append(round(rep.images_per_s, 1))
            lb.tx.events = lb.rx.events = None
        time.sleep(1.0)
        seen = _state(mon.url)["frames"]
        dropped = pub.dropped
    plain, monitored = statistics.median(rates["plain"]), statistics.median(rates["monitored"])
    return {"images_per_run": images, "repeats": repeats, "images_per_s_plain": rates["plain"],
            "images_per_s_monitored": rates["monitored"], "median_plain": round(plain, 1),
            "median_monitored": round(monitored, 1), "slowdown_pct": round(100 * (1 - monitored / plain), 2),
            "link_cpu_ms_per_image_plain": round(statistics.median(cpu["plain"]), 3),
            "link_cpu_ms_per_image_monitored": round(statistics.median(cpu["monitored"]), 3),
            "cpu_overhead_pct": round(100 * (statistics.median(cpu["monitored"]) / statistics.median(cpu["plain"]) - 1), 2),
            "frames_seen_by_monitor": seen, "events_dropped": dropped}


def bench_ingest(n: int) -> dict:
    from sdr_tosc.link.events import EventPublisher
    from sdr_tosc.monitor import MonitorProcess

    msg = {"k": "frame", "seq": 0, "index": 0, "pred": 3, "label": 3, "snr_db": 9.9, "snr_dec_db": 11.2,
           "snr_tx_db": 10.0, "cfo_hz": 2001.3, "n_symbols": 24, "items": 64, "t_stream": 0.1, "sent": 1,
           "lost": 0, "lat": {"encode": 3.1, "modulate": 0.4, "air": 40.0, "demodulate": 12.0, "decode": 2.0,
                              "end_to_end": 60.0}}
    with EventPublisher(max_rate=1e9) as pub, MonitorProcess(pub.endpoint) as mon:
        assert pub.wait_subscriber(10.0)
        t0 = time.perf_counter()
        for i in range(n):
            msg["seq"] = msg["index"] = i % 65536
            msg["sent"] = i + 1
            pub.publish(msg)
        t_pub = time.perf_counter() - t0
        while True:
            seen = _state(mon.url)["frames"]
            if seen + pub.dropped >= n or time.perf_counter() - t0 > 120:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    return {"events": n, "published_per_s": round(n / t_pub), "publish_us_per_event": round(1e6 * t_pub / n, 2),
            "taken_in": seen, "dropped_at_publisher": pub.dropped, "monitor_events_per_s": round(seen / wall)}


def bench_snapshot(history: int) -> dict:
    from sdr_tosc.monitor.state import MonitorState

    st = MonitorState(history)
    rng = np.random.default_rng(0)
    for i in range(history):
        st.ingest({"k": "frame", "pred": int(rng.integers(10)), "label": 3, "snr_db": float(rng.normal(10, 1)),
                   "n_symbols": 24, "t_stream": i * 1e-3, "sent": i + 1, "lost": 0,
                   "lat": {"decode": float(rng.random()), "end_to_end": 50.0}})
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        snap = st.snapshot()
        times.append(time.perf_counter() - t0)
    return {"history_frames": history, "snapshot_ms_median": round(1e3 * statistics.median(times), 2),
            "snapshot_json_kb": round(len(json.dumps(snap)) / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ingest-events", type=int, default=30000)
    a = ap.parse_args()
    out = {"snapshot": bench_snapshot(100_000), "monitor_ingest": bench_ingest(a.ingest_events),
           "link": bench_link(a.images, a.repeats)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
