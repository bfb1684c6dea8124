"""``sdr-tosc tx``: the transmitting end of a two-radio (or two-process) semantic link."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .common import add_json_flag, write_result
from .linkargs import (
    add_link_args,
    add_radio_args,
    add_student_args,
    link_config,
    load_images,
    load_student,
    modem_config,
    open_radio_from,
    parse_opts,
)
from .schemeargs import add_scheme_args, scheme_codecs

HELP = "transmit test images as semantic symbols through a radio, adapting to the receiver's SNR reports"
EXAMPLES = """
  # two Plutos on two hosts (start 'sdr-tosc rx' on the other host first):
  sdr-tosc tx --radio pluto --uri ip:192.168.2.1 --center-freq-hz 2.44e9 --tx-gain-db -10 \\
      --images 1000 --feedback-bind tcp://0.0.0.0:5600
  # two processes on one laptop, with 'sdr-tosc channel' running between them:
  sdr-tosc tx --radio zmq --uri tcp://127.0.0.1:5555 --images 200 --feedback-bind tcp://127.0.0.1:5600
  # semantic and both digital baselines taking turns over the same air (the receiver: 'sdr-tosc rx --scheme both'):
  sdr-tosc tx --radio zmq --uri tcp://127.0.0.1:5555 --images 200 --scheme both
  # through a GNU Radio flowgraph (flowgraphs/channel_model.grc, or a ZMQ<->Pluto/USRP bridge):
  sdr-tosc tx --radio zmq --gnuradio --uri tcp://127.0.0.1:5555 --images 200
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_student_args(p)
    add_radio_args(p, "tx")
    add_link_args(p)
    add_scheme_args(p)
    p.add_argument("--feedback-bind", default="tcp://127.0.0.1:5600", metavar="ENDPOINT",
                   help="where to listen for the receiver's SNR reports (default %(default)s; "
                        "tcp://0.0.0.0:5600 to accept them from another host)")
    p.add_argument("--repeat", type=int, default=1, help="send the images this many times (0 = until Ctrl-C)")
    p.add_argument("--pace", choices=("auto", "on", "off"), default="auto",
                   help="sleep for each batch's airtime after sending (auto: on for real radios)")
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    from ..link import FeedbackReceiver, SemanticTransmitter
    from ..link.session import airtime_samples
    from ..modem import Modem

    student = load_student(args)
    images, _labels, _ = load_images(args)
    hardware = args.radio != "zmq"
    # a GNU Radio peer passes samples on as they come (no channel simulator spacing bursts): gaps go on the air
    link = link_config(args, pack_bursts=hardware or args.gnuradio)
    modem = Modem(modem_config(args))
    pace = args.pace == "on" or (args.pace == "auto" and hardware)
    sent_total, t0 = 0, time.perf_counter()
    with open_radio_from(args.radio, args.uri, "tx", parse_opts(args.radio_opt, "--radio-opt"), args) as radio, \
            FeedbackReceiver(args.feedback_bind, bind=True, initial_snr_db=link.initial_snr_db,
                             alpha=link.feedback_alpha) as fb:
        tx = SemanticTransmitter(student, modem, radio, link, None if args.no_feedback else fb)
        txs = {"semantic": tx}
        if args.scheme != "semantic":
            from ..link.digital import build_schemes

            schemes, codecs, _dcfg = scheme_codecs(args, student, images.shape[1:])
            txs, _ = build_schemes(schemes, student, codecs, modem, radio, radio, link, _dcfg,
                                   None if args.no_feedback else fb, None)
            tx = next(iter(txs.values()))
        print(f"sdr-tosc tx: {radio!r}; feedback on {fb.endpoint}; {len(images)} images x "
              f"{args.repeat or 'inf'}", file=sys.stderr)
        if args.gnuradio:  # silence ahead of the first burst: the receiver's frame search starts in noise
            radio.tx(np.zeros(link.gap_samples, np.complex64))
        rounds = 0
        while args.repeat == 0 or rounds < args.repeat:
            for b0 in range(0, len(images), link.batch_size):
                for name, t in txs.items():  # several schemes: each batch once per scheme, back to back
                    sent = t.send(images[b0:b0 + link.batch_size], first_index=b0)
                    sent_total += len(sent)
                    if pace:
                        time.sleep(airtime_samples(sent, link.gap_samples) / radio.sample_rate_hz)
                    if args.verbose:
                        print(f"{name}: sent {t.sent} images ({t.bursts} bursts); SNR {sent[-1].snr_tx_db:.1f} dB, "
                              f"{sent[-1].n_symbols} symbols" + (f" {sent[-1].modulation}"
                                                                 if hasattr(sent[-1], "modulation") else ""),
                              file=sys.stderr)
            rounds += 1
        if args.gnuradio:
            # a flowgraph forwards only what it is given: silence after the last burst lets a receiver that
            # reads fixed-size chunks complete the chunk holding it. Closing the radio then waits up to
            # GNURADIO_TX_TIMEOUT_S for the flowgraph to take every queued message.
            radio.tx(np.zeros(link.rx_chunk_samples + link.gap_samples, np.complex64))
        counters = radio.counters.as_dict()
        settings = radio.settings()
        last_snr = tx.current_snr_db()
        reports = fb.received
    wall = time.perf_counter() - t0
    print(f"sent {sent_total} images in {sum(t.bursts for t in txs.values())} bursts in {wall:.1f} s; {reports} SNR reports received, last smoothed SNR "
          f"{last_snr:.1f} dB; underflows {counters['underflows']}")
    write_result(args.json, {"frames_sent": sent_total, "schemes": list(txs), "wall_s": wall, "feedback_reports": reports,
                             "last_snr_db": last_snr, "radio": settings, "radio_counters": counters},
                 {"link": link, "modem": modem.config})
    return 0
