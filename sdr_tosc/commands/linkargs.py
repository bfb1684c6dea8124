"""Flags shared by the link verbs (demo, tx, rx, measure, calibrate): student, data, loopback channel, radios."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def radio_kinds(transmit: bool = False, receive: bool = False) -> list[str]:
    """``--radio`` choices: the registered backends (sdr_tosc.radio.registry), not a table kept here."""
    from ..radio.registry import backend_kinds

    return backend_kinds(transmit=transmit, receive=receive)


def uri_help(kinds: list[str]) -> str:
    from ..radio.registry import backend_class

    return "; ".join(f"{k}: {backend_class(k).uri_help}" for k in kinds if backend_class(k).uri_help)


def add_student_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student and data")
    g.add_argument("--checkpoint", type=Path, help="student checkpoint (default: the shipped default student)")
    g.add_argument("--dataset", default="fashion-mnist", help="data set of the test images (default %(default)s)")
    g.add_argument("--images", type=int, default=200, help="number of test images to send (default %(default)s)")
    g.add_argument("--first-image", type=int, default=0, help="index of the first test image (default 0)")


def load_student(args: argparse.Namespace) -> Any:
    from ..semantic.checkpoint import load_checkpoint

    if args.checkpoint is not None:
        return load_checkpoint(args.checkpoint)
    from ..zoo import default_student_path

    return load_checkpoint(default_student_path())


def load_images(args: argparse.Namespace, student: Any | None = None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from ..semantic.datasets import load_dataset

    if args.images < 1:
        raise ValueError(f"--images must be >= 1, got {args.images}")
    data = load_dataset(args.dataset, "test")
    a, b = args.first_image, args.first_image + args.images
    if a < 0 or b > len(data):
        raise ValueError(f"--first-image/--images select {a}..{b - 1}, but the {data.name} test set has {len(data)} images")
    return data.images[a:b], data.labels[a:b], data.classes


def add_loopback_channel_args(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    g = p.add_argument_group(
        "simulated channel (loopback: TX radio -> 'sdr-tosc channel' process -> RX radio)",
        "The main knobs; every other impairment (IQ imbalance, phase noise, SCO, path loss ...) is set in a "
        "TOML file's [channel] table given with --channel-config (fields of ChannelConfig in "
        "sdr_tosc/channel/config.py).",
    )
    if not sweep:
        g.add_argument("--snr-db", type=float, default=None, help="simulated channel: SNR per burst at TX gain 0 dB (docs/design.md definition; default 20)")
    g.add_argument("--cfo-hz", type=float, default=None, help="carrier frequency offset (default 2000)")
    g.add_argument("--multipath", default=None, help="flat, two_ray, epa, eva, etu (default flat)")
    g.add_argument("--fading", choices=("none", "rayleigh", "rician"), default=None, help="block fading per burst")
    g.add_argument("--seed", type=int, default=None, help="channel random seed (default 1)")
    g.add_argument("--channel-config", type=Path, help="TOML file with a [channel] table of ChannelConfig fields")


def channel_settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """ChannelConfig fields: demo defaults < --channel-config < flags < ``extra``."""
    from ..channel.config import ChannelConfig
    from ..config import load_config, read_toml, to_dict

    defaults = {"snr_db": 20.0, "cfo_hz": 2000.0, "seed": 1}
    flags = {k: getattr(args, k, None) for k in ("snr_db", "cfo_hz", "multipath", "fading", "seed")}
    base = load_config(ChannelConfig, args.channel_config, None, section="channel") if args.channel_config else None
    merged = dict(defaults)
    if base is not None:
        raw = read_toml(args.channel_config)
        given = raw.get("channel", raw)  # only the keys the file sets override the defaults above
        merged.update({k: v for k, v in to_dict(base).items() if k in given})
        if base.snr_db is None:
            merged["snr_db"] = None
    merged.update({k: v for k, v in flags.items() if v is not None})
    merged.update(extra)
    cfg = ChannelConfig().replace(**{k: v for k, v in merged.items() if k != "taps"},
                                  **({"taps": merged["taps"]} if merged.get("taps") else {}))
    return {k: v for k, v in dataclass_fields(cfg).items()}


def dataclass_fields(cfg: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def add_link_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("link")
    g.add_argument("--batch-size", type=int, default=128,
                   help="images encoded per batch, with one fed-back SNR (default %(default)s)")
    g.add_argument("--images-per-burst", type=int, default=128,
                   help="images aggregated into one burst, 1..128: one preamble and header for all (default %(default)s)")
    g.add_argument("--robust-below-db", type=float, default=5.0,
                   help="fed-back SNR below which bursts carry the long low-SNR header (default %(default)s)")
    g.add_argument("--initial-snr-db", type=float, default=10.0,
                   help="SNR the transmitter assumes before the first feedback report (default %(default)s)")
    g.add_argument("--no-feedback", action="store_true", help="no SNR feedback: the encoder keeps --initial-snr-db")
    g.add_argument("--sample-rate-hz", type=float, default=1e6, help="sample rate (default %(default)g)")


def link_config(args: argparse.Namespace, **extra: Any) -> Any:
    from ..link import LinkConfig

    return LinkConfig(batch_size=args.batch_size, images_per_burst=args.images_per_burst,
                      robust_below_db=args.robust_below_db, initial_snr_db=args.initial_snr_db, **extra)


def modem_config(args: argparse.Namespace) -> Any:
    from ..modem import ModemConfig

    return ModemConfig(sample_rate_hz=args.sample_rate_hz)


# ------------------------------------------------------------------------------------------- radios
def add_radio_args(p: argparse.ArgumentParser, role: str) -> None:
    """Flags for one radio. ``role`` is ``tx``, ``rx`` (one radio) or ``pair`` (--tx-* and --rx-* radios)."""
    if role == "pair":
        g = p.add_argument_group(
            "radios (a TX and an RX radio on this host; without --tx-radio/--rx-radio the loopback simulator is used)")
        for side in ("tx", "rx"):
            kinds = radio_kinds(transmit=side == "tx", receive=side == "rx")
            g.add_argument(f"--{side}-radio", choices=kinds, help=f"{side.upper()} radio backend")
            g.add_argument(f"--{side}-uri", help=f"{side.upper()} radio address ({uri_help(kinds)})")
            g.add_argument(f"--{side}-opt", action="append", default=[], metavar="KEY=VALUE",
                           help=f"extra {side.upper()} radio setting (repeatable), e.g. xo_correction_hz=40000000")
    else:
        kinds = radio_kinds(transmit=role == "tx", receive=role == "rx")
        g = p.add_argument_group("radio")
        g.add_argument("--radio", choices=kinds, default="zmq", help="radio backend (default %(default)s)")
        g.add_argument("--uri", help=f"radio address ({uri_help(kinds)})")
        g.add_argument("--radio-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="extra radio setting (repeatable), e.g. xo_correction_hz=40000000")
        g.add_argument("--gnuradio", action="store_true",
                       help="the zmq peer is a GNU Radio flowgraph (flowgraphs/channel_model.grc, the ZMQ<->Pluto/USRP "
                            "bridges): raw complex64; " + ("tx binds --uri for the flowgraph's PULL source and waits up "
                            "to 30 s for it" if role == "tx" else "rx connects --uri to the flowgraph's PUSH sink"))
    g.add_argument("--center-freq-hz", type=float, help="RF centre frequency (default: the profile's)")
    g.add_argument("--tx-gain-db", dest="radio_tx_gain_db", type=float, help="TX gain (Pluto: -89.75..0)")
    g.add_argument("--rx-gain-db", dest="radio_rx_gain_db", type=float, help="RX gain (manual)")


def parse_opts(items: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} {item!r}: use KEY=VALUE, e.g. {flag} rx_buffer_samples=65536")
        out[key.strip()] = _auto(text.strip())
    return out


def _auto(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def open_radio_from(kind: str, uri: str | None, role: str, opts: dict[str, Any], args: argparse.Namespace) -> Any:
    """Open a radio for ``role`` (tx, rx, or trx for both ends on one radio) with the shared settings flags.

    The backend turns ``uri`` into its own settings (its ``from_uri``); ``opts`` (``--radio-opt``) win.
    """
    from ..radio.registry import open_from_uri

    settings: dict[str, Any] = {}
    if getattr(args, "sample_rate_hz", None) is not None:
        settings["sample_rate_hz"] = args.sample_rate_hz
    if args.center_freq_hz is not None:
        settings["center_freq_hz"] = args.center_freq_hz
    if args.radio_tx_gain_db is not None:
        settings["tx_gain_db"] = args.radio_tx_gain_db
    if args.radio_rx_gain_db is not None:
        settings["rx_gain_db"] = args.radio_rx_gain_db
    if getattr(args, "gnuradio", False):
        settings.update(gnuradio_settings(kind, role, args))
    settings.update(opts)
    return open_from_uri(kind, uri, role, **settings)


#: How long ``tx --gnuradio`` waits for the flowgraph to connect (and to take what is queued at exit).
GNURADIO_TX_TIMEOUT_S = 30.0


def gnuradio_settings(kind: str, role: str, args: argparse.Namespace) -> dict[str, Any]:
    """The zmq radio settings ``--gnuradio`` stands for (gr-zeromq sources connect, sinks bind)."""
    if kind != "zmq":
        raise ValueError(f"--gnuradio needs --radio zmq (the flowgraph drives the hardware), not --radio {kind}")
    if role == "tx":
        return {"mode": "raw", "bind": True, "timeout_s": GNURADIO_TX_TIMEOUT_S}
    return {"mode": "raw", "rx_pattern": "pull", "timeout_s": float(getattr(args, "timeout_s", 30.0))}


def radio_pair(args: argparse.Namespace, chan: dict[str, Any] | None):
    """Context manager -> ``(tx_radio, rx_radio, channel_or_None)``.

    With ``--tx-radio``/``--rx-radio`` it opens those two radios (both on this host); otherwise it starts the
    channel simulator with ``chan`` settings and opens two zmq radios around it.
    """
    import contextlib

    @contextlib.contextmanager
    def _cm():
        with contextlib.ExitStack() as stack:
            if args.tx_radio or args.rx_radio:
                if not (args.tx_radio and args.rx_radio):
                    raise ValueError("give both --tx-radio and --rx-radio (or neither, for the loopback simulator)")
                tx = stack.enter_context(open_radio_from(args.tx_radio, args.tx_uri, "tx",
                                                         parse_opts(args.tx_opt, "--tx-opt"), args))
                rx = stack.enter_context(open_radio_from(args.rx_radio, args.rx_uri, "rx",
                                                         parse_opts(args.rx_opt, "--rx-opt"), args))
                rx.rx(1024)  # start RX streaming before the first burst goes out
                yield tx, rx, None
                return
            from ..channel import ChannelSimulator
            from ..radio import open_radio

            ch = stack.enter_context(ChannelSimulator(**chan))
            settings = {"sample_rate_hz": args.sample_rate_hz}
            if args.center_freq_hz is not None:
                settings["center_freq_hz"] = args.center_freq_hz
            tx = stack.enter_context(open_radio("zmq", tx_endpoint=ch.in_endpoint,
                                                tx_gain_db=args.radio_tx_gain_db or 0.0, **settings))
            rx = stack.enter_context(open_radio("zmq", rx_endpoint=ch.out_endpoint, **settings))
            yield tx, rx, ch

    return _cm()
