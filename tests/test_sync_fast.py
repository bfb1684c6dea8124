"""The detector's pass-by-pass evaluation and the helpers it and synchronise are built from."""

from __future__ import annotations

import numpy as np
import pytest

from sdr_tosc.channel.impairments import apply_cfo, awgn, complex_noise, place_bursts
from sdr_tosc.modem import FrameHeader, Modem, ModemConfig
from sdr_tosc.modem import sync as S


def test_segments_equal_a_gather_with_zeros_outside():
    x = (np.arange(50) * (1 + 0.5j)).astype(np.complex64)
    for starts in ([0, 5, 42], [-3, 5, 45], [-10, -20], [48], [], [10, 30]):
        st = np.array(starts, np.int64)
        want = np.array([[x[s + k] if 0 <= s + k < x.size else 0 for k in range(8)] for s in starts],
                        np.complex64).reshape(-1, 8)
        got = S.segments(x, st, 8)
        assert got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(S.segments(x[:3], np.array([0]), 8)[0], np.r_[x[:3], np.zeros(5)])


def test_cis_rotator_and_power():
    rng = np.random.default_rng(0)
    th = rng.uniform(-40, 40, 1000)
    assert np.abs(S.cis(th) - np.exp(1j * th)).max() < 1e-5
    cfo = np.array([-0.09, -1e-4, 0.0, 0.013, 0.1])
    for t0, n in ((-64, 777), (16, 528), (0, 1), (5, 33)):
        t = np.arange(t0, t0 + n)
        want = np.exp(-2j * np.pi * cfo[:, None] * t[None, :])
        got = S._rotator(cfo, t0, n)
        assert got.shape == (cfo.size, n) and got.dtype == np.complex64
        assert np.abs(got - want).max() < 1e-5
    z = (rng.standard_normal((7, 9)) + 1j * rng.standard_normal((7, 9))).astype(np.complex64)
    assert np.allclose(S.power(z), np.abs(z) ** 2, rtol=1e-6)
    assert np.allclose(S.power(z[:, 2:5]), np.abs(z[:, 2:5]) ** 2, rtol=1e-6)  # rows need not be contiguous
    assert np.allclose(S.power(z.astype(np.complex128)), np.abs(z) ** 2)


@pytest.mark.parametrize("max_cfo", [0.08, 0.03])
def test_detections_do_not_depend_on_the_pass_length(monkeypatch, max_cfo):
    """Windows are evaluated in passes of _CHUNK_WINDOWS; short passes (bursts straddling many pass borders)
    must find the same sync fields with the same CFO and metric as one pass over everything."""
    modem = Modem(ModemConfig(max_cfo_fraction=max_cfo))
    rng = np.random.default_rng(3)
    burst = modem.modulate((rng.standard_normal(300) + 1j * rng.standard_normal(300)).astype(np.complex64),
                           FrameHeader(seq=1))
    offs = [700 + i * (burst.size + 1111) for i in range(6)]
    x = place_bursts([burst] * 6, offs[-1] + burst.size + 900, offs)
    x = awgn(apply_cfo(x, 0.02e6, 1e6), -3.0, rng)
    x = np.concatenate([x, complex_noise(20_000, 1.0, rng)])
    thr = modem.config.detect_threshold
    ref = S.detect(x, modem.grid, thr, max_cfo)
    assert len(ref) >= 6
    for chunk in (1, 7, 64, 333):
        monkeypatch.setattr(S, "_CHUNK_WINDOWS", chunk)
        got = S.detect(x, modem.grid, thr, max_cfo)
        assert [d.window for d in got] == [d.window for d in ref]
        assert np.allclose([d.cfo for d in got], [d.cfo for d in ref], atol=1e-7)
        assert np.allclose([d.metric for d in got], [d.metric for d in ref], rtol=1e-5)


def test_short_buffers_give_no_detection_and_no_error():
    grid = Modem().grid
    for n in (0, 8, 63, 64 * 4 + 8, 64 * 5 + 7):
        assert S.detect(np.zeros(n, np.complex64), grid, 14.5, 0.08) == []
