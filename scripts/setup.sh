#!/usr/bin/env bash
# One-shot, idempotent set-up of sdr-tosc on a fresh Debian 12 / Ubuntu machine.
#
#  1. Debian packages: libiio (Pluto's C library + iio_info), UHD's Python module and tools, GNU Radio
#     (headless, with gr-zeromq/gr-iio/gr-uhd), the offline Fashion-MNIST data set.
#  2. A virtual environment at ./.venv that sees the system's uhd and gnuradio modules
#     (--system-site-packages), numpy kept at the Debian 1.x build those modules need, torch pinned to the
#     CPU build, and this package installed editable with the pluto + test extras.
#
# Re-running it is cheap: each step is skipped when its result is already there (a stamp records the
# hash of the inputs that decide the venv's contents).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

APT_PACKAGES=(libiio0 libiio-utils python3-uhd uhd-host gnuradio dataset-fashion-mnist python3-venv python3-dev
              chromium chromium-driver)  # chromium: the monitor's browser test (tests/test_monitor_browser.py)
TORCH_VERSION="${SDR_TOSC_TORCH_VERSION:-2.13.0}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

log() { printf '[setup] %s\n' "$*" >&2; }

# GNU Radio Companion: link the sdr-tosc block files where GRC looks (~/.grc_gnuradio), and give the venv a
# gnuradio-companion/grcc that run with its Python (flowgraphs with the blocks import sdr_tosc and torch).
grc_setup() {
  local d="${HOME}/.grc_gnuradio" f tool sys_tool
  mkdir -p "$d" && for f in "$root"/sdr_tosc/gnuradio/grc/*.block.yml; do ln -sfn "$f" "$d/$(basename "$f")"; done
  [ -d .venv/bin ] || return 0
  for tool in gnuradio-companion grcc; do
    sys_tool="$(PATH=/usr/local/bin:/usr/bin:/bin command -v "$tool" || true)"
    [ -n "$sys_tool" ] && [ ! -x ".venv/bin/$tool" ] || continue
    printf '#!/bin/sh\nexec "$(dirname "$0")/python" %s "$@"\n' "$sys_tool" > ".venv/bin/$tool"
    chmod +x ".venv/bin/$tool"
  done
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# numpy must match what Debian's gnuradio/uhd were built against.
NUMPY_VERSION="$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')"
stamp_input="$(cat pyproject.toml scripts/setup.sh; echo "numpy=$NUMPY_VERSION torch=$TORCH_VERSION")"
stamp_hash="$(printf '%s' "$stamp_input" | sha256sum | cut -d' ' -f1)"
stamp=".venv/.sdr-tosc-setup"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_hash" ]; then
  grc_setup
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv (system site packages visible for uhd and gnuradio)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
printf 'numpy==%s\ntorch==%s\n' "$NUMPY_VERSION" "$TORCH_VERSION" > "$constraints"
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check -c "$constraints")
log "installing torch==$TORCH_VERSION (CPU build), numpy==$NUMPY_VERSION and sdr-tosc[dev]"
"${pip[@]}" "torch==$TORCH_VERSION"
"${pip[@]}" -e ".[dev]"
.venv/bin/python -c "import sdr_tosc, torch, numpy, zmq; assert numpy.__version__ == '$NUMPY_VERSION', numpy.__version__"
printf '%s' "$stamp_hash" > "$stamp"
grc_setup
log "done: .venv/bin/sdr-tosc is ready"
