"""GNU Radio blocks over the semantic link, for flowgraphs and GNU Radio Companion.

* :class:`~sdr_tosc.gnuradio.tx.semantic_tx`: images of a data set -> student encoder -> modem bursts
  (several images per burst, as ``sdr-tosc tx``) on a complex stream, tagged per burst; an ``snr`` message
  input takes the receiver's SNR reports (the encoder and the header form adapt to them).
* :class:`~sdr_tosc.gnuradio.rx.semantic_rx`: a complex stream -> frames -> student decoder; one
  message per image (class, SNR, CFO, ...) on ``frames``, one SNR report per burst on ``snr`` (connect it to
  the transmitter's ``snr`` input, or give ``feedback`` to send it to ``sdr-tosc tx`` over ZMQ), the
  equalised symbols as PDUs on ``symbols`` and the recent SNR history as PDUs on ``snr_history`` (for Qt GUI
  sinks); a JSON summary at the end of the run.
* :mod:`~sdr_tosc.gnuradio.common`: the parts that need no GNU Radio (SNR <-> ``channel_model`` noise
  voltage by the project's SNR definition, report checks, summaries).

The blocks import GNU Radio lazily so that ``import sdr_tosc.gnuradio`` works without it; the block
classes need the ``gnuradio`` Python package (Debian: ``apt install gnuradio``; the project's venv sees it
through ``--system-site-packages``). GRC finds the block files in ``sdr_tosc/gnuradio/grc`` once
``scripts/setup.sh`` linked them into ``~/.grc_gnuradio`` (or with ``GRC_BLOCKS_PATH`` set to that folder).
"""

from __future__ import annotations

from typing import Any

from .common import GRC_DIR, burst_power_nominal, noise_voltage_for_snr, parse_taps, snr_db_for_noise_voltage

__all__ = ["GRC_DIR", "burst_power_nominal", "noise_voltage_for_snr", "parse_taps", "semantic_rx", "semantic_tx",
           "snr_db_for_noise_voltage"]


def __getattr__(name: str) -> Any:
    if name == "semantic_tx":
        from .tx import semantic_tx

        return semantic_tx
    if name == "semantic_rx":
        from .rx import semantic_rx

        return semantic_rx
    raise AttributeError(f"module 'sdr_tosc.gnuradio' has no attribute {name!r}")
