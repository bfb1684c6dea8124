"""``sdr-tosc monitor``: a local web page showing a running link live."""

from __future__ import annotations

import argparse

HELP = "live web page of a running link (demo/rx/measure started with --events): accuracy, SNR, constellation, ..."
EXAMPLES = """
  sdr-tosc demo --monitor                               # starts the demo and its monitor; prints the URL
  sdr-tosc demo --images 5000 --events tcp://127.0.0.1:5610 &
  sdr-tosc monitor --connect tcp://127.0.0.1:5610       # then open http://127.0.0.1:8050/
  # a receiver on another host (CURVE with SDR_TOSC_CURVE_SECRET set on both ends):
  sdr-tosc monitor --connect tcp://RX-HOST:5610 --port 8050
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", action="append", required=True, metavar="ENDPOINT",
                   help="a link's --events endpoint to subscribe to (repeat for several)")
    p.add_argument("--host", default="127.0.0.1", help="address the page is served on (default %(default)s)")
    p.add_argument("--port", type=int, default=8050, help="port of the page (default %(default)s; 0: any free)")
    p.add_argument("--channel-control", metavar="ENDPOINT",
                   help="the channel simulator's control socket (default: the one the link announces)")
    p.add_argument("--history", type=int, default=100_000, help="frames kept (default %(default)s)")
    p.add_argument("--ready-line", action="store_true", help="print one JSON line with the URL when ready")


def run(args: argparse.Namespace) -> int:
    from ..monitor import serve

    if args.history < 1:
        raise ValueError(f"--history {args.history}: must be >= 1")
    serve(args.connect, host=args.host, port=args.port, channel_control=args.channel_control,
          history=args.history, ready_line=args.ready_line)
    return 0
