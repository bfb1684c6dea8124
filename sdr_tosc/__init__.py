"""sdr-tosc: task-oriented semantic communication over real software-defined radios.

Importing this package imports no hardware library and no torch; sub-packages load what they need.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
