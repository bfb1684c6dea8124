"""``python -m sdr_tosc.radio.iiod_emulator [--port P]``: one emulated ADALM-Pluto (kept for old scripts).

The emulator lives in :mod:`sdr_tosc.radio.emulator`; ``sdr-tosc emulate pluto --count N`` serves N
radios on one simulated air. This entry point is ``sdr-tosc emulate pluto --count 1 --base-port P``.
"""

from __future__ import annotations

import sys

from .emulator import EmulatedPlutos

IIOD_PORT = 30431


def IiodEmulator(*, path_loss_db: float = 40.0, seed: int = 0, **kwargs) -> EmulatedPlutos:  # noqa: N802
    """One emulated Pluto hearing its own TX through ``path_loss_db`` of antenna isolation."""
    return EmulatedPlutos(1, isolation_db=path_loss_db, seed=seed, **kwargs)


def main(argv: list[str] | None = None) -> int:
    from ..cli import main as cli_main

    args = list(sys.argv[1:] if argv is None else argv)
    if "--port" not in args and "--base-port" not in args:
        args += ["--base-port", str(IIOD_PORT)]
    return cli_main(["emulate", "pluto", "--count", "1", *args])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
