"""Digital mode: CRC, convolutional code + Viterbi, QAM, and bits through the OFDM modem."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdr_tosc.channel.impairments import (
    awgn,
    fractional_delay,
    multipath,
    place_bursts,
    random_multipath_taps,
)
from sdr_tosc.modem import DigitalConfig, DigitalMode, Modem
from sdr_tosc.modem.digital import KIND_DIGITAL
from sdr_tosc.modem.fec import conv_encode, crc16, viterbi_decode
from sdr_tosc.modem.qam import qam_llr, qam_map


def test_crc16_check_value():
    assert crc16(b"123456789") == 0x29B1


def test_conv_code_and_viterbi():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, (8, 100)).astype(np.uint8)
    coded = np.stack([conv_encode(b) for b in bits])
    assert coded.shape == (8, 212)
    llr = 4.0 * (1.0 - 2.0 * coded)
    assert np.array_equal(viterbi_decode(llr), bits)
    assert np.array_equal(viterbi_decode(llr[0]), bits[0])
    # 6 % of coded bits flipped (hard decisions) are corrected
    flips = rng.random(llr.shape) < 0.06
    assert np.mean(viterbi_decode(np.where(flips, -llr, llr)) != bits) < 1e-2
    with pytest.raises(ValueError):
        viterbi_decode(np.zeros(7))


@pytest.mark.parametrize("mod", ["bpsk", "qpsk", "16qam", "64qam"])
def test_qam_unit_power_and_hard_roundtrip(mod):
    rng = np.random.default_rng(1)
    bps = {"bpsk": 1, "qpsk": 2, "16qam": 4, "64qam": 6}[mod]
    bits = rng.integers(0, 2, 600 * bps).astype(np.uint8)
    sym = qam_map(bits, mod)
    assert sym.dtype == np.complex64 and sym.size == 600
    all_pts = qam_map(((np.arange(2**bps)[:, None] >> np.arange(bps - 1, -1, -1)) & 1).ravel(), mod)
    assert np.mean(np.abs(all_pts) ** 2) == pytest.approx(1.0, rel=1e-5)
    assert np.array_equal((qam_llr(sym, 0.01, mod) < 0).astype(np.uint8), bits)


def test_digital_mode_through_modem_16qam_coded():
    rng = np.random.default_rng(2)
    modem, dm = Modem(), DigitalMode(DigitalConfig(modulation="16qam"))
    bits = rng.integers(0, 2, 3000).astype(np.uint8)
    iq = dm.modulate(modem, bits, seq=5)
    x = place_bursts([iq], iq.size + 1000, [400])
    x = multipath(fractional_delay(x, 0.4), random_multipath_taps(rng, 6))
    frames = [f for f in modem.demodulate(awgn(x, 14.0, rng)) if f.header_ok]
    assert frames[0].header.kind == KIND_DIGITAL
    assert np.array_equal(dm.decode_frame(frames[0], bits.size), bits)


def test_uncoded_qpsk_ber_within_1db_of_theory():
    """At the SNR where theory gives BER 1e-3 plus 1 dB, the measured BER must be <= 1e-3."""
    rng = np.random.default_rng(3)
    modem, dm = Modem(), DigitalMode(DigitalConfig(modulation="qpsk", coded=False))
    es_n0_db = 20 * math.log10(3.0902)  # Q(x) = 1e-3 at x = 3.0902, BER_QPSK = Q(sqrt(Es/N0))
    snr_db = es_n0_db - 10 * math.log10(modem.n_fft / modem.n_used) + 1.0  # per-sample SNR, +1 dB
    errors = total = 0
    for _ in range(6):
        bits = rng.integers(0, 2, 4000).astype(np.uint8)
        x = place_bursts([dm.modulate(modem, bits, seq=1)], 2000 + dm.n_symbols(4000) * 2, [500])
        f = [f for f in modem.demodulate(awgn(fractional_delay(x, 0.3), snr_db, rng)) if f.header_ok][0]
        errors += int(np.sum(dm.decode(f.symbols, f.noise_var, bits.size) != bits))
        total += bits.size
    assert errors / total <= 1e-3


def test_digital_bad_input():
    dm = DigitalMode()
    with pytest.raises(ValueError):
        dm.encode(np.array([0, 2, 1]))
    with pytest.raises(ValueError):
        dm.encode(np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="modulation"):
        DigitalConfig(modulation="8psk")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        dm.decode(np.zeros(3, np.complex64), 1.0, 100)
    with pytest.raises(ValueError, match="n_bits"):
        dm.decode(np.zeros(300, np.complex64), 1.0, 0)


@pytest.mark.parametrize(
    ("mod", "coded"), [("qpsk", True), ("16qam", True), ("64qam", False), ("bpsk", True)]
)
def test_bytes_roundtrip_and_cliff(mod, coded):
    rng = np.random.default_rng(4)
    modem, dm = Modem(), DigitalMode(DigitalConfig(modulation=mod, coded=coded))
    for size in (0, 1, 7, 300):
        data = rng.integers(0, 256, size).astype(np.uint8).tobytes()
        iq = dm.modulate_bytes(modem, data, seq=size)
        f = [f for f in modem.demodulate(np.concatenate([np.zeros(64, np.complex64), iq])) if f.header_ok][0]
        assert dm.decode_frame_bytes(f) == data
    # far below the waterfall: the CRC-32 reports failure instead of returning wrong bytes
    data = rng.integers(0, 256, 300).astype(np.uint8).tobytes()
    x = awgn(place_bursts([dm.modulate_bytes(modem, data, seq=1)], 20_000, [500]), 3.0, rng)
    for f in modem.demodulate(x):
        if f.header_ok:
            assert dm.decode_frame_bytes(f) in (data, None)
    with pytest.raises(TypeError):
        dm.encode_bytes("text")  # type: ignore[arg-type]


def test_zero_payload_is_whitened_and_decodes():
    """A run of zero bytes (padding) is scrambled before mapping: no giant OFDM peak, no clipping, decodes."""
    import numpy as np

    from sdr_tosc.channel.impairments import awgn, place_bursts
    from sdr_tosc.modem import DigitalConfig, DigitalMode, Modem

    modem, dm = Modem(), DigitalMode(DigitalConfig(modulation="16qam"))
    burst = dm.modulate_bytes(modem, bytes(600), seq=3)
    body = burst[modem.preamble_len:]
    papr = np.max(np.abs(body) ** 2) / np.mean(np.abs(body) ** 2)
    assert 10 * np.log10(papr) < 13.0  # unwhitened zeros: ~18 dB, clipped by the 10 dB back-off
    rng = np.random.default_rng(1)
    x = awgn(place_bursts([burst], burst.size + 600, [300]), 25.0, rng)
    (f,) = [f for f in modem.demodulate(x) if f.header_ok]
    assert dm.decode_frame_bytes(f) == bytes(600)


def test_viterbi_small_and_large_batch_loops_agree_bit_for_bit():
    """Headers (a few codewords) take the call-lean loop with a Python traceback, payload batches the per-step
    loop: the same decisions, ties (erased LLRs) included."""
    from sdr_tosc.modem import fec

    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, (24, 64)).astype(np.uint8)
    coded = np.stack([fec.conv_encode(r) for r in bits]).astype(float)
    llr = (1 - 2 * coded) + rng.normal(0, 0.6, coded.shape)
    llr[rng.random(llr.shape) < 0.1] = 0.0
    llr[::3] = np.round(llr[::3])  # many exact ties
    assert len(llr) > fec.SMALL_BATCH
    large = fec.viterbi_decode(llr)
    small = np.concatenate([fec.viterbi_decode(llr[i:i + 2]) for i in range(0, len(llr), 2)])
    single = np.stack([fec.viterbi_decode(r) for r in llr])
    assert np.array_equal(large, small) and np.array_equal(large, single)
    assert (large != bits).mean() < 0.02  # and it decodes (a tenth erased, noise sigma 0.6)
