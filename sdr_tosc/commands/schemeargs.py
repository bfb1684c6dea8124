"""``--scheme`` and the digital baselines' flags, shared by demo, tx, rx and measure."""

from __future__ import annotations

import argparse
from typing import Any


def add_scheme_args(p: argparse.ArgumentParser) -> None:
    from ..link.digital import MODULATIONS, SCHEME_CHOICES

    g = p.add_argument_group("schemes (semantic vs separate source/channel coding)")
    g.add_argument("--scheme", choices=SCHEME_CHOICES, default="semantic",
                   help="semantic (default); digital = both digital baselines (digital-latent: the student's latent "
                        "quantised to bits; digital-png: the image as PNG, classified by the teacher); both = all "
                        "three, taking turns batch by batch over the same channel")
    g.add_argument("--digital-modulation", choices=("auto", *MODULATIONS), default="auto",
                   help="digital schemes: adaptive from the fed-back SNR (default) or fixed; the K=7 rate-1/2 code "
                        "always. Both link ends must use the same")
    g.add_argument("--digital-thresholds-db", default="3.5,10,16", metavar="QPSK,16QAM,64QAM",
                   help="fed-back SNR from which each modulation is used with auto (default %(default)s)")
    g.add_argument("--latent-bits", type=int, default=4, help="digital-latent: bits per value (default 4)")
    g.add_argument("--teacher", default=None,
                   help="digital-png: teacher file that classifies the received images (default: the shipped "
                        "Fashion-MNIST EfficientNet-Lite0)")


def digital_config(args: argparse.Namespace) -> Any:
    from ..link.digital import DigitalLinkConfig

    try:
        t = tuple(float(v) for v in str(args.digital_thresholds_db).split(","))
    except ValueError:
        raise ValueError(f"--digital-thresholds-db must be three comma-separated SNRs in dB, got "
                         f"{args.digital_thresholds_db!r}") from None
    return DigitalLinkConfig(modulation=args.digital_modulation, thresholds_db=t, latent_bits=args.latent_bits)


def scheme_codecs(args: argparse.Namespace, student: Any, image_shape: tuple[int, int, int]) -> tuple[tuple[str, ...], dict[str, Any], Any]:
    """(scheme names, digital codecs, DigitalLinkConfig) from the flags."""
    from ..link.digital import load_default_teacher, make_codecs, schemes_for
    from ..semantic.teachers import load_teacher_file

    schemes = schemes_for(args.scheme)
    cfg = digital_config(args)
    if "digital-png" in schemes and not args.teacher and args.dataset != "fashion-mnist":
        raise ValueError(f"digital-png classifies with a teacher; the shipped one knows fashion-mnist only: give "
                         f"--teacher FILE (a teacher fine-tuned on {args.dataset}) or use --scheme digital-latent")
    loader = (lambda: load_teacher_file(args.teacher)) if args.teacher else load_default_teacher
    return schemes, make_codecs(schemes, student, loader, tuple(image_shape), cfg), cfg
