"""Pure-numpy impairments and the timeline engine (no sockets)."""

from __future__ import annotations

import numpy as np
import pytest

from sdr_tosc.channel import impairments as imp
from sdr_tosc.channel.config import ChannelConfig
from sdr_tosc.channel.core import ChannelCore

FS = 1e6


def tone(n: int, f_hz: float = 10e3, amp: float = 0.5, fs: float = FS) -> np.ndarray:
    return (amp * np.exp(2j * np.pi * f_hz / fs * np.arange(n))).astype(np.complex64)


def test_awgn_follows_the_one_snr_definition():
    rng = np.random.default_rng(0)
    x = tone(200_000, amp=0.3)
    y = imp.awgn(x, 7.0, rng)
    nv = imp.noise_variance_for_snr(imp.signal_power(x), 7.0)
    assert y.dtype == np.complex64
    assert nv == pytest.approx(0.09 / 10**0.7, rel=1e-4)
    measured = np.mean(np.abs(y - x) ** 2)
    assert measured == pytest.approx(nv, rel=0.02)
    # a buffer with zero gaps: the burst's power is the reference, noise lands on every sample
    buf = imp.place_bursts([x[:1000]], 5000, [2000])
    assert imp.burst_power(buf) == pytest.approx(0.09, rel=1e-5)
    w = imp.awgn(buf, 10.0, rng) - buf
    assert np.mean(np.abs(w[:2000]) ** 2) == pytest.approx(0.009, rel=0.1)
    with pytest.raises(ValueError, match="all zeros"):
        imp.awgn(np.zeros(10, np.complex64), 10.0, rng)


def test_buffer_helpers_keep_length_and_share_the_streaming_kernels():
    rng = np.random.default_rng(3)
    x = tone(4000, f_hz=50e3)
    y = imp.fractional_delay(x, 3.3, n_taps=33)
    assert y.size == x.size
    np.testing.assert_allclose(y, imp.delay(x, 3.3)[: x.size], atol=1e-6)
    s = imp.sample_clock_offset(x, 50.0)
    assert s.size == x.size
    np.testing.assert_allclose(s[100:3000], imp.resample_sco(x, 50.0, n_taps=17)[100:3000], atol=1e-6)
    np.testing.assert_allclose(s[100:3000], imp.resample_sco(x, 50.0)[100:3000], atol=5e-3)  # Lagrange
    h = imp.random_multipath_taps(rng, 6)
    assert h.size == 7 and np.sum(np.abs(h) ** 2) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(imp.multipath(x, h), np.convolve(x, h)[: x.size], atol=1e-5)
    g = imp.flat_fading(200_000, "rician", rng, rician_k_db=0.0)
    assert np.mean(np.abs(g) ** 2) == pytest.approx(1.0, rel=0.02)
    assert np.mean(g).real == pytest.approx(np.sqrt(0.5), abs=0.01)


def test_phase_rotator_is_continuous_across_blocks():
    x = np.ones(10_000, np.complex64)
    rot = imp.PhaseRotator(1234.5, FS)
    y = np.concatenate([rot(x[:3000]), rot(x[3000:3001]), rot(x[3001:])])
    ref = imp.apply_cfo(x, 1234.5, FS)
    np.testing.assert_allclose(y, ref, atol=2e-4)


def test_fractional_delay_matches_analytic_tone():
    f = 50e3
    x = tone(4000, f_hz=f)
    y = imp.delay(x, 3.3)
    assert y.size >= x.size + 3
    k = np.arange(200, 3000)
    expected = 0.5 * np.exp(2j * np.pi * f / FS * (k - 3.3))
    np.testing.assert_allclose(y[k], expected, atol=2e-3)
    np.testing.assert_array_equal(imp.delay(x, 5)[:5], 0)


def test_sco_scales_tone_frequency_and_length():
    x = tone(100_000, f_hz=100e3)
    y = imp.resample_sco(x, 100.0)  # receiver clock 100 ppm fast: tone appears 100 ppm lower
    assert y.size == pytest.approx(x.size * (1 + 100e-6), abs=2)
    ph = np.unwrap(np.angle(y[1000:90_000].astype(np.complex128)))
    f_est = np.polyfit(np.arange(ph.size), ph, 1)[0] / (2 * np.pi) * FS
    assert f_est == pytest.approx(100e3 / (1 + 100e-6), rel=2e-6)


def test_profiles_are_normalised_and_sample_spaced():
    d, p = imp.profile_taps("epa", 1e6)
    assert d.tolist() == [0] and p.sum() == pytest.approx(1.0)  # narrowband: flat
    d, p = imp.profile_taps("etu", 30.72e6)
    assert d[-1] == round(5000e-9 * 30.72e6) and p.sum() == pytest.approx(1.0) and d.size > 5
    with pytest.raises(ValueError, match="unknown multipath profile"):
        imp.profile_taps("moon", 1e6)


def test_rayleigh_and_rician_mean_power_one_and_rician_less_deep_fades():
    rng = np.random.default_rng(3)
    d, p = imp.profile_taps("eva", 15.36e6)
    ray = np.array([imp.draw_taps(d, p, "rayleigh", rng).energy for _ in range(4000)])
    ric = np.array([imp.draw_taps(np.array([0]), np.array([1.0]), "rician", rng, 10.0).energy for _ in range(4000)])
    flat_ray = np.array([imp.draw_taps(np.array([0]), np.array([1.0]), "rayleigh", rng).energy for _ in range(4000)])
    assert ray.mean() == pytest.approx(1.0, rel=0.06)
    assert ric.mean() == pytest.approx(1.0, rel=0.06)
    assert np.mean(ric < 0.1) < 0.3 * np.mean(flat_ray < 0.1)  # K = 10 dB: deep fades rare
    static = imp.draw_taps(d, p, "none", rng)
    assert static.energy == pytest.approx(1.0)


def test_custom_taps_convolution():
    d, g = imp.custom_taps([1, 0, 0.5j])
    tdl = imp.TapDelayLine(d, g)
    x = np.zeros(10, np.complex64)
    x[0] = 1
    y = imp.apply_taps(x, tdl)
    np.testing.assert_allclose(y[:3], np.array([1, 0, 0.5j]) / np.sqrt(1.25), atol=1e-6)
    with pytest.raises(ValueError, match="all zero"):
        imp.custom_taps([0, 0])


def test_iq_imbalance_image_rejection():
    x = tone(8192, f_hz=FS * 256 / 8192, amp=0.5)
    y = imp.iq_imbalance(x, 1.0, 5.0)
    spec = np.abs(np.fft.fft(y)) ** 2
    irr = 10 * np.log10(spec[256] / spec[-256])
    assert irr == pytest.approx(imp.image_rejection_db(1.0, 5.0), abs=0.05)
    assert 20 < irr < 30


def test_wiener_phase_variance():
    rng = np.random.default_rng(1)
    ph = np.stack([imp.wiener_phase(1000, 100.0, FS, rng) for _ in range(400)])
    assert np.var(ph[:, -1]) == pytest.approx(2 * np.pi * 100.0 / FS * 1000, rel=0.2)


def test_path_loss_laws():
    assert imp.log_distance_path_loss_db(10.0, 2.0) == pytest.approx(20.0)
    assert imp.free_space_path_loss_db(1.0, 2.4e9) == pytest.approx(40.05, abs=0.05)


# -- the timeline engine ---------------------------------------------------------------------------------


def test_core_reports_true_snr_with_multipath_and_gaps_of_noise():
    core = ChannelCore(ChannelConfig(sample_rate_hz=15.36e6, snr_db=12.0, multipath="eva", seed=5,
                                     gap_samples=3000, gap_jitter_samples=0))
    x = tone(20_000, f_hz=300e3, fs=15.36e6)
    rec = core.push(x)
    assert rec["start"] == 3000 and rec["snr_db"] == pytest.approx(12.0, abs=1e-6)
    y, ts = core.read(40_000)
    assert ts == 0 and y.dtype == np.complex64
    noise = y[:2900]
    assert np.mean(np.abs(noise) ** 2) == pytest.approx(rec["noise_var"], rel=0.1)
    burst = y[3000 + 100 : 3000 + 19_000]
    p = np.mean(np.abs(burst) ** 2) - rec["noise_var"]
    assert 10 * np.log10(p / rec["noise_var"]) == pytest.approx(12.0, abs=0.5)


def test_core_is_reproducible_from_seed_and_differs_across_seeds():
    def run(seed):
        core = ChannelCore(ChannelConfig(snr_db=5, cfo_hz=1000, fading="rayleigh", multipath="two_ray", seed=seed))
        core.push(tone(1000))
        return core.read(5000)[0]

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))


def test_core_timed_continuation_and_late_bursts():
    core = ChannelCore(ChannelConfig(snr_db=60, gap_samples=10, gap_jitter_samples=0))
    a = core.push(tone(100), timestamp=500)
    core.push(tone(100), start_of_burst=False)  # continues at 600 without a gap
    assert a["start"] == 500 and core.truth[-1]["length"] == 200
    y, _ = core.read(1000)
    assert np.all(np.abs(y[505:695]) > 0.45) and np.all(np.abs(y[710:990]) < 0.05)
    late = core.push(tone(10), timestamp=100)  # the reader is already at 1000
    assert late["late"] and late["start"] == 1000
    core.push(tone(10), start_of_burst=False)
    core.read(100)
    core.push(tone(10), start_of_burst=False)  # reader passed the end: an underflow
    assert core.stats["underflows"] == 1 and core.stats["late_bursts"] == 1


def test_core_tx_gain_and_path_loss_move_snr_like_a_real_radio():
    core = ChannelCore(ChannelConfig(snr_db=20.0, seed=0))
    assert core.push(tone(1000))["snr_db"] == pytest.approx(20.0)
    assert core.push(tone(1000), tx_gain_db=-6.0)["snr_db"] == pytest.approx(14.0)
    core.set(distance_m=10.0)  # +20 dB path loss
    assert core.push(tone(1000))["snr_db"] == pytest.approx(0.0, abs=1e-6)
    core.set(snr_db=None, noise_dbfs=-40.0, distance_m=None, tx_gain_db=-10)
    rec = core.push(tone(1000, amp=1.0))
    assert rec["noise_var"] == pytest.approx(1e-4) and rec["snr_db"] == pytest.approx(30.0, abs=1e-3)


def test_core_burst_drops_dc_and_rx_front_end():
    core = ChannelCore(ChannelConfig(snr_db=40, burst_drop_prob=1.0, dc_offset_i=0.1, dc_offset_q=-0.05,
                                     iq_imbalance_db=0.5, phase_noise_hz=10.0, gap_jitter_samples=0))
    rec = core.push(tone(1000))
    assert rec["dropped"]
    y, _ = core.read(5000)
    assert np.abs(y).max() < 0.2  # the burst never arrived
    assert np.mean(y) == pytest.approx(complex(0.1, -0.05), abs=0.01)


def test_config_validation_names_the_setting():
    with pytest.raises(ValueError, match="cfo_hz"):
        ChannelConfig(sample_rate_hz=1e6, cfo_hz=6e5)
    with pytest.raises(ValueError, match="multipath"):
        ChannelConfig(multipath="mars")
    with pytest.raises(ValueError, match="unknown channel setting"):
        ChannelConfig().replace(snr=3)
    with pytest.raises(ValueError, match="custom"):
        ChannelConfig(multipath="custom")
    assert ChannelConfig().replace(taps="1,0.5j").multipath == "custom"


def test_timeline_is_exact_across_growth_and_compaction():
    """Many chunks in, odd-sized reads out: with no noise the output is the input, sample for sample."""
    core = ChannelCore(ChannelConfig(snr_db=200.0, gap_samples=0, gap_jitter_samples=0))
    core.timeline = type(core.timeline)(0.0, capacity=1024)  # tiny, so it grows and compacts a lot
    rng = np.random.default_rng(2)
    x = (0.5 * np.exp(2j * np.pi * rng.random(50_000))).astype(np.complex64)
    out, first = [], True
    for a in range(0, x.size, 3001):
        core.push(x[a : a + 3001], start_of_burst=first)
        first = False
        while core.timeline.pos + 1777 <= core.last_end:
            out.append(core.read(1777)[0])
    out.append(core.read(core.last_end - core.timeline.pos)[0])
    np.testing.assert_allclose(np.concatenate(out), x, atol=1e-6)


def test_noise_stream_is_gaussian_white_and_reproducible():
    from sdr_tosc.channel.core import NoiseStream

    a = NoiseStream(5, block=1000, prefetch=True)
    w = np.concatenate([a.take(777), a.take(5000), a.take(3)])
    a.close()
    b = NoiseStream(5, block=1000, prefetch=False)  # same block size, no thread, different slicing
    np.testing.assert_array_equal(w, b.take(5780))  # same stream whatever the block sizes and threads
    big = NoiseStream(1, prefetch=False).take(400_000)
    assert np.var(big.real) == pytest.approx(1.0, rel=0.02) and np.var(big.imag) == pytest.approx(1.0, rel=0.02)
    assert abs(np.mean(big.real * big.imag)) < 0.01 and abs(np.mean(big[1:] * np.conj(big[:-1]))) < 0.01
    kurt = np.mean(big.real**4) / np.var(big.real) ** 2
    assert kurt == pytest.approx(3.0, abs=0.05)
