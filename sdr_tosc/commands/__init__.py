"""One module per ``sdr-tosc`` verb (see :mod:`sdr_tosc.cli`)."""
