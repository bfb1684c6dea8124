"""``sdr-tosc measure``: accuracy-vs-SNR campaigns over the simulator or real radios."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..link.events import add_events_args
from .common import add_json_flag, parse_range, write_result
from .linkargs import (
    add_link_args,
    add_loopback_channel_args,
    add_radio_args,
    add_student_args,
    channel_settings,
    link_config,
    load_images,
    load_student,
    modem_config,
    radio_pair,
)
from .schemeargs import add_scheme_args, scheme_codecs

HELP = "measurement campaign: task accuracy vs measured SNR, sweeping the channel's SNR or the TX gain"
EXAMPLES = """
  sdr-tosc measure --sweep-snr-db -5:25:5 --images 300 --json m.json --plot m.png      # loopback simulator
  sdr-tosc measure --sweep-snr-db -5:25:5 --scheme both --images 200 --plot cliff.png  # semantic vs digital
  sdr-tosc measure --sweep-snr-db 0:20:5 --multipath epa --fading rayleigh --images 200
  sdr-tosc measure --tx-radio pluto --tx-uri ip:192.168.2.1 --rx-radio pluto --rx-uri ip:192.168.3.1 \\
      --center-freq-hz 2.44e9 --rx-gain-db 40 --sweep-tx-gain-db -70:-10:10 --images 300 --plot ota.png
  sdr-tosc measure --tx-radio pluto --tx-uri ip:192.168.2.1 --rx-radio pluto --rx-uri ip:192.168.3.1 \\
      --calibration calibration/pluto-ip_192.168.2.1.json --target-snr-db 0:20:5
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_student_args(p)
    add_radio_args(p, "pair")
    s = p.add_argument_group("sweep (one of)")
    s.add_argument("--sweep-snr-db", type=lambda v: parse_range(v, "--sweep-snr-db"), metavar="START:STOP:STEP",
                   help="simulator SNR values (loopback only)")
    s.add_argument("--sweep-tx-gain-db", type=lambda v: parse_range(v, "--sweep-tx-gain-db"),
                   metavar="START:STOP:STEP", help="TX gains (real radios, or the simulator's link budget)")
    s.add_argument("--target-snr-db", type=lambda v: parse_range(v, "--target-snr-db"), metavar="START:STOP:STEP",
                   help="target SNRs, reached with the TX gain from --calibration")
    s.add_argument("--calibration", type=Path, help="calibration file written by 'sdr-tosc calibrate'")
    s.add_argument("--bin-db", type=float, default=2.0, help="width of the measured-SNR bins (default 2 dB)")
    add_loopback_channel_args(p, sweep=True)
    p.add_argument("--snr-db", type=float, default=None,
                   help="simulated channel: SNR per burst at TX gain 0 dB (docs/design.md definition; default 20); the reference when sweeping the TX gain")
    add_link_args(p)
    add_scheme_args(p)
    p.add_argument("--plot", type=Path, help="write the accuracy-vs-SNR plot (PNG), with the simulated curve")
    p.add_argument("--sim-json", type=Path, metavar="PATH",
                   help="the simulated curve to overlay: an 'sdr-tosc evaluate --json' result (default: computed "
                        "for the same student and images)")
    add_events_args(p)
    p.add_argument("--no-progress", action="store_true")
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    from ..calibrate import gain_for_snr, load_calibration, lookup
    from ..link import SemanticReceiver, SemanticTransmitter
    from ..link.events import LinkEvents, publisher_from_args
    from ..link.loopback import channel_barrier, feedback_pair
    from ..measure import load_simulated_curve, plot_campaign, run_campaign, simulated_curve
    from ..modem import Modem

    sweeps = [n for n in ("sweep_snr_db", "sweep_tx_gain_db", "target_snr_db") if getattr(args, n)]
    if len(sweeps) != 1:
        raise ValueError("give exactly one of --sweep-snr-db, --sweep-tx-gain-db, --target-snr-db")
    sweep = sweeps[0]
    hardware = bool(args.tx_radio or args.rx_radio)
    if sweep == "sweep_snr_db" and hardware:
        raise ValueError("--sweep-snr-db drives the channel simulator; with real radios sweep --sweep-tx-gain-db "
                         "or --target-snr-db (with --calibration)")
    if sweep == "target_snr_db" and args.calibration is None:
        raise ValueError("--target-snr-db needs --calibration FILE (from 'sdr-tosc calibrate')")
    student = load_student(args)
    images, labels, _classes = load_images(args)
    chan = None
    if not hardware:
        ref = args.snr_db if args.snr_db is not None else 20.0
        first = args.sweep_snr_db[0] if sweep == "sweep_snr_db" else ref
        chan = channel_settings(args, sample_rate_hz=args.sample_rate_hz, snr_db=first)
    link = link_config(args, pack_bursts=hardware)
    modem = Modem(modem_config(args))
    points = getattr(args, sweep)
    doc = load_calibration(args.calibration) if args.calibration else None

    with contextlib.ExitStack() as stack:
        txr, rxr, ch = stack.enter_context(radio_pair(args, chan))
        entry = lookup(doc, float(txr.center_freq_hz)) if doc is not None else None
        if hardware:
            link = _over_the_air(txr, rxr, link, entry)
        fb_rx, fb_tx = feedback_pair(stack, link)
        tx = SemanticTransmitter(student, modem, txr, link, None if args.no_feedback else fb_rx,
                                 after_send=(lambda: channel_barrier(ch, txr)) if ch is not None else None)
        rx = SemanticReceiver(student, modem, rxr, link, None if args.no_feedback else fb_tx)
        pub = publisher_from_args(args)
        if pub is not None:  # live monitor: sdr-tosc monitor --connect ENDPOINT
            stack.enter_context(pub)
            LinkEvents(pub, source="measure", labels=labels, images=images, classes=list(_classes),
                       sample_rate_hz=modem.config.sample_rate_hz,
                       channel_control=ch.control_endpoint if ch is not None else None).attach(tx, rx)
            pub.wait_subscriber(args.events_wait_s)
        run, dcfg = None, None
        if args.scheme != "semantic":
            from ..link.digital import build_schemes, run_schemes

            schemes, codecs, dcfg = scheme_codecs(args, student, images.shape[1:])
            txs, mrx = build_schemes(schemes, student, codecs, modem, txr, rxr, link, dcfg,
                                     None if args.no_feedback else fb_rx, None if args.no_feedback else fb_tx,
                                     after_send=(lambda: channel_barrier(ch, txr)) if ch is not None else None)
            rx = mrx

            def run(images, labels, progress, truth):  # noqa: ANN001, ANN202
                return run_schemes(txs, mrx, images, labels, progress=progress, truth=truth)

        def apply(v: float) -> dict:
            if sweep == "sweep_snr_db":
                ch.set(snr_db=v)
                return {"snr_db_set": v}
            if sweep == "sweep_tx_gain_db":
                txr.tx_gain_db = v
                return {"tx_gain_db": v}
            g = gain_for_snr(entry, v)
            txr.tx_gain_db = g
            return {"target_snr_db": v, "tx_gain_db": g}

        def show(pt: dict) -> None:
            snr = pt["snr_db_mean"]
            print(f"{sweep}={pt['value']:g} {pt['scheme']}: accuracy {pt['accuracy'] * 100:5.1f}%  lost {pt['frame_loss'] * 100:4.1f}%  "
                  f"measured SNR {snr if snr is None else round(snr, 2)} dB  symbols {pt['symbols_mean']:.1f}  "
                  f"air/image {pt['air_samples_per_image']:.0f}"
                  + (f"  CRC failed {pt['crc_failed'] * 100:.1f}%" if pt['scheme'] != 'semantic' else ""),
                  file=sys.stderr)

        def settle() -> None:  # what the RX kernel queue holds from the previous point is discarded
            from ..calibrate import rx_wait_samples

            rx.receive(rx_wait_samples(rxr))

        result = run_campaign(tx, rx, images, labels, points, apply,
                              truth=(lambda: ch.truth()) if ch is not None else None, bin_db=args.bin_db,
                              progress=not args.no_progress, on_point=show, settle=settle if hardware else None,
                              run=run)
    result["sweep"] = sweep.replace("_", "-")
    print(f"{'scheme':>15} {'measured SNR (dB)':>18} {'frames':>7} {'accuracy':>9}  95% interval")
    for b in result["binned"]:
        print(f"{b['scheme']:>15} {b['snr_db']:18.1f} {b['frames']:7d} {b['accuracy'] * 100:8.1f}%  "
              f"[{b['ci95'][0] * 100:.1f}, {b['ci95'][1] * 100:.1f}]")
    if args.plot is not None:
        import numpy as np

        if args.sim_json is not None:
            sim = load_simulated_curve(args.sim_json)
        else:
            got = [b["snr_db"] for b in result["binned"]] or [0.0, 20.0]
            grid = np.arange(np.floor(min(got) / 2.5) * 2.5, max(got) + 2.5, 2.5)
            sim = simulated_curve(student, images, labels, grid.tolist(),
                                  "rayleigh" if (chan or {}).get("fading") == "rayleigh" else "awgn")
        plot_campaign(result, args.plot, f"sdr-tosc measure ({'radios' if hardware else 'loopback simulator'})",
                      channel=chan, simulated=sim)
        print(f"plot written to {args.plot}")
    write_result(args.json, result, {"link": link, "modem": modem.config, "scheme": args.scheme,
                                     **({"digital": dcfg} if dcfg else {}), **({"channel": chan} if chan else {})})
    return 0


def _over_the_air(txr, rxr, link, entry):  # noqa: ANN001, ANN202
    """Before a campaign on real radios: the calibration's crystal trim on the TX, the pre-flight
    (RX radio's TX off, noise floor, carrier offset trimmed by a tone when no calibration trim applies),
    and a receive slack that covers the RX radio's kernel queue (else the last batch of each point is
    still in the queue when the receiver gives up)."""
    import dataclasses

    from ..calibrate import preflight, rx_wait_samples

    xo = (entry or {}).get("cfo", {}).get("tx_xo_correction_hz")
    trimmed = xo is not None and hasattr(txr, "xo_correction_hz")
    if trimmed:
        txr.xo_correction_hz = int(xo)
    pre = preflight(txr, rxr, tone=not trimmed)
    print(f"pre-flight: noise floor {pre['noise_floor_dbfs']:.1f} dBFS (peak {pre['noise_peak_dbfs']:.1f}) with the "
          f"TX off; RX radio's TX powered: {pre['rx_tx_powered']}"
          + (f"; TX crystal trim from the calibration: xo_correction {int(xo)} Hz" if trimmed else "")
          + (f"; carrier offset {pre['coarse_cfo_hz']:.0f} Hz" if "coarse_cfo_hz" in pre else "")
          + (f", trimmed to xo_correction {pre['tx_xo_correction_hz']} Hz" if "tx_xo_correction_hz" in pre else ""),
          file=sys.stderr)
    slack = max(link.rx_slack_samples, rx_wait_samples(rxr))
    return dataclasses.replace(link, rx_slack_samples=slack) if slack != link.rx_slack_samples else link
