"""Speed of the GNU Radio blocks, printed as JSON.

* ``semantic_rx`` on noise (what a receiving flowgraph does between bursts) against the link's
  SemanticReceiver on the same samples without GNU Radio (ratio = overhead of the block), and as a multiple
  of real time at the sample rate;
* the semantic loopback (TX block -> channel_model at 10 dB, 2 kHz -> RX block, SNR reports fed back) in
  images per second, with the frames received and the accuracy.

Run: ``.venv/bin/python benchmarks/bench_gnuradio.py [--samples N] [--images N]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    from gnuradio import blocks, channels, gr

    from sdr_tosc.gnuradio import noise_voltage_for_snr, semantic_rx, semantic_tx
    from sdr_tosc.link import LinkConfig, SemanticReceiver

    rng = np.random.default_rng(0)
    noise = (0.03 * (rng.standard_normal(args.samples) + 1j * rng.standard_normal(args.samples))).astype(np.complex64)

    rx = semantic_rx(images=0)
    tb = gr.top_block()
    tb.connect(blocks.vector_source_c(noise, False), rx)
    t = time.perf_counter()
    tb.run()
    t_block = time.perf_counter() - t

    class Feed:
        sample_rate_hz = 1e6
        pos = 0

        def rx(self, n: int) -> np.ndarray:
            out = noise[self.pos:self.pos + n]
            self.pos += n
            return out

    t_ref = float("inf")
    for _ in range(2):  # the better of two runs (the first one also warms up what the block run warmed)
        ref = SemanticReceiver(rx.student, rx.modem, Feed(), LinkConfig())
        t = time.perf_counter()
        ref.receive(args.samples)
        t_ref = min(t_ref, time.perf_counter() - t)

    tx = semantic_tx(images=args.images, tail_samples=40_000)
    rx2 = semantic_rx(images=args.images)
    tb2 = gr.top_block()
    tb2.connect(tx, channels.channel_model(noise_voltage_for_snr(10.0), 2000 / 1e6, 1.0, [1.0 + 0j], 3, False), rx2)
    tb2.msg_connect(rx2, "snr", tx, "snr")
    t = time.perf_counter()
    tb2.run()
    t_loop = time.perf_counter() - t
    print(json.dumps({
        "rx_block_samples_per_s": args.samples / t_block,
        "rx_block_realtime_factor_1msps": args.samples / t_block / 1e6,
        "rx_block_time_over_link_receiver": t_block / t_ref,
        "loopback_images_per_s": args.images / t_loop,
        "loopback_received": rx2.summary["received"],
        "loopback_accuracy": rx2.summary["accuracy"],
        "loopback_snr_db_mean": rx2.summary["snr_db_mean"],
        "tx_snr_reports_received": tx.reports_received,
    }))


if __name__ == "__main__":
    main()
