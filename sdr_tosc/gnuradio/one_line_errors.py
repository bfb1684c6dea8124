"""Imported by the generated scripts of flowgraphs that use the sdr-tosc blocks: a bad setting ends them
with one line naming what was wrong, not a traceback.

GRC writes the scripts' ``main()`` without an error handler; importing this module (the blocks' GRC files
and the flowgraphs' import blocks do) sets :data:`sys.excepthook` so that a :class:`ValueError` or
:class:`OSError` that ends the script (a bad ``--taps``, an image range past the data set, a port in use)
prints ``SCRIPT: error: MESSAGE`` on stderr (exit status 1). Every other exception keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _hook(etype, value, tb, _previous=sys.excepthook):  # noqa: ANN001
    if issubclass(etype, (ValueError, OSError)) and not issubclass(etype, KeyboardInterrupt):
        print(f"{Path(sys.argv[0]).stem or 'flowgraph'}: error: {value}", file=sys.stderr)
        return
    _previous(etype, value, tb)


sys.excepthook = _hook
