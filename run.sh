#!/usr/bin/env bash
# The two entry points of sdr-tosc, each doing all set-up first (scripts/setup.sh is idempotent):
#   ./run.sh demo [flags]   loopback demo with the shipped student over the ZMQ channel simulator
#   ./run.sh test [args]    the test suite (what .ci/run calls)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    bash scripts/setup.sh
    exec .venv/bin/sdr-tosc demo "$@" ;;
  test)
    bash scripts/setup.sh
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    exec .venv/bin/python -m pytest "$@" ;;
  *)
    echo "usage: ./run.sh demo [flags] | ./run.sh test [pytest args]" >&2
    exit 2 ;;
esac
