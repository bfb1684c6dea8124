"""Long seeded fuzz run over real sockets: malformed messages into a running channel and feedback receiver.

Prints one JSON object. Per socket (``tx`` = the channel's sample input, ``control`` = its control socket,
``feedback`` = a transmitter's SNR-report socket): messages sent, messages the receiver refused (dropped and
counted, or answered with an error), the drop counts per kind, crashes (0: the channel process is alive), and
``silent_link_stop`` (false: after the garbage, real modem bursts sent through the same channel are all
found with a valid header). Also the channel process's RSS before and after (memory growth).

Every generated message breaks at least one documented limit (see docs/design.md, "Wire formats"), so
``refused`` must equal ``sent``. The CI fuzz tests (tests/test_fuzz_*.py) are the short version of this.

Usage: .venv/bin/python benchmarks/bench_fuzz.py [--messages 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdr_tosc.channel import ChannelSimulator  # noqa: E402
from sdr_tosc.channel.config import RUNTIME_FIELDS  # noqa: E402
from sdr_tosc.link.feedback import FeedbackReceiver, FeedbackReport  # noqa: E402
from sdr_tosc.radio import zmq as wire  # noqa: E402

HDR = struct.Struct("<4sHHQQddfI")


def bad_tx(rng: np.random.Generator) -> bytes:
    """One framed TX message that breaks at least one limit of the wire format."""
    n = int(rng.integers(1, 512))
    iq = (0.3 * (rng.standard_normal(n) + 1j * rng.standard_normal(n))).astype(np.complex64)
    f = {"magic": b"SDRQ", "version": 1, "flags": 1, "seq": int(rng.integers(0, 1 << 32)), "ts": 0,
         "fs": 1e6, "fc": 2.4e9, "gain": 0.0, "count": n}
    kind = rng.integers(0, 12)
    if kind == 0:
        f["magic"] = bytes(rng.integers(0, 256, 4, dtype=np.uint8))
        if f["magic"] == b"SDRQ":
            f["magic"] = b"SDRX"
    elif kind == 1:
        f["version"] = [0, 2, 255, 65535][int(rng.integers(0, 4))]
    elif kind == 2:
        f["flags"] = int(rng.integers(16, 65536))
    elif kind == 3:
        f["seq"] = (1 << 63) + int(rng.integers(0, 1 << 62))
    elif kind == 4:
        f["flags"] |= wire.FLAG_TIMED
        f["ts"] = [1 << 40, 1 << 62, (1 << 63) + 5, (1 << 64) - 1][int(rng.integers(0, 4))]
    elif kind == 5:
        f["fs"] = [math.nan, math.inf, -1.0, 1e300, -math.inf][int(rng.integers(0, 5))]
    elif kind == 6:
        f["fc"] = [math.nan, -5.0, 1e20, math.inf][int(rng.integers(0, 4))]
    elif kind == 7:
        f["gain"] = [math.nan, math.inf, 3e38, -3e38, 1e3, -1e3][int(rng.integers(0, 6))]
    elif kind == 8:
        f["count"] = [n + 1, n - 1 if n > 1 else n + 2, 1 << 31, (1 << 32) - 1][int(rng.integers(0, 4))]
    elif kind == 9:
        k = int(rng.integers(1, n + 1))
        idx = rng.choice(n, size=k, replace=False)
        iq.view(np.float32)[2 * idx + int(rng.integers(0, 2))] = rng.choice([np.nan, np.inf, -np.inf, 1e30, 2e6])
    elif kind == 10:
        msg = HDR.pack(f["magic"], 1, 1, 0, 0, 1e6, 2.4e9, 0.0, n) + iq.tobytes()
        return msg[: int(rng.integers(0, len(msg)))]  # truncated (header or payload)
    else:
        blob = bytes(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8))
        return b"XXXX" + blob if blob[:4] != b"SDRQ" else b"X" + blob
    return HDR.pack(f["magic"], f["version"], f["flags"], f["seq"], f["ts"], f["fs"], f["fc"], f["gain"],
                    f["count"]) + iq.tobytes()


BAD_VALUES = [math.nan, math.inf, -math.inf, 1e300, -1e300, "text", [1, 2], {"a": 1}, True, [[1e308, 1e308]]]


def bad_control(rng: np.random.Generator) -> list[bytes]:
    """One control request (frames) the channel must answer with an error."""
    kind = rng.integers(0, 7)
    if kind == 0:
        field = RUNTIME_FIELDS[int(rng.integers(0, len(RUNTIME_FIELDS)))]
        values = [v for v in BAD_VALUES if field != "taps" or v not in ([1, 2],)]  # [1, 2] is a valid tap list
        return [json.dumps({"cmd": "set", field: values[int(rng.integers(0, len(values)))]}).encode()]
    if kind == 1:
        return [json.dumps({"cmd": "truth", ("since", "max")[int(rng.integers(0, 2))]:
                            [-1, 1e999, 2 ** 70, "x", 0.5, -1e9][int(rng.integers(0, 6))]}).encode()]
    if kind == 2:
        return [json.dumps({"cmd": str(rng.choice(["launch", "", "SET", "eval", "__import__"]))}).encode()]
    if kind == 3:
        return [json.dumps({"cmd": BAD_VALUES[int(rng.integers(0, len(BAD_VALUES)))]}).encode()]
    if kind == 4:
        good = json.dumps({"cmd": "set", "snr_db": 5}).encode()
        return [good[: int(rng.integers(0, len(good) - 1))]]  # truncated JSON
    if kind == 5:
        return [b'{"cmd":"ping"}', b'{"cmd":"ping"}']  # two frames
    return [b"\xff" + bytes(rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8))]


def bad_feedback(rng: np.random.Generator) -> bytes:
    rep = {"v": 1, "seq": int(rng.integers(0, 1000)), "snr_db": 10.0, "cfo_hz": 0.0, "t": time.time()}
    kind = rng.integers(0, 6)
    if kind == 0:
        rep["seq"] = [1e999, -1, 2 ** 64, "1", 0.5][int(rng.integers(0, 5))]
    elif kind == 1:
        rep["snr_db"] = [1e308, -1e308, math.nan, math.inf, 101.0, -51.0, "7"][int(rng.integers(0, 7))]
    elif kind == 2:
        rep["v"] = [2, 0, True, "1", None][int(rng.integers(0, 5))]
    elif kind == 3:
        rep["cfo_hz"] = [math.nan, 1e300, "x"][int(rng.integers(0, 3))]
    elif kind == 4:
        del rep[str(rng.choice(["seq", "snr_db", "t"]))]
    else:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8)) + b"\xff"
    return json.dumps(rep, default=str).encode()


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def link_check(ch: ChannelSimulator, n_bursts: int, rng: np.random.Generator) -> dict:
    """Real modem bursts through the fuzzed channel: how many are found with a valid header."""
    from sdr_tosc.modem import FrameHeader, Modem, ModemConfig
    from sdr_tosc.radio import open_radio

    modem = Modem(ModemConfig())
    with open_radio("zmq", tx_endpoint=ch.in_endpoint, rx_endpoint=ch.out_endpoint, sample_rate_hz=1e6) as r:
        r.rx(4096)
        n_in = ch.stats()["samples_in"]
        total = 0
        for i in range(n_bursts):
            p = ((rng.standard_normal(64) + 1j * rng.standard_normal(64)) / np.sqrt(2)).astype(np.complex64)
            b = modem.modulate(p, FrameHeader(seq=i))
            r.tx(b)
            total += b.size
        ch.wait_received(n_in + total, timeout_s=20)
        gap = ch.get()["gap_samples"] + ch.get()["gap_jitter_samples"]
        y = r.rx(total + n_bursts * gap + 20_000)
    seqs = sorted({f.header.seq for f in modem.demodulate(y) if f.header_ok})
    return {"bursts_sent": n_bursts, "bursts_found": len(seqs)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=10_000, help="malformed messages per socket")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    out: dict = {"messages_per_socket": a.messages, "seed": a.seed}
    ctx = zmq.Context.instance()
    with ChannelSimulator(snr_db=20.0, seed=a.seed) as ch:
        rss0 = rss_kib(ch.pid)
        cfg0 = ch.get()
        # -- TX socket
        t0 = time.perf_counter()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 5000)
        push.connect(ch.in_endpoint)
        bad0 = ch.stats()["bad_messages"]
        in0 = ch.stats()["samples_in"]
        for _ in range(a.messages):
            push.send(bad_tx(rng))
        push.close()
        deadline = time.monotonic() + 120
        while ch.stats()["bad_messages"] < bad0 + a.messages and time.monotonic() < deadline and ch.running:
            time.sleep(0.1)
        st = ch.stats()
        rss_tx = rss_kib(ch.pid)
        out["tx"] = {"sent": a.messages, "refused": st["bad_messages"] - bad0, "drops": st["drops"],
                     "samples_placed": st["samples_in"] - in0, "crashed": not ch.running,
                     "seconds": round(time.perf_counter() - t0, 2)}
        # -- control socket
        t0 = time.perf_counter()
        refused = no_reply = 0
        req = None
        for _ in range(a.messages):
            if req is None:
                req = ctx.socket(zmq.REQ)
                req.setsockopt(zmq.LINGER, 0)
                req.setsockopt(zmq.RCVTIMEO, 5000)
                req.connect(ch.control_endpoint)
            req.send_multipart(bad_control(rng))
            try:
                refused += json.loads(req.recv()).get("ok") is False
            except zmq.Again:
                no_reply += 1
                req.close(0)
                req = None
        if req is not None:
            req.close(0)
        cfg = ch.get()
        rss_ctl = rss_kib(ch.pid)
        out["control"] = {"sent": a.messages, "refused": refused, "no_reply": no_reply, "crashed": not ch.running,
                          "config_unchanged": cfg == cfg0,
                          "seconds": round(time.perf_counter() - t0, 2)}
        # -- the link still passes frames through the same channel
        out["link_after_fuzz"] = link_check(ch, 20, rng)
        out["tx"]["silent_link_stop"] = out["control"]["silent_link_stop"] = (
            out["link_after_fuzz"]["bursts_found"] < out["link_after_fuzz"]["bursts_sent"])
        out["channel_rss_kib"] = {"start": rss0, "after_tx_fuzz": rss_tx, "after_control_fuzz": rss_ctl,
                                  "after_link_check": rss_kib(ch.pid)}
    # -- feedback socket
    t0 = time.perf_counter()
    with FeedbackReceiver("tcp://127.0.0.1:0", initial_snr_db=7.0) as fb:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 5000)
        push.connect(fb.endpoint)
        for _ in range(a.messages):
            push.send(bad_feedback(rng))
        push.send(FeedbackReport(1, 12.5, 0.0, time.time()).to_bytes())
        push.close()
        deadline = time.monotonic() + 60
        while fb.received < 1 and time.monotonic() < deadline:
            fb.poll(100)
        out["feedback"] = {"sent": a.messages, "refused": fb.malformed, "drops": dict(fb.drops.counts),
                           "good_report_used": fb.received == 1 and abs(fb.snr_db() - 12.5) < 1e-9,
                           "seconds": round(time.perf_counter() - t0, 2)}
    out["ok"] = (out["tx"]["refused"] == a.messages and out["tx"]["samples_placed"] == 0
                 and not out["tx"]["crashed"] and out["control"]["refused"] == a.messages
                 and not out["control"]["crashed"] and out["control"]["config_unchanged"]
                 and not out["tx"]["silent_link_stop"] and out["feedback"]["refused"] == a.messages
                 and out["feedback"]["good_report_used"])
    out["python"] = sys.version.split()[0]
    out["pid"] = os.getpid()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
