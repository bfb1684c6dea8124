"""``sdr-tosc emulate pluto``: N emulated ADALM-Plutos (libiio network protocol) on one simulated air."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

HELP = "serve emulated radios (ADALM-Pluto over libiio's iiod protocol) linked through one channel simulator"
EXAMPLES = """
  sdr-tosc emulate pluto --count 2 --ppm -18,11 --json plutos.json     # two Plutos, 29 ppm apart
  sdr-tosc emulate pluto --count 2 --base-port 30431                   # ip:127.0.0.1:30431 and :30432
  iio_info -u ip:127.0.0.1:30431                                       # what libiio sees
  sdr-tosc demo --radio pluto --tx-uri ip:127.0.0.1:30431 --rx-uri ip:127.0.0.1:30432
  # a virtual USRP joins the same air as a guest node (its own ppm; sample rates must match, 1 Msps):
  sdr-tosc rx --radio usrp --uri type=virtual,air=plutos.json,ppm=5 --rx-gain-db 50 --images 16

  Each radio has its own crystal error (--ppm: CFO = ppm x LO, and the same sample-clock offset), TX LO
  leakage, DC offset, IQ imbalance, a 12-bit ADC that clips, the AD9363 driver's rules, and runs in real time
  (a client that reads too slowly loses samples and sees the overflow flag). The link budget: SNR = signal
  + TX attenuation - path loss - receiver noise (thermal with --noise-figure-db, plus the ADC's noise over
  the RX gain). Runs until Ctrl-C/SIGTERM.
  The channel's control socket (channel_control in --json) changes one link while it runs, e.g. from Python:
  ChannelControl(endpoint).set(link=[0, 1], path_loss_db=75)   (sdr_tosc.channel.process; links are [tx, rx])
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", choices=("pluto",), help="radio to emulate")
    p.add_argument("--count", type=int, default=1, help="number of radios (default %(default)s)")
    p.add_argument("--ppm", default=None, metavar="P1,P2,...",
                   help="crystal error of each radio in ppm, one per radio (default 0 for all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--path-loss-db", type=float, default=None,
                   help="path loss between different radios in dB (default 60)")
    g.add_argument("--snr-db", type=float, default=None,
                   help="instead of --path-loss-db: SNR of a full-scale signal sent at 0 dB TX attenuation "
                        "over the receiver's thermal noise at 1 Msps (path loss = 117.5 dB - SNR at NF 3.5)")
    p.add_argument("--isolation-db", type=float, default=40.0,
                   help="loss from a radio's TX port to its own RX port (default %(default)s)")
    p.add_argument("--noise-figure-db", type=float, default=3.5, help="receiver noise figure (default %(default)s)")
    p.add_argument("--guests", type=int, default=1,
                   help="guest nodes on the air after the Plutos, for virtual USRPs (--uri type=virtual,air=FILE"
                        "[,node=K] with FILE from --json; default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the radios' impairments and the noise")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s: loopback)")
    p.add_argument("--base-port", "--port", dest="base_port", type=int, default=0,
                   help="iiod port of the first radio, the next ones follow (default 0: free ports)")
    p.add_argument("--json", type=Path, metavar="PATH",
                   help='write {"uris": [...], "channel_control": "tcp://..."} here once all radios are ready')
    p.add_argument("--duration-s", type=float, default=None, help="stop after this many seconds")


def parse_ppm(text: str | None, count: int) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--ppm {text!r}: give one number per radio, comma-separated (e.g. -18,11)") from None
    if len(vals) != count:
        raise ValueError(f"--ppm {text!r} gives {len(vals)} value(s) for --count {count}: give one per radio")
    return vals


def run(args: argparse.Namespace) -> int:
    from ..fileio import atomic_write_json
    from ..radio.emulator import EmulatedPlutos, path_loss_for_snr

    if args.count < 1 or args.count > 16:
        raise ValueError(f"--count must be 1..16, got {args.count}")
    ppm = parse_ppm(args.ppm, args.count)
    if args.snr_db is not None:
        loss = path_loss_for_snr(args.snr_db, args.noise_figure_db)
    else:
        loss = 60.0 if args.path_loss_db is None else args.path_loss_db
    plutos = EmulatedPlutos(args.count, ppm=ppm, path_loss_db=loss, isolation_db=args.isolation_db,
                            seed=args.seed, host=args.host, base_port=args.base_port,
                            noise_figure_db=args.noise_figure_db, guests=args.guests)
    stop = threading.Event()
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (in-process tests)
            pass
    try:
        plutos.start()
        info = plutos.describe()
        if args.json is not None:
            atomic_write_json(args.json, info)
        for i, uri in enumerate(info["uris"]):
            print(f"pluto {i}: {uri}  ppm {plutos.ppm[i]:+g}  serial {info['serials'][i]}", file=sys.stderr)
        print(json.dumps({"ready": True, **info}), flush=True)
        print(f"channel control: {info['channel_control']}; path loss {loss:g} dB; Ctrl-C to stop", file=sys.stderr)
        deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
        while not stop.is_set() and plutos.error is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            stop.wait(1.0 if left is None else min(1.0, left))
    finally:
        plutos.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if plutos.error is not None:
        print(f"emulate: the radios' clock stopped: {plutos.error}", file=sys.stderr)
        return 1
    st = plutos.stats
    print(f"emulate: stopped after {st['wall_s']:.1f} s (clock busy {100 * st['busy_s'] / max(st['wall_s'], 1e-9):.0f} %, "
          f"worst lag {1e3 * st['max_lag_s']:.1f} ms, {st['resyncs']} link resyncs, {st['skipped_s']:.2f} s skipped)",
          file=sys.stderr)
    return 0
