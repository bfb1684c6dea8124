"""``sdr-tosc channel``: run the ZMQ channel simulator (the air between a TX and an RX radio) in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .common import add_config_flag, add_json_flag, write_result

HELP = "run the ZMQ channel simulator between a TX and an RX radio (AWGN, CFO, multipath, fading ...)"
EXAMPLES = """
  sdr-tosc channel --in tcp://127.0.0.1:5555 --out tcp://127.0.0.1:5556 --snr-db 10 --cfo-hz 2000 --seed 1
  sdr-tosc channel --snr-db 15 --multipath eva --fading rayleigh --sample-rate-hz 7.68e6 --control tcp://127.0.0.1:5557
  sdr-tosc channel --raw --in tcp://127.0.0.1:5555 --out tcp://127.0.0.1:5556 --out-pattern push   # GNU Radio
  sdr-tosc channel --in tcp://127.0.0.1:0 --out tcp://127.0.0.1:0   # ephemeral ports, printed on stdout

  Radios connect with open_radio("zmq", tx_endpoint=IN, rx_endpoint=OUT, sample_rate_hz=...).
  The first stdout line is JSON with the bound endpoints; change settings while it runs through
  --control (JSON requests, see sdr_tosc/channel/server.py), e.g. from Python:
  ChannelControl("tcp://127.0.0.1:5557").set(snr_db=5).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sockets")
    g.add_argument("--in", dest="in_endpoint", default="tcp://127.0.0.1:5555", metavar="ENDPOINT",
                   help="where TX radios send samples (PULL, bound; default %(default)s; port 0 = free port)")
    g.add_argument("--out", dest="out_endpoint", default="tcp://127.0.0.1:5556", metavar="ENDPOINT",
                   help="where RX radios read samples (ROUTER answering requests, bound; default %(default)s)")
    g.add_argument("--control", dest="control_endpoint", default="tcp://127.0.0.1:0", metavar="ENDPOINT",
                   help="JSON control socket (REP) to change settings while running (default: a free port)")
    g.add_argument("--raw", action="store_true", help="bare complex64 messages on both sides (GNU Radio gr-zeromq)")
    g.add_argument("--in-format", choices=("framed", "raw"), help="TX message format (default framed)")
    g.add_argument("--out-format", choices=("framed", "raw"), help="RX message format (default framed)")
    g.add_argument("--out-pattern", choices=("rep", "push"), default="rep",
                   help="rep: answer sample requests, noise between bursts (default); push: stream what arrives")
    g.add_argument("--in-connect", action="store_true",
                   help="connect --in instead of binding (to a peer that binds, e.g. gr-zeromq push_sink)")
    g.add_argument("--out-connect", action="store_true", help="connect --out instead of binding")
    g.add_argument("--nodes", type=int, default=0, metavar="N",
                   help="one air shared by N radios (link per TX/RX pair; used by 'sdr-tosc emulate')")
    g.add_argument("--duration-s", type=float, help="stop after this many seconds (default: until Ctrl-C/SIGTERM)")

    c = p.add_argument_group("channel (all seeded; see ChannelConfig in sdr_tosc/channel/config.py)")
    c.add_argument("--sample-rate-hz", type=float, help="sample rate for CFO, delays, profiles (default 1e6)")
    c.add_argument("--center-freq-hz", type=float, help="centre frequency reported to radios (default 2.4e9)")
    c.add_argument("--snr-db", type=float, help="SNR per burst at TX gain 0 dB (docs/design.md definition; default 20)")
    c.add_argument("--noise-dbfs", type=float, help="fixed noise floor instead of --snr-db (link-budget mode)")
    c.add_argument("--tx-gain-db", type=float, help="simulated TX gain added to the radio's (default 0)")
    c.add_argument("--path-loss-db", type=float, help="fixed path loss in dB (default 0)")
    c.add_argument("--distance-m", type=float, help="adds log-distance path loss 10 n log10(d / 1 m)")
    c.add_argument("--path-loss-exponent", type=float, help="n in the log-distance law (default 2, free space)")
    c.add_argument("--cfo-hz", type=float, help="carrier frequency offset in Hz")
    c.add_argument("--sco-ppm", type=float, help="sample-clock offset in ppm (receiver clock fast if > 0)")
    c.add_argument("--delay-samples", type=float, help="propagation delay, integer + fractional samples")
    c.add_argument("--multipath", help="flat, two_ray, epa, eva, etu or custom (with --taps)")
    c.add_argument("--taps", help="custom sample-spaced taps, e.g. '1,0.5+0.3j,0.1j' (normalised to energy 1)")
    c.add_argument("--fading", choices=("none", "rayleigh", "rician"), help="block fading, redrawn per burst")
    c.add_argument("--rician-k-db", type=float, help="Rician K-factor of the first tap (default 6 dB)")
    c.add_argument("--iq-imbalance-db", type=float, help="receiver IQ gain imbalance in dB")
    c.add_argument("--iq-imbalance-deg", type=float, help="receiver IQ phase imbalance in degrees")
    c.add_argument("--dc-offset", metavar="I,Q", help="receiver DC offset, full-scale units, e.g. 0.01,-0.02")
    c.add_argument("--phase-noise-hz", type=float, help="oscillator linewidth in Hz (Wiener phase noise)")
    c.add_argument("--burst-drop-prob", type=float, help="probability that a burst is lost entirely")
    c.add_argument("--gap-samples", type=int, help="idle samples before each burst (default 1000)")
    c.add_argument("--gap-jitter-samples", type=int, help="plus a random 0..N extra (default 1000)")
    c.add_argument("--seed", type=int, help="random seed (default 0)")
    add_config_flag(p)
    add_json_flag(p)


def config_from_args(args: argparse.Namespace):
    """Build a ChannelConfig: defaults < --config TOML ([channel] table) < flags."""
    from ..channel.config import ChannelConfig, parse_taps
    from ..config import load_config

    names = [f.name for f in dataclasses.fields(ChannelConfig) if f.name not in ("taps",)]
    overrides = {n: getattr(args, n, None) for n in names}
    cfg = load_config(ChannelConfig, getattr(args, "config", None), overrides, section="channel")
    changes = {}
    if args.taps:
        changes["taps"] = tuple(parse_taps(args.taps))
        changes["multipath"] = "custom"
    if args.noise_dbfs is not None and args.snr_db is None:
        changes["snr_db"] = None
    if args.dc_offset:
        try:
            i, q = (float(v) for v in args.dc_offset.split(","))
        except ValueError:
            raise ValueError(f"--dc-offset {args.dc_offset!r}: give I,Q such as 0.01,-0.02") from None
        changes.update(dc_offset_i=i, dc_offset_q=q)
    return cfg.replace(**changes) if changes else cfg


def run(args: argparse.Namespace) -> int:
    from ..channel.server import run_server

    cfg = config_from_args(args)
    in_fmt = args.in_format or ("raw" if args.raw else "framed")
    out_fmt = args.out_format or ("raw" if args.raw else "framed")
    print(f"sdr-tosc channel: snr_db={cfg.snr_db} cfo_hz={cfg.cfo_hz:g} multipath={cfg.multipath} "
          f"fading={cfg.fading} fs={cfg.sample_rate_hz:g} seed={cfg.seed}; Ctrl-C to stop", file=sys.stderr)
    stats = run_server(cfg, args.in_endpoint, args.out_endpoint, args.control_endpoint or None,
                       in_format=in_fmt, out_format=out_fmt, out_pattern=args.out_pattern,
                       in_connect=args.in_connect, out_connect=args.out_connect, max_seconds=args.duration_s,
                       nodes=args.nodes)
    print(f"sdr-tosc channel: stopped after {stats['uptime_s']:.1f} s; {stats['bursts']} bursts, "
          f"{stats['samples_in']} samples in, {stats['samples_out']} out", file=sys.stderr)
    write_result(args.json, {"stats": stats}, cfg)
    return 0
