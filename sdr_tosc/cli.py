"""The ``sdr-tosc`` command line: one sub-command per verb, each in ``sdr_tosc/commands/<verb>.py``.

Every verb module defines ``HELP`` (one line), ``EXAMPLES`` (shown under ``--help``),
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports (torch, radio libraries) happen inside
``run`` so ``sdr-tosc --help`` stays instant. :func:`main` is callable in-process for tests and returns the
exit status instead of exiting: 0 success, 1 a run-time error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from . import __version__

#: Verb name -> module under sdr_tosc.commands, in the order ``--help`` lists them.
VERBS: dict[str, str] = {
    "info": "info",
    "demo": "demo",
    "tx": "tx",
    "rx": "rx",
    "measure": "measure",
    "calibrate": "calibrate",
    "cache": "cache",
    "train": "train",
    "evaluate": "evaluate",
    "channel": "channel",
    "emulate": "emulate",
    "monitor": "monitor",
}

log = logging.getLogger("sdr_tosc")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` can return the status in-process.

    It also reads values such as ``-5:25:5`` or ``-3,0,3`` (SNR and gain ranges) as values, not options:
    ``--snr-db -5:25:5`` works without an ``=``.
    """

    def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d)[\d.:,eE+-]*$")

    def exit(self, status: int = 0, message: str | None = None):  # noqa: D401
        if message:
            (sys.stderr if status else sys.stdout).write(message)
        raise _Exit(status)


class _Exit(Exception):
    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sdr-tosc",
        description="Task-oriented semantic communication over software-defined radios.",
        epilog="Run 'sdr-tosc VERB --help' for a verb's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sdr-tosc {__version__}")
    _add_logging_flags(parser)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for verb, modname in VERBS.items():
        mod = importlib.import_module(f".commands.{modname}", __package__)
        p = sub.add_parser(
            verb,
            help=mod.HELP,
            description=mod.HELP,
            epilog="examples:\n" + mod.EXAMPLES.rstrip() if getattr(mod, "EXAMPLES", "") else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_logging_flags(p, suppress_default=True)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _add_logging_flags(p: argparse.ArgumentParser, suppress_default: bool = False) -> None:
    default = argparse.SUPPRESS if suppress_default else 0
    p.add_argument("-v", "--verbose", action="count", default=default, help="more log output (-vv for debug)")
    p.add_argument("-q", "--quiet", action="count", default=default, help="less log output (errors only)")


def _configure_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    level = max(logging.DEBUG, min(logging.CRITICAL, level))
    root = logging.getLogger("sdr_tosc")
    root.setLevel(level)
    if not any(getattr(h, "_sdr_tosc", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._sdr_tosc = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _Exit as exc:
        return exc.status
    if not args.verb:
        parser.print_help()
        return 2
    _configure_logging(getattr(args, "verbose", 0), getattr(args, "quiet", 0))
    try:
        from .commands.common import check_args  # noqa: PLC0415

        check_args(args, parser)  # every flag, endpoint and output path, before any work starts
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"sdr-tosc {args.verb}: interrupted", file=sys.stderr)
        return 130
    except _Exit as exc:
        return exc.status
    except (ValueError, TypeError, FileNotFoundError, PermissionError, TimeoutError, ConnectionError,
            ImportError, RuntimeError, OSError) as exc:
        if getattr(args, "verbose", 0) >= 2:
            log.exception("failed")
        print(f"sdr-tosc {args.verb}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
