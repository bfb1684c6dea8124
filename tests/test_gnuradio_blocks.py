"""sdr_tosc.gnuradio: the semantic TX/RX blocks in real GNU Radio flowgraphs (in this process)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

gr = pytest.importorskip("gnuradio.gr", reason="GNU Radio not installed (Debian: apt install gnuradio)")
import pmt  # noqa: E402
from gnuradio import blocks, channels  # noqa: E402

from sdr_tosc.gnuradio import (  # noqa: E402
    burst_power_nominal,
    noise_voltage_for_snr,
    parse_taps,
    semantic_rx,
    semantic_tx,
    snr_db_for_noise_voltage,
)
from sdr_tosc.gnuradio.common import MessageFeedback, parse_snr_report  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def run_tx(tx) -> tuple[np.ndarray, list]:  # noqa: ANN001
    tb = gr.top_block()
    sink = blocks.vector_sink_c()
    tb.connect(tx, sink)
    tb.run()
    return np.array(sink.data(), np.complex64), list(sink.tags())


def test_snr_conversion_follows_the_project_definition():
    assert noise_voltage_for_snr(10.0) == pytest.approx(0.1)  # burst power 0.1 (10 dB back-off) / 10
    assert snr_db_for_noise_voltage(noise_voltage_for_snr(-3.5)) == pytest.approx(-3.5)
    assert burst_power_nominal(0.0) == 1.0
    with pytest.raises(ValueError, match="snr_db"):
        noise_voltage_for_snr(float("nan"))
    # gr-channels' channel_model adds E|w|^2 = noise_voltage**2 per sample
    tb = gr.top_block()
    sink = blocks.vector_sink_c()
    tb.connect(blocks.null_source(gr.sizeof_gr_complex), blocks.head(gr.sizeof_gr_complex, 100_000),
               channels.channel_model(0.2, 0.0, 1.0, [1.0 + 0j], 5, False), sink)
    tb.run()
    w = np.array(sink.data())
    assert np.mean(np.abs(w) ** 2) == pytest.approx(0.04, rel=0.03)


def test_taps_and_reports_are_parsed_without_eval():
    assert parse_taps("1, 0.3+0.2j,0.1j") == [1, 0.3 + 0.2j, 0.1j]
    for bad in ("", "1,,2", "__import__('os')", "nan", "0, 0"):
        with pytest.raises(ValueError, match="taps"):
            parse_taps(bad)
    assert parse_snr_report(12.5) == (None, 12.5, 0.0)
    assert parse_snr_report({"seq": 3, "snr_db": 4.0, "cfo_hz": 100.0}) == (3, 4.0, 100.0)
    assert parse_snr_report(({"snr_db": 7.0}, [1, 2])) == (None, 7.0, 0.0)  # a PDU's metadata
    for bad in ({"snr": 3}, {"snr_db": "high"}, {"snr_db": 1e9}, float("inf"), "12", {"snr_db": 3, "seq": -1}):
        with pytest.raises(ValueError):
            parse_snr_report(bad)


def test_tx_block_writes_tagged_bursts_at_the_nominal_power():
    tx = semantic_tx(images=10, images_per_burst=4, gap_samples=300, tail_samples=500)
    y, tags = run_tx(tx)
    by_key: dict[str, list] = {}
    for t in tags:
        by_key.setdefault(pmt.symbol_to_string(t.key), []).append((t.offset, pmt.to_python(t.value)))
    bursts = [v for _, v in by_key["sdr_tosc_burst"]]
    assert [b["items"] for b in bursts] == [4, 4, 2]
    assert [b["seq"] for b in bursts] == [0, 4, 8]
    assert all(b["robust"] for b in bursts)  # no SNR report yet: the long header
    lengths = by_key["packet_len"]
    assert [off for off, _ in lengths] == [off for off, _ in by_key["tx_sob"]]
    assert sum(n for _, n in lengths) == y.size  # every sample belongs to one packet (3 bursts + the tail)
    assert len(by_key["tx_eob"]) == 4
    assert [off for off, _ in by_key["tx_eob"]] == [off + n - 1 for off, n in lengths]
    assert not y[:300].any() and not y[-500:].any()  # silence before the first burst, tail after the last
    for (off, n), b in zip(lengths, bursts, strict=False):
        assert n == 300 + b["samples"]
        assert not y[off:off + 300].any()
    assert 10 * math.log10(tx.burst_power_mean / burst_power_nominal()) == pytest.approx(0.0, abs=0.1)
    assert np.abs(y).max() <= 1.0


def test_tx_block_adapts_to_snr_messages_and_drops_bad_ones():
    tx = semantic_tx(images=8, images_per_burst=4, batch_size=4, initial_snr_db=10.0)
    k_10 = tx.student.num_symbols_for(10.0)
    k_25 = tx.student.num_symbols_for(25.0)
    for bad in (pmt.intern("loud"), pmt.to_pmt({"snr_db": 1e9}), pmt.to_pmt({"seq": 1}), pmt.from_double(math.nan)):
        tx._on_snr(bad)
    assert tx.reports_received == 0 and tx.port_feedback.drops.total == 4
    tx._on_snr(pmt.to_pmt({"seq": 0, "snr_db": 25.0, "cfo_hz": 10.0}))
    assert tx.reports_received == 1
    _, tags = run_tx(tx)
    bursts = [pmt.to_python(t.value) for t in tags if pmt.symbol_to_string(t.key) == "sdr_tosc_burst"]
    assert [b["snr_tx_db"] for b in bursts] == [25.0, 25.0]
    assert [b["n_symbols"] for b in bursts] == [k_25, k_25]
    assert not any(b["robust"] for b in bursts)  # a fresh report above 5 dB: the short header
    if tx.student.adaptive:
        assert k_25 < k_10


def test_message_feedback_goes_stale():
    fb = MessageFeedback(initial_snr_db=3.0, alpha=0.5, stale_s=0.0)
    assert fb.snr_db() == 3.0 and not fb.fresh
    fb.report(20.0)
    assert fb.received == 1
    assert fb.snr_db() == 3.0  # stale_s = 0: every report is already stale


def test_rx_block_messages_and_summary(capsys):
    tb = gr.top_block()
    # the tail is longer than the RX block's chunk: every burst is decoded while the flowgraph runs, so its
    # messages reach the other blocks (what is left at the end is decoded in stop(), counted in the summary)
    tx = semantic_tx(images=24, images_per_burst=8, tail_samples=12_000)
    ch = channels.channel_model(noise_voltage_for_snr(15.0), 1500 / 1e6, 1.0, [1.0 + 0j], 11, False)
    rx = semantic_rx(images=24, report="-", report_extra={"snr_set_db": 15.0}, chunk_samples=8192)
    frames, snr, symbols, hist = (blocks.message_debug() for _ in range(4))
    tb.connect(tx, ch, rx)
    tb.msg_connect(rx, "snr", tx, "snr")
    tb.msg_connect(rx, "frames", frames, "store")
    tb.msg_connect(rx, "snr", snr, "store")
    tb.msg_connect(rx, "symbols", symbols, "store")
    tb.msg_connect(rx, "snr_history", hist, "store")
    tb.run()
    line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(line)
    assert summary == rx.summary
    assert summary["images"] == 24 and summary["received"] == 24 and summary["snr_set_db"] == 15.0
    assert abs(summary["snr_db_mean"] - 15.0) <= 1.0
    recs = [pmt.to_python(frames.get_message(i)) for i in range(frames.num_messages())]
    assert sorted(r["seq"] for r in recs) == list(range(24))
    assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in recs) / 24)
    r0 = recs[0]
    assert r0["class"] in rx.board.classes and r0["label"] == int(rx.board.labels[r0["seq"]])
    assert r0["image"] == r0["seq"]  # first_image 0
    assert abs(r0["cfo_hz"] - 1500) < 50
    reports = [pmt.to_python(snr.get_message(i)) for i in range(snr.num_messages())]
    assert [r["seq"] for r in reports] == [0, 8, 16]
    assert tx.reports_received >= 0  # delivered as messages (the TX may have finished before they came)
    meta, sym = pmt.to_python(symbols.get_message(0))
    assert meta["items"] == 8 and len(sym) == 8 * r0["n_symbols"]
    _, h = pmt.to_python(hist.get_message(hist.num_messages() - 1))
    assert len(h) == 3 and all(abs(v - 15.0) < 1.5 for v in h)


def test_rx_block_stops_an_endless_flowgraph_when_every_image_arrived():
    tb = gr.top_block()
    tx = semantic_tx(images=16, images_per_burst=8, repeat=0)  # sends until stopped
    rx = semantic_rx(images=16, stop_when_done=True, chunk_samples=4096)
    tb.connect(tx, channels.channel_model(noise_voltage_for_snr(20.0), 0.0, 1.0, [1.0 + 0j], 2, False), rx)
    tb.run()  # returns only because the RX block ended the flowgraph
    assert rx.summary["received"] == 16
    assert tx.link_tx.sent >= 16


def test_blocks_refuse_bad_parameters():
    with pytest.raises(ValueError, match="semantic_tx: images"):
        semantic_tx(images=0)
    with pytest.raises(ValueError, match="semantic_tx: .*images_per_burst"):
        semantic_tx(images=4, images_per_burst=1000)
    with pytest.raises(ValueError, match="semantic_rx: sample_rate_hz"):
        semantic_rx(sample_rate_hz=-1.0)
    with pytest.raises(TypeError, match="report_extra must be a dict"):
        semantic_rx(images=4, report_extra=[1, 2])
    with pytest.raises(ValueError, match="first-image/--images select"):
        semantic_rx(images=5, first_image=9_999)


def test_tx_block_takes_zmq_reports_from_sdr_tosc_rx():
    """feedback_bind: the reports `sdr-tosc rx --feedback` sends (the link's FeedbackSender) steer the encoder."""
    import socket
    import time

    from sdr_tosc.link import FeedbackSender

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tx = semantic_tx(images=4, images_per_burst=4, feedback_bind=f"tcp://127.0.0.1:{port}")
    try:
        with FeedbackSender(f"tcp://127.0.0.1:{port}") as fb:
            deadline = time.monotonic() + 10
            while tx.reports_received == 0 and time.monotonic() < deadline:
                fb.send(3, 22.0, 5.0)
                time.sleep(0.05)
                tx.link_tx.current_snr_db()  # drains the socket
        assert tx.reports_received >= 1
        assert tx.link_tx.current_snr_db() == pytest.approx(22.0)
    finally:
        tx.stop()
