"""``sdr-tosc demo``: the semantic link end to end with no hardware (the README's main command)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..link.events import add_events_args
from .common import add_json_flag, write_result
from .linkargs import (
    add_link_args,
    add_loopback_channel_args,
    add_student_args,
    channel_settings,
    link_config,
    load_images,
    load_student,
    modem_config,
    open_radio_from,
    parse_opts,
    radio_kinds,
    uri_help,
)
from .schemeargs import add_scheme_args, scheme_codecs

HELP = "loopback demo: student encoder -> OFDM modem -> zmq radio -> simulated air -> receiver -> class"
EXAMPLES = """
  sdr-tosc demo                                      # 200 test images at 10 dB SNR, 2 kHz CFO
  sdr-tosc demo --snr-db 0 --multipath epa --fading rayleigh --images 500 --json demo.json --plot demo.png
  sdr-tosc demo --checkpoint runs/student.safetensors --no-feedback --initial-snr-db 5
  sdr-tosc demo --scheme both --snr-db 0 --images 100     # semantic vs digital-latent vs digital-png, same channel
  sdr-tosc demo --images 5000 --monitor                # and watch it live in a browser (URL printed)
  sdr-tosc demo --images 5000 --overlap -q             # TX of the next batch overlaps RX of this one (faster)
  # one full-duplex radio, TX port cabled to RX port through a 30 dB attenuator:
  sdr-tosc demo --radio pluto --uri ip:192.168.2.1 --center-freq-hz 2.44e9 --tx-gain-db -20 --rx-gain-db 30 \
      --radio-opt tx_cyclic=true
  # a virtual USRP (no hardware): its TX reaches its RX through a channel simulator it starts
  sdr-tosc demo --radio usrp --uri type=virtual --images 50
  # the same against the in-repo Pluto emulator (python -m sdr_tosc.radio.iiod_emulator --port 30431):
  sdr-tosc demo --radio pluto --uri ip:127.0.0.1:30431 --images 50
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_student_args(p)
    g = p.add_argument_group("one real radio in loopback (instead of the simulator)")
    kinds = [k for k in radio_kinds(transmit=True, receive=True) if k != "zmq"]
    g.add_argument("--radio", choices=kinds, help="a full-duplex radio whose TX is cabled to its RX")
    g.add_argument("--uri", help=f"its address ({uri_help(kinds)})")
    g.add_argument("--radio-opt", action="append", default=[], metavar="KEY=VALUE", help="extra radio setting")
    g.add_argument("--center-freq-hz", type=float, help="RF centre frequency")
    g.add_argument("--tx-gain-db", dest="radio_tx_gain_db", type=float, help="TX gain (Pluto: -89.75..0)")
    g.add_argument("--rx-gain-db", dest="radio_rx_gain_db", type=float, help="RX gain")
    add_loopback_channel_args(p)
    add_link_args(p)
    add_scheme_args(p)
    p.add_argument("--plot", type=Path, help="write a PNG: constellation vs transmitted symbols with EVM, spectrum "
                   "of the last burst, misclassified examples")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overlap", action="store_true",
                   help="pipeline the loop: encode, modulate and send the next batch while this one is received "
                        "(faster; the transmitter then adapts to feedback one batch older)")
    add_events_args(p, monitor=True)
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    import contextlib

    from ..link.events import publisher_from_args

    with contextlib.ExitStack() as stack:
        pub = publisher_from_args(args)
        if pub is not None:
            stack.enter_context(pub)
        mon = None
        if args.monitor is not None:
            from ..monitor import MonitorProcess  # noqa: PLC0415

            mon = stack.enter_context(MonitorProcess(pub.endpoint, port=args.monitor))
            print(f"sdr-tosc demo: monitor at {mon.url}", file=sys.stderr, flush=True)
        elif pub is not None:
            print(f"sdr-tosc demo: events on {pub.endpoint} (sdr-tosc monitor --connect {pub.endpoint})",
                  file=sys.stderr, flush=True)
        rc = _run(args, pub)
        if mon is not None and args.monitor_keep:
            print(f"sdr-tosc demo: run finished; the monitor stays at {mon.url} until Ctrl-C", file=sys.stderr,
                  flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                mon.proc.wait()
        return rc


def _run(args: argparse.Namespace, pub) -> int:  # noqa: ANN001
    import numpy as np

    from ..link.events import LinkEvents
    from ..link.loopback import open_loopback, open_radio_loopback
    from ..link.session import run_link

    student = load_student(args)
    images, labels, classes = load_images(args)
    mcfg = modem_config(args)
    if args.scheme != "semantic":
        return _run_schemes(args, student, images, labels, classes, mcfg)
    if args.radio:
        chan = None
        from ..calibrate import rx_wait_samples

        radio = open_radio_from(args.radio, args.uri, "trx", parse_opts(args.radio_opt, "--radio-opt"), args)
        # a real radio delivers TX samples after its RX queue (Pluto: 4 x 32768 samples in the kernel; USRP:
        # the host queue and UHD's frames, Radio.rx_queue_samples), so wait at least that long
        link = link_config(args, pack_bursts=True,
                           rx_slack_samples=max(int(0.5 * args.sample_rate_hz), rx_wait_samples(radio)))
        where = f"{radio!r} (TX looped to RX)"
        ctx = open_radio_loopback(student, radio, link, mcfg, feedback=not args.no_feedback)
    else:
        chan = channel_settings(args, sample_rate_hz=args.sample_rate_hz)
        link = link_config(args)
        where = (f"channel simulator snr={chan['snr_db']} dB cfo={chan['cfo_hz']:g} Hz "
                 f"multipath={chan['multipath']} fading={chan['fading']}")
        ctx = open_loopback(student, link, mcfg, feedback=not args.no_feedback, **chan)
    print(f"sdr-tosc demo: {len(images)} {args.dataset} test images through {where}; student "
          f"{student.num_parameters():,} parameters, up to {student.k_max} complex symbols/image", file=sys.stderr)
    with ctx as lb:
        events = LinkEvents(pub, source="demo", labels=labels, images=images, classes=classes,
                            sample_rate_hz=mcfg.sample_rate_hz,
                            channel_control=lb.channel.control_endpoint if lb.channel is not None else None)
        events.attach(lb.tx, lb.rx)
        if pub is not None:
            if not pub.wait_subscriber(10.0 if args.monitor is not None else args.events_wait_s):
                print("sdr-tosc demo: no monitor subscribed yet; starting anyway", file=sys.stderr)
            events.publish_status()  # the monitor learns the simulator's control socket before the first frame
        report = run_link(lb.tx, lb.rx, images, labels, progress=not args.no_progress,
                          truth=(lambda: lb.channel.truth()) if lb.channel is not None else None,
                          overlap=args.overlap)
        latency = events.latency_ms()
        events.finish(report.summary())
        burst = events.last_burst()
        counters = {"tx": lb.tx.radio.counters.as_dict(), "rx": lb.rx.radio.counters.as_dict()}
    true = np.array([f["snr_true_db"] for f in report.frames if "snr_true_db" in f and "snr_db" in f])
    est = np.array([f["snr_db"] for f in report.frames if "snr_true_db" in f and "snr_db" in f])
    bias = float(np.mean(est - true)) if true.size else math.nan
    rms = float(np.sqrt(np.mean((est - true) ** 2))) if true.size else math.nan
    airtime = np.mean([f["n_symbols"] for f in report.frames])
    lines = [
        f"accuracy            {report.accuracy * 100:6.2f} %   ({report.correct}/{report.images}; lost frames count as wrong)",
        f"frames lost         {report.frame_loss * 100:6.2f} %",
        f"SNR estimate        {report.snr_db_mean:6.2f} dB"
        + (f"  (channel truth {np.mean(true):.2f} dB; bias {bias:+.2f} dB, rms error {rms:.2f} dB)" if true.size else ""),
        f"CFO estimate        {report.cfo_hz_mean:8.1f} Hz" + (f" (set {chan['cfo_hz']:g} Hz)" if chan else ""),
        f"symbols per image   {airtime:6.1f}      (adaptive: chosen from the fed-back SNR)",
        f"air per image       {report.air_samples_per_image:6.1f} samples ({report.bursts} bursts; "
        f"{100 * airtime / report.air_samples_per_image:.1f} % of the air carries semantic symbols)",
        f"throughput          {report.images_per_s:6.1f} images/s end to end ({report.wall_s:.1f} s)",
        f"radio counters      tx {counters['tx']['tx_bursts']} bursts, rx {counters['rx']['rx_samples']} samples, "
        f"dropped {counters['rx']['dropped_samples']}, overflows {counters['rx']['overflows']}, "
        f"underflows {counters['tx']['underflows']}",
        "latency p50/p99 (ms) " + ", ".join(f"{k} {_ms(latency['p50'][k])}/{_ms(latency['p99'][k])}"
                                          for k in latency["p50"]),
    ]
    print("\n".join(lines))
    if args.plot is not None:
        _plot(args.plot, report, burst, images, labels, classes, args.sample_rate_hz)
        print(f"plot written to {args.plot}")
    write_result(args.json, {"summary": report.summary(), "air_samples_per_image": report.air_samples_per_image,
                             "payload_air_fraction": airtime / report.air_samples_per_image,
                             "snr_estimate_bias_db": bias, "snr_estimate_rms_db": rms,
                             "latency_ms_p50": latency["p50"], "latency_ms_p99": latency["p99"],
                             "radio_counters": counters, "frames": report.frames},
                 {"link": link, "modem": mcfg, **({"channel": chan} if chan else {})})
    return 0


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _run_schemes(args: argparse.Namespace, student, images, labels, classes, mcfg) -> int:  # noqa: ANN001
    """``--scheme digital|both|digital-*``: the schemes take turns batch by batch over the same channel."""
    from ..link.digital import open_scheme_loopback, open_scheme_radio_loopback, run_schemes

    schemes, codecs, dcfg = scheme_codecs(args, student, images.shape[1:])
    if args.radio:
        chan = None
        link = link_config(args, pack_bursts=True, rx_slack_samples=int(0.5 * args.sample_rate_hz))
        radio = open_radio_from(args.radio, args.uri, "trx", parse_opts(args.radio_opt, "--radio-opt"), args)
        ctx = open_scheme_radio_loopback(schemes, student, codecs, radio, link, dcfg, mcfg, feedback=not args.no_feedback)
        where = f"{radio!r} (TX looped to RX)"
    else:
        chan = channel_settings(args, sample_rate_hz=args.sample_rate_hz)
        link = link_config(args)
        ctx = open_scheme_loopback(schemes, student, codecs, link, dcfg, mcfg, feedback=not args.no_feedback, **chan)
        where = (f"channel simulator snr={chan['snr_db']} dB cfo={chan['cfo_hz']:g} Hz "
                 f"multipath={chan['multipath']} fading={chan['fading']}")
    print(f"sdr-tosc demo: {len(images)} {args.dataset} test images x {len(schemes)} schemes ({', '.join(schemes)}) "
          f"through {where}", file=sys.stderr)
    with ctx as lb:
        reports = run_schemes(lb.txs, lb.rx, images, labels, progress=not args.no_progress,
                              truth=(lambda: lb.channel.truth()) if lb.channel is not None else None)
    print(f"{'scheme':>15} {'accuracy':>9} {'lost':>6} {'CRC fail':>9} {'SNR dB':>7} {'air/image':>10}  modulations")
    out = {}
    for name, r in reports.items():
        crc = sum(1 for f in r.frames if f.get("received") and f.get("crc_ok") is False) / max(len(r.frames), 1)
        mods = sorted({f["modulation"] for f in r.frames if f.get("modulation")})
        print(f"{name:>15} {r.accuracy * 100:8.2f}% {r.frame_loss * 100:5.1f}% {crc * 100:8.1f}% "
              f"{r.snr_db_mean:7.2f} {r.air_samples_per_image:10.1f}  {','.join(mods) or '-'}")
        out[name] = {"summary": r.summary(), "crc_failed": crc, "modulations": mods, "frames": r.frames}
    if args.plot is not None:
        first = reports[schemes[0]]
        _plot(args.plot, first, None, images, labels, classes, args.sample_rate_hz)
        print(f"plot written to {args.plot}")
    write_result(args.json, {"schemes": out},
                 {"link": link, "modem": mcfg, "digital": dcfg, **({"channel": chan} if chan else {})})
    return 0


def _plot(path: Path, report, burst, images, labels, classes, fs: float) -> None:  # noqa: ANN001
    import matplotlib.pyplot as plt

    from ..fileio import atomic_path

    fig = demo_figure(report, burst, images, labels, classes, fs)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def demo_figure(report, burst, images, labels, classes, fs: float):  # noqa: ANN001, ANN201
    """Constellation of the last burst against the transmitted symbols (EVM), the burst's spectrum, and
    example images, misclassified ones first. The caller closes the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy.signal import welch

    fig = plt.figure(figsize=(13, 7.5), constrained_layout=True)
    gs = fig.add_gridspec(2, 6)
    ax = fig.add_subplot(gs[0, 0:3])
    if burst is not None:
        n_all = burst["rx"].size
        rx = burst["rx"][:300]  # a readable cloud; the EVM is over every symbol of the burst
        if burst["tx"] is not None:
            tx = burst["tx"][:300]
            ax.plot(np.stack([tx.real, rx.real]), np.stack([tx.imag, rx.imag]), color="0.75", lw=0.5, zorder=1)
            ax.scatter(tx.real, tx.imag, s=14, marker="x", color="k", label="transmitted", zorder=3)
        ax.scatter(rx.real, rx.imag, s=8, alpha=0.7, color="C1", label="received (equalised)", zorder=2)
        evm = f", EVM {burst['evm_pct']:.1f} %" if burst["evm_pct"] is not None else ""
        ax.set_title(f"last burst: {rx.size} of its {n_all} semantic symbols at {burst['snr_db']:.1f} dB{evm}\n"
                     "(analog symbols: grey lines join each sent symbol to its received one)", fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xlabel("I (in-phase)")
    ax.set_ylabel("Q (quadrature)")
    ax.set_aspect("equal", "datalim")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(gs[0, 3:6])
    iq = burst["iq"] if burst is not None else None
    if iq is not None and iq.size >= 64:
        f, pxx = welch(iq, fs=fs, nperseg=min(256, iq.size), return_onesided=False, detrend=False)
        order = np.argsort(f)
        ax.plot(f[order] / 1e3, 10 * np.log10(pxx[order] + 1e-20))
        ax.set_title(f"spectrum of the last received burst ({iq.size} samples, Welch)", fontsize=9)
    else:
        ax.set_title("spectrum: no burst received", fontsize=9)
    ax.set_xlabel("frequency offset from the carrier (kHz)")
    ax.set_ylabel("PSD (dB/Hz)")
    ax.grid(alpha=0.3)
    preds = {f["index"]: f.get("pred") for f in report.frames}
    wrong = [i for i in range(len(labels)) if preds.get(i) != labels[i]]
    right = [i for i in range(len(labels)) if preds.get(i) == labels[i]]
    shown = (wrong[:4] + right)[:6] if wrong else right[:6]
    for j, i in enumerate(shown):
        axi = fig.add_subplot(gs[1, j])
        axi.imshow(images[i].squeeze(), cmap="gray")
        p = preds.get(i)
        ok = p == labels[i]
        axi.set_title(f"#{i} sent: {classes[labels[i]]}\nrx: {classes[p] if p is not None else 'lost'}"
                      + ("" if ok else " (wrong)"), color="green" if ok else "red", fontsize=9)
        axi.axis("off")
    fig.suptitle(f"sdr-tosc loopback demo: accuracy {report.accuracy * 100:.1f}% over {report.images} images "
                 f"({len(wrong)} wrong or lost, shown first), SNR {report.snr_db_mean:.1f} dB")
    return fig
