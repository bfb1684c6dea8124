"""``sdr-tosc rx``: the receiving end of a two-radio (or two-process) semantic link."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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

HELP = "receive semantic frames from a radio, classify them, report SNR back, score against the data set"
EXAMPLES = """
  # two Plutos on two hosts (start this first; TX-HOST runs 'sdr-tosc tx --feedback-bind tcp://0.0.0.0:5600'):
  sdr-tosc rx --radio pluto --uri ip:192.168.3.1 --center-freq-hz 915e6 --rx-gain-db 40 \\
      --feedback tcp://TX-HOST:5600 --images 1000 --json rx.json --plot rx.png
  # on one laptop, with 'sdr-tosc channel' running:
  sdr-tosc rx --radio zmq --uri tcp://127.0.0.1:5556 --images 200 --feedback tcp://127.0.0.1:5600
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
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from ..link import FeedbackSender, SemanticReceiver
    from ..measure import bin_by_snr
    from ..modem import Modem

    student = load_student(args)
    _images, labels, _classes = load_images(args)
    link = link_config(args)
    modem = Modem(modem_config(args))
    results: dict[int, object] = {}
    recorder = None
    if args.record is not None:
        from ..radio.recording import FrameRecorder

        if args.record_pre_roll < 0 or args.record_post_roll < 0 or args.record_max_samples < 1:
            raise ValueError("--record-pre-roll/--record-post-roll must be >= 0 and --record-max-samples >= 1")
    t0 = time.perf_counter()
    ended = ""
    with open_radio_from(args.radio, args.uri, "rx", parse_opts(args.radio_opt, "--radio-opt"), args) as radio, \
            FeedbackSender(args.feedback) as fb:
        rx = SemanticReceiver(student, modem, radio, link, None if args.no_feedback else fb)
        if args.record is not None:
            recorder = FrameRecorder(
                radio.sample_rate_hz, pre_roll=args.record_pre_roll, post_roll=args.record_post_roll,
                max_samples=args.record_max_samples,
                history_samples=args.record_pre_roll + 2 * link.rx_chunk_samples + rx.stream.max_frame_samples)
        print(f"sdr-tosc rx: {radio!r}; SNR reports to {args.feedback}; waiting for {len(labels)} frames",
              file=sys.stderr)
        bar = tqdm(total=len(labels), desc="rx", unit="img", disable=args.no_progress)
        last_new = time.monotonic()
        correct = 0

        def take(got: list) -> None:
            nonlocal correct, last_new
            for r in got:
                if recorder is not None:
                    recorder.mark(r.start, r.end - r.start, label=f"seq {r.seq}", fields={
                        "seq": int(r.seq), "pred": int(r.pred), "snr_db": float(r.snr_db),
                        "snr_dec_db": float(r.snr_dec_db), "cfo_hz": float(r.cfo_hz), "n_symbols": int(r.n_symbols),
                        "snr_tx_db": float(r.snr_tx_db),
                        **({"label": int(labels[r.seq])} if r.seq < len(labels) else {})})
                if r.seq >= len(labels) or r.seq in results:
                    continue  # a frame of another run, or a repeat
                results[r.seq] = r
                correct += int(r.pred == labels[r.seq])
                last_new = time.monotonic()
                bar.update(1)
                bar.set_postfix(acc=f"{correct / len(results):.3f}", snr=f"{r.snr_db:.1f}dB", k=r.n_symbols)

        while len(results) < len(labels) and time.monotonic() - last_new < args.timeout_s:
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
        last_frames = rx.last_frames
        hw = None
        if recorder is not None:
            from ..radio.recording import hw_description

            hw = hw_description(radio)
    wall = time.perf_counter() - t0
    frames = [{"index": s, "seq": s, "label": int(labels[s]), "received": True, "pred": r.pred, "snr_db": r.snr_db,
               "snr_dec_db": r.snr_dec_db, "cfo_hz": r.cfo_hz, "n_symbols": r.n_symbols, "snr_tx_db": r.snr_tx_db}
              for s, r in sorted(results.items())]
    n = len(labels)
    summary = {
        "images": n, "received": len(results), "correct": correct, "accuracy": correct / n,
        "accuracy_received": correct / len(results) if results else 0.0, "frame_loss": 1 - len(results) / n,
        "snr_db_mean": float(np.mean([f["snr_db"] for f in frames])) if frames else None,
        "cfo_hz_mean": float(np.mean([f["cfo_hz"] for f in frames])) if frames else None, "wall_s": wall,
    }
    print(f"received {len(results)}/{n} frames; accuracy {summary['accuracy'] * 100:.2f}% (lost = wrong), "
          f"{summary['accuracy_received'] * 100:.2f}% of received; mean SNR {summary['snr_db_mean']} dB; "
          f"overflows {counters['overflows']}, dropped samples {counters['dropped_samples']}")
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
        _plot(args.plot, last_frames, binned)
        print(f"plot written to {args.plot}")
    if not results:  # a failed run leaves an existing --json as it was
        print("sdr-tosc rx: no frame received" + (f"; {args.json} not written" if args.json else ""),
              file=sys.stderr)
        return 1
    write_result(args.json, {"summary": summary, "binned": binned, "radio": settings, "radio_counters": counters,
                             "frames": frames}, {"link": link, "modem": modem.config})
    return 0


def _plot(path: Path, last_frames, binned) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..fileio import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    if last_frames:
        sym = np.concatenate([f.symbols for f in last_frames[-8:]])
        axes[0].scatter(sym.real, sym.imag, s=6, alpha=0.6)
    axes[0].set_title("received semantic symbols (last frames)")
    axes[0].set_aspect("equal", "datalim")
    axes[0].grid(alpha=0.3)
    if binned:
        axes[1].errorbar([b["snr_db"] for b in binned], [100 * b["accuracy"] for b in binned],
                         yerr=[[max(0.0, 100 * (b["accuracy"] - b["ci95"][0])) for b in binned],
                               [max(0.0, 100 * (b["ci95"][1] - b["accuracy"])) for b in binned]], marker="o", capsize=3)
    axes[1].set_xlabel("measured SNR (dB)")
    axes[1].set_ylabel("accuracy of received frames (%)")
    axes[1].set_ylim(0, 100)
    axes[1].grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
