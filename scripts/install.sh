#!/usr/bin/env bash
# Install evolve into ./.venv (system packages via apt-get where missing).
# Usage: scripts/install.sh [--dev]   (--dev: editable install with test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  need_apt+=(python3 python3-venv python3-dev)
  PY=/usr/bin/python3
elif ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
else
  .venv/bin/python -m pip install -q .
fi
echo "evolve installed: $(.venv/bin/evolve --version)"
