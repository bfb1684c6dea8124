"""Modem benchmark: prints one JSON object with detection, SNR/CFO estimation, EVM, BER, false alarms, speed.

Usage::

    .venv/bin/python benchmarks/bench_modem.py [--quick] [--seed 0] [--json out.json] [--only speed,...]

``--only`` runs the named sections (detection, snr_estimate, air, cfo_estimate, sampling_clock_offset,
qpsk_ber, false_alarm, speed; ``cfo_estimate`` includes ``evm_30db_awgn_db``), e.g. ``--only speed``
for the speed figures alone (about 10 s).

Figures (full run, a few minutes on one core):

* ``detection``: header-CRC-ok rate vs SNR (-8 to 20 dB) for AWGN and multipath (exponential profile, delay
  spread within the cyclic prefix), payloads of 40 and 64 symbols, each trial with a random CFO in +-4 % of
  the sample rate, random integer and fractional timing (17-tap windowed-sinc fractional delay) and a random
  carrier phase; the header form is the one the link picks (long below 5 dB); and vs CFO at -5 dB.
* ``snr_estimate``: per-SNR bias and RMS error of ``RxFrame.snr_db`` (dB) from -8 to 30 dB, AWGN and multipath.
* ``air``: payload share of the air samples for one image per burst and for 64 aggregated images.
* ``cfo_estimate``: RMS CFO error at 20 dB in Hz and in % of the subcarrier spacing.
* ``evm_30db_awgn_db``: error vector of the equalised payload relative to the sent symbols.
* ``sampling_clock_offset``: EVM of a long payload with independent sample clocks (SCO tracking on/off)
  and with oscillator phase noise (phase tracking on/off).
* ``qpsk_ber``: uncoded QPSK BER vs SNR through the whole modem, theory, and the SNR gap at BER 1e-3.
* ``false_alarm``: noise-only buffers, 10 M samples of noise, with a DC offset and with a strong CW tone in
  band -> frames with a passing CRC (must be 0) and candidates with a failed CRC.
* ``speed``: modulate / demodulate samples per second on one core (BLAS threads pinned to 1).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import erfc  # noqa: E402

from sdr_tosc.channel.impairments import (  # noqa: E402
    apply_cfo,
    awgn,
    complex_noise,
    fractional_delay,
    multipath,
    phase_noise,
    place_bursts,
    random_multipath_taps,
    sample_clock_offset,
)
from sdr_tosc.modem import DigitalConfig, DigitalMode, FrameHeader, Modem, ModemConfig  # noqa: E402

FS = 1e6
SECTIONS = ("detection", "snr_estimate", "air", "cfo_estimate", "sampling_clock_offset", "qpsk_ber",
            "false_alarm", "speed")
CFO_MAX_HZ = 0.04 * FS


def _payload(rng: np.random.Generator, n: int) -> np.ndarray:
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)).astype(np.complex64)


def _rx(burst, rng, snr_db, cfo_hz, delay_spread):
    n_total = burst.size + 1200
    off = int(rng.integers(40, 1100))
    x = place_bursts([burst], n_total, [off])
    x = fractional_delay(x, float(rng.uniform(0, 1)), n_taps=17)
    if delay_spread:
        x = multipath(x, random_multipath_taps(rng, delay_spread))
    x = apply_cfo(x, cfo_hz, FS, phase_rad=float(rng.uniform(0, 2 * np.pi)))
    return awgn(x, snr_db, rng), off


def _ok(frames):
    return [f for f in frames if f.header_ok]


def _robust(snr_db):
    """The header form the link picks at this SNR (LinkConfig.robust_below_db = 5)."""
    return snr_db < 5.0


def bench_detection(modem, rng, trials, spread):
    out = {}
    snrs = (-8.0, -6.0, -5.0, -3.0, 0.0, 2.0, 5.0, 10.0, 20.0)
    for n_sym in (40, 64):
        for chan, ds in (("awgn", 0), (f"multipath_spread{spread}", spread)):
            rows = {}
            for snr in snrs:
                burst = modem.modulate(_payload(rng, n_sym), FrameHeader(seq=321, robust=_robust(snr)))
                n = 2 * trials if snr in (-8.0, -5.0) else max(trials // 2, 20)  # the target points: most trials
                hit = 0
                for _ in range(n):
                    x, off = _rx(burst, rng, snr, float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), ds)
                    ok = _ok(modem.demodulate(x))
                    # start within 3 samples (AWGN) or half a CP (multipath: the first tap may be weak)
                    tol = 3 if ds == 0 else modem.cp // 2
                    hit += int(len(ok) == 1 and ok[0].header.seq == 321 and abs(ok[0].start - off) <= tol)
                rows[f"{snr:g}dB"] = {"rate": hit / n, "trials": n, "header": "long" if _robust(snr) else "short"}
            out[f"{chan}_{n_sym}sym"] = rows
    by_cfo = {}
    burst = modem.modulate(_payload(rng, 40), FrameHeader(seq=321, robust=True))
    for cfo in np.linspace(-CFO_MAX_HZ, CFO_MAX_HZ, 9):
        n = max(trials // 4, 20)
        hit = 0
        for _ in range(n):
            x, off = _rx(burst, rng, -5.0, float(cfo), 0)
            ok = _ok(modem.demodulate(x))
            hit += int(len(ok) == 1 and abs(ok[0].start - off) <= 3)
        by_cfo[f"{cfo / 1e3:+.0f}kHz"] = hit / n
    out["awgn_-5dB_by_cfo"] = by_cfo
    return out


def bench_snr(modem, rng, trials, spread):
    out = {}
    for chan, ds in (("awgn", 0), (f"multipath_spread{spread}", spread)):
        rows = {}
        for snr in (-8.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0):
            burst = modem.modulate(_payload(rng, 512), FrameHeader(seq=1, robust=_robust(snr)))
            err = []
            for _ in range(trials):
                x, _ = _rx(burst, rng, snr, float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), ds)
                fr = _ok(modem.demodulate(x))
                if fr:
                    err.append(fr[0].snr_db - snr)
            e = np.array(err)
            rows[f"{snr:g}dB"] = {
                "bias_db": round(float(e.mean()), 3),
                "rms_db": round(float(np.sqrt(np.mean(e**2))), 3),
                "frames": int(e.size),
            }
        out[chan] = rows
    return out


def bench_air(modem):
    """Payload symbols per air sample (the numerology's ceiling is n_data / symbol length = 57.5 %)."""
    out = {}
    for images, k in ((1, 40), (16, 40), (64, 40), (64, 16), (64, 64)):
        for robust in (False, True):
            n = images * k
            out[f"{images}x{k}sym_{'long' if robust else 'short'}_header"] = round(
                n / modem.burst_length(n, robust=robust), 4)
    out["ceiling"] = round(modem.n_data / modem.sym_len, 4)
    return out


def bench_cfo_evm(modem, rng, trials):
    p = _payload(rng, 1024)
    burst = modem.modulate(p, FrameHeader(seq=2))
    err = []
    for _ in range(trials):
        cfo = float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ))
        x, _ = _rx(burst, rng, 20.0, cfo, 0)
        f = _ok(modem.demodulate(x))
        if f:
            err.append(f[0].cfo_hz - cfo)
    e = np.array(err)
    rms = float(np.sqrt(np.mean(e**2)))
    evm = []
    for _ in range(trials):
        x, _ = _rx(burst, rng, 30.0, float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), 0)
        f = _ok(modem.demodulate(x))
        if f:
            evm.append(np.mean(np.abs(f[0].symbols - p) ** 2) / np.mean(np.abs(p) ** 2))
    return (
        {
            "snr_db": 20.0,
            "rms_error_hz": round(rms, 2),
            "max_abs_error_hz": round(float(np.max(np.abs(e))), 2),
            "rms_error_pct_of_subcarrier": round(100 * rms / modem.subcarrier_spacing_hz, 3),
            "frames": int(e.size),
        },
        round(float(10 * np.log10(np.mean(evm))), 2),
    )


def bench_sco(modem, rng, trials):
    """Independent sample clocks: EVM of a long payload at 30 dB with and without SCO tracking."""
    p = _payload(rng, 4096)
    burst = modem.modulate(p, FrameHeader(seq=3))
    off = Modem(ModemConfig(sample_rate_hz=FS, max_sco_ppm=0.0))
    out = {}
    for ppm in (10.0, 40.0, -80.0):
        ev, ev0, err = [], [], []
        for _ in range(trials):
            x = place_bursts([burst], burst.size + 1000, [int(rng.integers(40, 900))])
            x = apply_cfo(sample_clock_offset(x, ppm), float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), FS)
            x = awgn(x, 30.0, rng)
            for m, acc in ((modem, ev), (off, ev0)):
                f = _ok(m.demodulate(x))
                if f:
                    acc.append(np.mean(np.abs(f[0].symbols - p) ** 2))
                    if m is modem:
                        err.append(f[0].sco_ppm - ppm)
        out[f"{ppm:+g}ppm"] = {
            "evm_db_tracked": round(float(10 * np.log10(np.mean(ev))), 2),
            "evm_db_untracked": round(float(10 * np.log10(np.mean(ev0))), 2),
            "sco_rms_error_ppm": round(float(np.sqrt(np.mean(np.square(err)))), 2),
        }
    out["note"] = "payload 4096 symbols (9.3k samples), 30 dB AWGN, random CFO in +-40 kHz"
    # oscillator phase noise (Wiener, 10 Hz linewidth: ~0.3 rad random walk over the burst)
    linear = Modem(ModemConfig(sample_rate_hz=FS, phase_tracking_window=0))
    ev, ev0 = [], []
    for _ in range(trials):
        x = place_bursts([burst], burst.size + 1000, [int(rng.integers(40, 900))])
        x = phase_noise(apply_cfo(x, float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), FS), 10.0, FS, rng)
        x = awgn(x, 30.0, rng)
        for m, acc in ((modem, ev), (linear, ev0)):
            f = _ok(m.demodulate(x))
            if f:
                acc.append(np.mean(np.abs(f[0].symbols - p) ** 2))
    out["phase_noise_10hz_linewidth"] = {
        "evm_db_tracked": round(float(10 * np.log10(np.mean(ev))), 2),
        "evm_db_linear_phase_only": round(float(10 * np.log10(np.mean(ev0))), 2),
    }
    return out


def bench_ber(modem, rng, n_bits):
    dm = DigitalMode(DigitalConfig(modulation="qpsk", coded=False))
    offset_db = 10 * math.log10(modem.n_fft / modem.n_used)  # per-subcarrier Es/N0 = SNR + this
    rows = {}
    curve = []
    for snr in (2.0, 4.0, 6.0, 8.0, 9.0, 10.0, 11.0):
        err = tot = 0
        while tot < n_bits:
            bits = rng.integers(0, 2, 8000).astype(np.uint8)
            x, _ = _rx(
                dm.modulate(modem, bits, seq=1), rng, snr, float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), 0
            )
            f = _ok(modem.demodulate(x))
            if not f:
                err += bits.size // 2  # a lost frame counts as half its bits wrong
            else:
                err += int(np.sum(dm.decode(f[0].symbols, f[0].noise_var, bits.size) != bits))
            tot += bits.size
        es_n0 = 10 ** ((snr + offset_db) / 10)
        theory = 0.5 * erfc(math.sqrt(es_n0 / 2))
        rows[f"{snr:g}dB"] = {"ber": err / tot, "theory": float(theory), "bits": tot}
        curve.append((snr, err / tot))
    # SNR where the measured and the theoretical BER cross 1e-3 (log-linear interpolation)
    s = np.array([c[0] for c in curve])
    b = np.log10(np.maximum([c[1] for c in curve], 1e-7))
    snr_meas = float(np.interp(-3.0, b[::-1], s[::-1]))
    x_q = 3.0902323  # Q(x) = 1e-3
    snr_theory = 20 * math.log10(x_q) - offset_db
    coded = {}
    for mod, snr in (("qpsk", 3.0), ("16qam", 9.0)):
        dmc = DigitalMode(DigitalConfig(modulation=mod))
        err = tot = 0
        for _ in range(max(1, n_bits // 16000)):
            bits = rng.integers(0, 2, 8000).astype(np.uint8)
            x, _ = _rx(
                dmc.modulate(modem, bits, seq=1), rng, snr, float(rng.uniform(-CFO_MAX_HZ, CFO_MAX_HZ)), 0
            )
            f = _ok(modem.demodulate(x))
            err += bits.size // 2 if not f else int(np.sum(dmc.decode_frame(f[0], bits.size) != bits))
            tot += bits.size
        coded[f"{mod}_k7_r1/2_{snr:g}dB"] = {"ber": err / tot, "bits": tot}
    return {
        "uncoded_qpsk": rows,
        "snr_at_ber_1e-3_db": round(snr_meas, 2),
        "theory_snr_at_ber_1e-3_db": round(snr_theory, 2),
        "gap_db": round(snr_meas - snr_theory, 2),
        "note": "SNR per sample (project definition); per-subcarrier Es/N0 = SNR + 10log10(64/50) dB",
        "coded": coded,
    }


def bench_false_alarm(modem, rng, n_buffers):
    ok = found = 0
    for _ in range(n_buffers):
        fr = modem.demodulate(complex_noise(4096, 1.0, rng))
        found += len(fr)
        ok += len(_ok(fr))
    cases = {}
    n = 10_000_000
    t = np.arange(1_000_000)
    for name, extra in (
        ("noise", None),
        ("noise_dc_offset", lambda i: np.complex64(2.0 + 1.0j)),
        # a CW tone 10 dB above the noise, on a sync tone's frequency plus a CFO-like offset
        ("noise_cw_tone_in_band", lambda i: (np.sqrt(10) * np.exp(2j * np.pi * (0.125 + 0.0137) * (t + i))
                                              ).astype(np.complex64)),
    ):
        c_ok = c_fail = 0
        for i in range(0, n, 1_000_000):
            x = complex_noise(1_000_000, 1.0, rng)
            if extra is not None:
                x = (x + extra(i)).astype(np.complex64)
            fr = modem.demodulate(x)
            c_ok += len(_ok(fr))
            c_fail += len(fr) - len(_ok(fr))
        cases[name] = {"samples": n, "frames_with_crc_ok": c_ok, "candidates_with_crc_failed": c_fail}
    return {
        "noise_buffers": n_buffers,
        "buffer_samples": 4096,
        "short_buffers_frames_with_crc_ok": ok,
        "short_buffers_candidates_with_crc_failed": found - ok,
        **cases,
        "frames_with_crc_ok": ok + sum(c["frames_with_crc_ok"] for c in cases.values()),
    }


def _best_time(fn, repeat):
    """Best (wall perf_counter, CPU process_time) seconds of ``repeat`` calls."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu


def bench_speed(modem, rng):
    """Samples per second: wall clock (perf_counter) and CPU time (process_time, excludes waiting for a
    core on a shared host)."""
    out = {"modulate_samples_per_s": {}, "demodulate_samples_per_s": {}}

    def rate(section, key, n_samples, times):
        out[section][key] = round(n_samples / times[0])
        out[section][key + "_cpu_time"] = round(n_samples / times[1])

    for n in (64, 1024, 8191):
        p = _payload(rng, n)
        h = FrameHeader(seq=1)
        reps = 200 if n < 8191 else 20
        t = _best_time(lambda p=p, h=h, reps=reps: [modem.modulate(p, h) for _ in range(reps)], 5)
        rate("modulate_samples_per_s", f"payload_{n}", reps * modem.burst_length(n), t)
    x = complex_noise(10_000_000, 1.0, rng)
    rate("demodulate_samples_per_s", "noise_only_10M", x.size, _best_time(lambda: modem.demodulate(x), 3))
    # a link burst: 64 images of 40 symbols (2560 symbols, 5264 samples with the short header)
    burst = modem.modulate(_payload(rng, 2560), FrameHeader(seq=1, items=64))
    for duty, name in ((0.1, "frames_10pct_duty"), (0.9, "frames_back_to_back")):
        n_frames = 200
        gap = int(burst.size * (1 - duty) / duty)
        n_total = n_frames * (burst.size + gap)
        offs = [i * (burst.size + gap) + gap // 2 for i in range(n_frames)]
        buf = awgn(place_bursts([burst] * n_frames, n_total, offs), 15.0, rng)
        frames = modem.demodulate(buf)
        assert sum(f.header_ok for f in frames) == n_frames, "speed buffer not fully decoded"
        t = _best_time(lambda b=buf: modem.demodulate(b), 3)
        rate("demodulate_samples_per_s", name, buf.size, t)
        out[f"demodulate_us_per_frame_{name}"] = round(1e6 * t[0] / n_frames, 1)
    out["note"] = (
        "one core (BLAS threads = 1), best of repeats, payload symbols complex Gaussian; frames carry 64 "
        f"images x 40 symbols ({burst.size} samples). The host is shared: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
        "cores at the end of the run, so wall-clock rates understate an idle core; *_cpu_time rates use "
        "process_time"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small Monte Carlo counts (about 30 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the JSON here")
    ap.add_argument("--only", help=f"comma-separated sections to run (default all): {', '.join(SECTIONS)}")
    args = ap.parse_args(argv)
    only = set(SECTIONS) if not args.only else {w.strip() for w in args.only.split(",") if w.strip()}
    if only - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {sorted(only - set(SECTIONS))}; choose from {', '.join(SECTIONS)}")
    q = args.quick
    rng = np.random.default_rng(args.seed)
    modem = Modem(ModemConfig(sample_rate_hz=FS))
    spread = modem.cp - 4
    t0 = time.perf_counter()
    result = {
        "config": {
            "sample_rate_hz": FS,
            "fft_size": modem.n_fft,
            "cp_len": modem.cp,
            "used_subcarriers": int(modem.n_used),
            "data_subcarriers": int(modem.n_data),
            "backoff_db": modem.config.backoff_db,
            "burst_samples_for_1024_symbols": modem.burst_length(1024),
            "preamble_samples": modem.preamble_len,
            "header_symbols": {"short": modem.header_symbols(False), "long": modem.header_symbols(True)},
            "multipath": f"exponential PDP, 10 dB decay, Rayleigh taps at 0..{spread} samples (cp_len - 4)",
        }
    }
    if "detection" in only:
        result["detection"] = bench_detection(modem, rng, 60 if q else 400, spread)
    if "snr_estimate" in only:
        result["snr_estimate"] = bench_snr(modem, rng, 20 if q else 100, spread)
    if "air" in only:
        result["air"] = bench_air(modem)
    if "cfo_estimate" in only:
        result["cfo_estimate"], result["evm_30db_awgn_db"] = bench_cfo_evm(modem, rng, 20 if q else 100)
    if "sampling_clock_offset" in only:
        result["sampling_clock_offset"] = bench_sco(modem, rng, 5 if q else 20)
    if "qpsk_ber" in only:
        result["qpsk_ber"] = bench_ber(modem, rng, 40_000 if q else 400_000)
    if "false_alarm" in only:
        result["false_alarm"] = bench_false_alarm(modem, rng, 200 if q else 5000)
    if "speed" in only:
        result["speed"] = bench_speed(modem, rng)
    result["runtime_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
