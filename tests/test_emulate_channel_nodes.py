"""The channel simulator's ``--nodes N`` mode (one air for N radios), over its real sockets."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sdr_tosc.channel.nodes import FLAG_DISCARD, RX_ROUTE, TX_ROUTE
from sdr_tosc.radio import zmq as wire
from sdr_tosc.radio.emulator.air import _NodeChannel

pytestmark = pytest.mark.timeout(60)


def test_fan_out_by_sender_fan_in_per_receiver_and_per_link_settings():
    import zmq

    with _NodeChannel(2, snr_db=None, noise_dbfs=-300.0, gap_samples=0, gap_jitter_samples=0, seed=1) as ch:
        ch.set(link=[0, 1], path_loss_db=20.0)
        ch.set(link=[1, 1], path_loss_db=40.0)
        with pytest.raises(ValueError, match="does not exist"):
            ch.set(link=[0, 2], path_loss_db=1.0)
        ctx = zmq.Context.instance()
        push, dealer = ctx.socket(zmq.PUSH), ctx.socket(zmq.DEALER)
        for s in (push, dealer):
            s.setsockopt(zmq.LINGER, 0)
        push.connect(ch.in_endpoint)
        dealer.connect(ch.out_endpoint)
        try:
            a = np.full(1000, 1.0, np.complex64)
            b = np.full(1000, 1j, np.complex64)

            def send(src, dst, x, ts):
                hdr = wire.Header(wire.FLAG_TIMED, 0, ts, 1e6, 0.0, 0.0, x.size)
                push.send_multipart([TX_ROUTE.pack(src, dst), wire.encode_message(x, hdr)])

            send(0, 1, a, 100)  # radio 0 heard by radio 1 through 20 dB
            send(1, 1, b, 600)  # radio 1 hears itself through 40 dB, overlapping in time
            send(0, 1, a, 5000)  # for the discard check below
            send(7, 1, a, 0)  # no such node: dropped and counted, nothing else disturbed
            ch.wait_received(3000, timeout_s=10)

            def read(dst, n, flags=0):
                dealer.send_multipart([RX_ROUTE.pack(dst, flags), struct.pack("<Q", n)])
                assert dealer.poll(5000)
                return dealer.recv()

            _, y = wire.decode_message(read(1, 2000))
            assert np.allclose(y[100:600], 0.1, atol=1e-6)
            assert np.allclose(y[600:1100], 0.1 + 0.01j, atol=1e-6)  # the two links add up at the receiver
            assert np.allclose(y[1100:1600], 0.01j, atol=1e-6)
            assert np.allclose(y[:100], 0, atol=1e-6)
            assert read(1, 4000, FLAG_DISCARD) == b""  # skipped without computing: 2000..6000 consumed
            _, y = wire.decode_message(read(1, 100))
            assert np.allclose(y, 0, atol=1e-6)
            _, y0 = wire.decode_message(read(0, 2000))
            assert np.allclose(y0, 0, atol=1e-6)  # radio 0 heard nobody (its own link carried nothing)
            st = ch.stats()
            assert st["nodes"] == 2 and st["bad_messages"] == 1 and st["links"]["0->1"]["samples_in"] == 2000
        finally:
            push.close(0)
            dealer.close(0)
