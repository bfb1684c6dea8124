"""Flags shared by the link verbs (demo, tx, rx, measure, calibrate): student, data, loopback channel, radios."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

RADIO_KINDS = ("zmq", "pluto", "usrp")


def add_student_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student and data")
    g.add_argument("--checkpoint", type=Path, help="student checkpoint (default: the shipped default student)")
    g.add_argument("--dataset", default="fashion-mnist", help="data set of the test images (default %(default)s)")
    g.add_argument("--images", type=int, default=200, help="number of test images to send (default %(default)s)")
    g.add_argument("--first-image", type=int, default=0, help="index of the first test image (default 0)")


def load_student(args: argparse.Namespace) -> Any:
    from ..semantic.student import load_checkpoint

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
        g.add_argument("--snr-db", type=float, default=None, help="SNR per burst (DESIGN.md definition; default 10)")
    g.add_argument("--cfo-hz", type=float, default=None, help="carrier frequency offset (default 2000)")
    g.add_argument("--multipath", default=None, help="flat, two_ray, epa, eva, etu (default flat)")
    g.add_argument("--fading", choices=("none", "rayleigh", "rician"), default=None, help="block fading per burst")
    g.add_argument("--seed", type=int, default=None, help="channel random seed (default 1)")
    g.add_argument("--channel-config", type=Path, help="TOML file with a [channel] table of ChannelConfig fields")


def channel_settings(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """ChannelConfig fields: demo defaults < --channel-config < flags < ``extra``."""
    from ..channel.config import ChannelConfig
    from ..config import load_config, to_dict

    defaults = {"snr_db": 10.0, "cfo_hz": 2000.0, "seed": 1}
    flags = {k: getattr(args, k, None) for k in ("snr_db", "cfo_hz", "multipath", "fading", "seed")}
    base = load_config(ChannelConfig, args.channel_config, None, section="channel") if args.channel_config else None
    merged = dict(defaults)
    if base is not None:
        merged.update(to_dict(base))
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
    g.add_argument("--batch-size", type=int, default=16, help="images encoded per batch (default %(default)s)")
    g.add_argument("--initial-snr-db", type=float, default=10.0,
                   help="SNR the transmitter assumes before the first feedback report (default %(default)s)")
    g.add_argument("--no-feedback", action="store_true", help="no SNR feedback: the encoder keeps --initial-snr-db")
    g.add_argument("--sample-rate-hz", type=float, default=1e6, help="sample rate (default %(default)g)")


def link_config(args: argparse.Namespace, **extra: Any) -> Any:
    from ..link import LinkConfig

    return LinkConfig(batch_size=args.batch_size, initial_snr_db=args.initial_snr_db, **extra)


def modem_config(args: argparse.Namespace) -> Any:
    from ..modem import ModemConfig

    return ModemConfig(sample_rate_hz=args.sample_rate_hz)
