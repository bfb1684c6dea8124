"""``python -m sdr_tosc.channel [flags]`` == ``sdr-tosc channel [flags]``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["channel", *sys.argv[1:]]))
