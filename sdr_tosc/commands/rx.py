"""``sdr-tosc rx``: the receiving end of a two-radio (or two-process) semantic link."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from ..link.events import add_events_args
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

HELP = "receive semantic frames from a radio, classify them, report SNR back, score against the data set"
EXAMPLES = """
  # two Plutos on two hosts (start this first; TX-HOST runs 'sdr-tosc tx --feedback-bind tcp://0.0.0.0:5600'):
  sdr-tosc rx --radio pluto --uri ip:192.168.3.1 --center-freq-hz 2.44e9 --rx-gain-db 40 \\
      --feedback tcp://TX-HOST:5600 --images 1000 --json rx.json --plot rx.png
  # on one laptop, with 'sdr-tosc channel' running:
  sdr-tosc rx --radio zmq --uri tcp://127.0.0.1:5556 --images 200 --feedback tcp://127.0.0.1:5600
  # the semantic scheme and both digital baselines ('sdr-tosc tx --scheme both' on the other end):
  sdr-tosc rx --radio zmq --uri tcp://127.0.0.1:5556 --images 200 --feedback tcp://127.0.0.1:5600 --scheme both
  # through a GNU Radio flowgraph (flowgraphs/channel_model.grc, or a ZMQ<->Pluto/USRP bridge):
  sdr-tosc rx --radio zmq --gnuradio --uri tcp://127.0.0.1:5556 --images 200
  # keep the samples around every frame, then replay them through the receiver (same predictions):
  sdr-tosc rx --radio usrp --uri type=virtual,out=tcp://127.0.0.1:5556 --images 50 --record cap
  sdr-tosc rx --radio file --uri cap.sigmf-meta --images 50 --no-feedback
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_student_args(p)
    add_radio_args(p, "rx")
    add_link_args(p)
    add_scheme_args(p)
    p.add_argument("--feedback", default="tcp://127.0.0.1:5600", metavar="ENDPOINT",
                   help="the transmitter's --feedback-bind endpoint for SNR reports (default %(default)s)")
    p.add_argument("--timeout-s", type=float, default=30.0,
                   help="stop when no frame arrived for this long (default %(default)s s)")
    p.add_argument("--plot", type=Path, help="write a PNG of the received symbols and accuracy vs SNR")
    p.add_argument("--record", type=Path, metavar="PATH",
                   help="save the samples around each decoded frame as a SigMF recording (PATH.sigmf-data/-meta): "
                        "one capture segment per run of frames, one annotation per frame with its fields in the "
                        "sdr_tosc namespace; replay it with --radio file --uri PATH.sigmf-meta")
    p.add_argument("--record-pre-roll", type=int, default=4000, metavar="SAMPLES",
                   help="samples kept before each frame (default %(default)s)")
    p.add_argument("--record-post-roll", type=int, default=4000, metavar="SAMPLES",
                   help="samples kept after each frame (default %(default)s)")
    p.add_argument("--record-max-samples", type=int, default=20_000_000,
                   help="keep at most this many samples (default %(default)s = 160 MB)")
    p.add_argument("--no-progress", action="store_true")
    add_events_args(p)
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from ..link import FeedbackSender, SemanticReceiver
    from ..link.events import LinkEvents, publisher_from_args
    from ..measure import bin_by_snr
    from ..modem import Modem

    student = load_student(args)
    images, labels, classes = load_images(args)
    link = link_config(args)
    modem = Modem(modem_config(args))
    results: dict[tuple[str, int], object] = {}  # (scheme, seq) -> frame result
    schemes, codecs, dcfg = scheme_codecs(args, student, images.shape[1:])
    recorder = None
    if args.record is not None:
        from ..radio.recording import FrameRecorder

        if args.record_pre_roll < 0 or args.record_post_roll < 0 or args.record_max_samples < 1:
            raise ValueError("--record-pre-roll/--record-post-roll must be >= 0 and --record-max-samples >= 1")
    t0 = time.perf_counter()
    ended = ""
    pub = publisher_from_args(args)  # live monitor (sdr-tosc monitor --connect ENDPOINT)
    with open_radio_from(args.radio, args.uri, "rx", parse_opts(args.radio_opt, "--radio-opt"), args) as radio, \
            FeedbackSender(args.feedback) as fb, pub if pub is not None else contextlib.nullcontext():
        rx = SemanticReceiver(student, modem, radio, link, None if args.no_feedback else fb)
        if schemes != ("semantic",):  # one stream for every scheme, bursts told apart by header kind
            from ..link.digital import SchemeReceiver

            rx = SchemeReceiver(modem, radio, link, rx if "semantic" in schemes else None, codecs, dcfg,
                                None if args.no_feedback else fb)
        events = LinkEvents(pub, source="rx", labels=labels, images=images, classes=list(classes),
                            sample_rate_hz=modem.config.sample_rate_hz).attach(rx=rx)
        if pub is not None:
            print(f"sdr-tosc rx: events on {pub.endpoint}", file=sys.stderr)
            pub.wait_subscriber(args.events_wait_s)
        if args.record is not None:
            recorder = FrameRecorder(
                radio.sample_rate_hz, pre_roll=args.record_pre_roll, post_roll=args.record_post_roll,
                max_samples=args.record_max_samples,
                history_samples=args.record_pre_roll + 2 * link.rx_chunk_samples + rx.stream.max_frame_samples)
        print(f"sdr-tosc rx: {radio!r}; SNR reports to {args.feedback}; waiting for {len(labels)} frames",
              file=sys.stderr)
        expected = len(labels) * len(schemes)
        bar = tqdm(total=expected, desc="rx", unit="img", disable=args.no_progress)
        last_new = time.monotonic()
        correct = 0

        def take(got: list) -> None:
            nonlocal correct, last_new
            for item in got:
                scheme, r = item if isinstance(item, tuple) else ("semantic", item)
                if recorder is not None:
                    recorder.mark(r.start, r.end - r.start, label=f"seq {r.seq}", fields={
                        "seq": int(r.seq), "pred": int(r.pred), "snr_db": float(r.snr_db),
                        "snr_dec_db": float(r.snr_dec_db), "cfo_hz": float(r.cfo_hz), "n_symbols": int(r.n_symbols),
                        "snr_tx_db": float(r.snr_tx_db), "scheme": scheme,
                        **({"label": int(labels[r.seq])} if r.seq < len(labels) else {})})
                if r.seq >= len(labels) or (scheme, r.seq) in results:
                    continue  # a frame of another run, or a repeat
                results[(scheme, r.seq)] = r
                correct += int(r.pred == labels[r.seq])
                last_new = time.monotonic()
                bar.update(1)
                bar.set_postfix(acc=f"{correct / len(results):.3f}", snr=f"{r.snr_db:.1f}dB", k=r.n_symbols)

        while len(results) < expected and time.monotonic() - last_new < args.timeout_s:
            try:
                got = rx.receive(link.rx_chunk_samples)
            except EOFError as exc:  # a file radio reached the end of its recording
                ended = str(exc)
                break
            except TimeoutError as exc:  # a GNU Radio peer forwards only what it gets: no samples = the end
                if not args.gnuradio:
                    raise
                ended = f"{exc} (--timeout-s)"
                break
            if recorder is not None:
                recorder.push(rx.last_chunk)
            take(got)
        take(rx.flush())
        bar.close()
        if ended:
            print(f"sdr-tosc rx: {ended}", file=sys.stderr)
        counters = radio.counters.as_dict()
        settings = radio.settings()
        events.finish({"images": len(labels), "received": len(results), "correct": correct})
        last_frames = rx.last_frames
        hw = None
        if recorder is not None:
            from ..radio.recording import hw_description

            hw = hw_description(radio)
    wall = time.perf_counter() - t0
    frames = [{"index": s, "seq": s, "label": int(labels[s]), "received": True, "pred": r.pred, "snr_db": r.snr_db,
               "snr_dec_db": r.snr_dec_db, "cfo_hz": r.cfo_hz, "n_symbols": r.n_symbols, "snr_tx_db": r.snr_tx_db,
               **({"scheme": sc} if len(schemes) > 1 or sc != "semantic" else {}),
               **({"crc_ok": r.crc_ok, "modulation": r.modulation} if hasattr(r, "crc_ok") else {})}
              for (sc, s), r in sorted(results.items())]
    n = len(labels) * len(schemes)
    per_scheme = {}
    for sc in schemes:
        got = [r for (k, _), r in results.items() if k == sc]
        ok = sum(int(r.pred == labels[r.seq]) for r in got)
        per_scheme[sc] = {"received": len(got), "correct": ok, "accuracy": ok / len(labels),
                          "frame_loss": 1 - len(got) / len(labels),
                          "crc_failed": sum(1 for r in got if getattr(r, "crc_ok", True) is False) / len(labels)}
        if len(schemes) > 1 or sc != "semantic":
            print(f"{sc:>15}: accuracy {ok / len(labels) * 100:6.2f}% (lost/CRC-failed = wrong), "
                  f"received {len(got)}/{len(labels)}, CRC failed {per_scheme[sc]['crc_failed'] * 100:.1f}%")
    summary = {
        "images": n, "received": len(results), "correct": correct, "accuracy": correct / n,
        "accuracy_received": correct / len(results) if results else 0.0, "frame_loss": 1 - len(results) / n,
        "snr_db_mean": float(np.mean([f["snr_db"] for f in frames])) if frames else None,
        "cfo_hz_mean": float(np.mean([f["cfo_hz"] for f in frames])) if frames else None, "wall_s": wall,
    }
    print(f"received {len(results)}/{n} frames; accuracy {summary['accuracy'] * 100:.2f}% (lost = wrong), "
          f"{summary['accuracy_received'] * 100:.2f}% of received; mean SNR {summary['snr_db_mean']} dB; "
          f"overflows {counters['overflows']}, dropped samples {counters['dropped_samples']}")
    if len(schemes) > 1:
        binned = [{"scheme": sc, **b} for sc in schemes for b in bin_by_snr([f for f in frames if f.get("scheme") == sc])]
    else:
        binned = bin_by_snr(frames)
    if recorder is not None:
        from ..modem import FrameHeader
        from ..radio.recording import occupied_band_hz

        rng = np.random.default_rng(0)
        payload = ((rng.standard_normal(student.k_max) + 1j * rng.standard_normal(student.k_max)) / 2).astype(np.complex64)
        probe = modem.modulate(payload, FrameHeader(seq=0))  # a burst like the ones received: its band
        meta = recorder.save(args.record, center_freq_hz=settings.get("center_freq_hz"), hw=hw[0],
                             global_fields=hw[1], band_hz=occupied_band_hz(probe, settings["sample_rate_hz"]),
                             description=f"sdr-tosc rx: samples around {len(recorder.frames)} semantic frames")
        if meta is None:
            print("no frame decoded: nothing recorded")
        else:
            print(f"recording written to {meta} ({recorder.kept} samples around {len(recorder.frames)} frames"
                  f"{', truncated at --record-max-samples' if recorder.truncated else ''})")
    if args.plot is not None:
        _plot(args.plot, last_frames, binned, f"sdr-tosc rx: {len(results)}/{n} frames received, accuracy "
              f"{summary['accuracy'] * 100:.1f} % (lost = wrong)")
        print(f"plot written to {args.plot}")
    if not results:  # a failed run leaves an existing --json as it was
        print("sdr-tosc rx: no frame received" + (f"; {args.json} not written" if args.json else ""),
              file=sys.stderr)
        return 1
    write_result(args.json, {"summary": summary, "schemes": per_scheme, "binned": binned, "radio": settings, "radio_counters": counters,
                             "frames": frames}, {"link": link, "modem": modem.config})
    return 0


def _plot(path: Path, last_frames, binned, title: str = "sdr-tosc rx") -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from ..fileio import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    ax = axes[0]
    if last_frames:
        frames = last_frames[-8:]
        sym = np.concatenate([f.symbols for f in frames])
        ax.scatter(sym.real, sym.imag, s=6, alpha=0.6)
        snr = np.mean([f.snr_db for f in frames])
        ax.set_title(f"received semantic symbols (equalised), last {len(frames)} bursts, {snr:.1f} dB", fontsize=10)
    else:
        ax.set_title("received semantic symbols: none", fontsize=10)
    ax.set_xlabel("I (in-phase)")
    ax.set_ylabel("Q (quadrature)")
    ax.set_aspect("equal", "datalim")
    ax.grid(alpha=0.3)
    ax = axes[1]
    if binned:
        ax.errorbar([b["snr_db"] for b in binned], [100 * b["accuracy"] for b in binned],
                    yerr=[[max(0.0, 100 * (b["accuracy"] - b["ci95"][0])) for b in binned],
                          [max(0.0, 100 * (b["ci95"][1] - b["accuracy"])) for b in binned]], fmt="o", capsize=3)
        for b in binned:
            ax.annotate(str(b["frames"]), (b["snr_db"], 100 * b["ci95"][0]), textcoords="offset points",
                        xytext=(0, -11), ha="center", fontsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=8, steps=[1, 2, 5, 10]))
    ax.set_xlabel("measured SNR (dB, 2-dB bins)")
    ax.set_ylabel("accuracy of received frames (%)")
    ax.set_ylim(-3, 100)
    ax.set_title("accuracy vs measured SNR (95 % interval; numbers: frames)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
