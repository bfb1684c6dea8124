"""``sdr-tosc calibrate``: SNR vs TX gain, carrier offset and received power of a TX -> RX radio pair."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .common import add_json_flag, parse_range, write_result
from .linkargs import add_loopback_channel_args, add_radio_args, channel_settings, radio_pair

HELP = "calibrate a TX -> RX radio pair: SNR vs TX gain (fit), CFO in ppm, received power; one file per device"
EXAMPLES = """
  sdr-tosc calibrate                                   # loopback: simulator at 20 dB for TX gain 0, gains -30..0
  sdr-tosc calibrate --tx-radio pluto --tx-uri ip:192.168.2.1 --rx-radio pluto --rx-uri ip:192.168.3.1 \\
      --rx-gain-db 40 --sweep-tx-gain-db -70:-10:5 --frames 30            # 2.44 GHz (the profile's default)
  sdr-tosc emulate pluto --count 2 --ppm -18,11 --base-port 30431 &       # no Plutos? two emulated ones
  sdr-tosc calibrate --tx-radio pluto --tx-uri ip:127.0.0.1:30431 --rx-radio pluto --rx-uri ip:127.0.0.1:30432
  sdr-tosc calibrate --tx-radio usrp --tx-uri type=b200,serial=31A5D0B --rx-radio usrp --rx-uri type=b200 \\
      --center-freq-hz 2.45e9 --sweep-tx-gain-db 20:80:5

  With real radios a pre-flight runs first: the RX radio's TX powered down, the noise floor with the TX off,
  and the carrier offset from a tone (a Pluto TX is trimmed with xo_correction to cancel it). Points that
  clip the ADC or compress (data-aided SNR > 3 dB below the preamble estimate) are flagged and left out of
  the fit; the exit status is 1 when fewer than two linear points remain.
  Writes calibration/<tx-device>.json (entries keyed by centre frequency; schema in sdr_tosc/calibrate.py);
  `sdr-tosc measure --calibration FILE --target-snr-db 0:20:5` then picks the TX gain for each SNR.
  Frequencies: 2.44 GHz is ISM worldwide; 915 MHz (--center-freq-hz 915e6) only in the Americas.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_radio_args(p, "pair")
    p.add_argument("--sample-rate-hz", type=float, default=1e6, help="sample rate (default %(default)g)")
    p.add_argument("--sweep-tx-gain-db", type=lambda s: parse_range(s, "--sweep-tx-gain-db"), default=None,
                   metavar="START:STOP:STEP", help="TX gains to measure (default -30:0:5)")
    p.add_argument("--frames", type=int, default=20, help="calibration frames per gain (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("calibration"),
                   help="folder (or .json file) to write the calibration to (default %(default)s/)")
    add_loopback_channel_args(p)
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    from ..calibrate import calibrate, device_id, save_entry
    from ..link.loopback import channel_barrier
    from ..modem import Modem, ModemConfig

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    gains = args.sweep_tx_gain_db or parse_range("-30:0:5")
    hardware = bool(args.tx_radio or args.rx_radio)
    chan = None if hardware else channel_settings(args, sample_rate_hz=args.sample_rate_hz,
                                                  **({} if args.snr_db is not None else {"snr_db": 20.0}))
    modem = Modem(ModemConfig(sample_rate_hz=args.sample_rate_hz))
    header = (f"{'tx_gain_db':>10} {'found':>7} {'snr_db':>7} {'+-':>5} {'data-aided':>10} {'cfo_hz':>9} "
              f"{'rx_dBFS':>8} {'peak':>6}  flags")

    def show(pt) -> None:  # noqa: ANN001
        def f(v: float, w: int, d: int) -> str:
            return f"{v:{w}.{d}f}" if v is not None and math.isfinite(v) else f"{'-':>{w}}"
        print(f"{pt.tx_gain_db:10.2f} {pt.frames_ok:3d}/{pt.frames_sent:<3d} {f(pt.snr_db_mean, 7, 2)} "
              f"{f(pt.snr_db_std, 5, 2)} {f(pt.snr_data_aided_db, 10, 2)} {f(pt.cfo_hz_mean, 9, 1)} "
              f"{f(pt.rx_power_dbfs, 8, 1)} {f(pt.rx_peak_dbfs, 6, 1)}  {','.join(pt.flags)}")

    with radio_pair(args, chan) as (tx, rx, ch):
        pre = None
        if hardware:
            from ..calibrate import preflight

            pre = preflight(tx, rx, tx_gain_db=float(sorted(gains)[len(gains) // 2]))
            print(f"pre-flight: noise floor {pre['noise_floor_dbfs']:.1f} dBFS (peak {pre['noise_peak_dbfs']:.1f}) "
                  f"with the TX off; RX radio's TX powered: {pre['rx_tx_powered']}; carrier offset "
                  f"{pre.get('coarse_cfo_hz', math.nan):.0f} Hz (tone {pre.get('tone_snr_db', math.nan):.0f} dB)"
                  + (f", TX trimmed: xo_correction {pre['xo_before_hz']} -> {pre['tx_xo_correction_hz']} Hz"
                     if "tx_xo_correction_hz" in pre else ""))
        print(header)
        entry = calibrate(tx, rx, gains, modem=modem, frames_per_point=args.frames,
                          pack_gap_samples=500 if hardware else 0, progress=show,
                          after_send=(lambda: channel_barrier(ch, tx)) if ch is not None else None,
                          preflight_checks=pre if pre is not None else False)
        device = {**tx.settings(), "id": device_id(tx)}
        fc = float(tx.center_freq_hz)
        out = args.out if args.out.suffix == ".json" else args.out / f"{device['id']}.json"
    save_entry(out, device, fc, entry)
    fit = entry.get("fit")
    if fit:
        print(f"fit: snr_db = {fit['slope_db_per_db']:.3f} * tx_gain_db + {fit['intercept_db']:.2f} "
              f"(rms residual {fit['rms_residual_db']:.2f} dB over {fit['points_used']} points, "
              f"gains {fit['tx_gain_range_db'][0]:g}..{fit['tx_gain_range_db'][1]:g} dB)")
    else:
        print(f"no fit: {entry.get('fit_error')}", file=sys.stderr)
    for fp in entry["flagged_points"]:
        print(f"warning: TX gain {fp['tx_gain_db']:g} dB is {' and '.join(fp['flags'])}: left out of the fit "
              "(lower the RX gain or the top of the sweep to calibrate there)", file=sys.stderr)
    cfo = entry["cfo"]
    if cfo["ppm"] is not None:
        print(f"carrier offset: {cfo['hz']:.1f} Hz = {cfo['ppm']:.3f} ppm of {fc / 1e6:g} MHz")
    print(f"calibration written to {out}")
    write_result(args.json, {"file": str(out), "center_freq_hz": fc, **entry})
    return 0 if fit else 1
