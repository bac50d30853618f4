#!/usr/bin/env bash
# Refresh the lock files the install command installs from (every package pinned, with its hashes):
#   scripts/pip.lock                 pip, installed first
#   scripts/requirements.lock        evolve's dependencies
#   scripts/requirements-test.lock   the same plus the test extra (what scripts/test.sh and CI install)
# Usage: scripts/lock.sh              the newest releases pyproject.toml allows
#        scripts/lock.sh --installed  exactly the versions installed in ./.venv (after a suite passed with them)
# Then run scripts/test.sh, and commit the lock files with the pyproject.toml change that needed them.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${TMPDIR:-/tmp}/evolve-lock-tools"
[ -x "$tools/bin/uv" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q uv; }
constraint=()
if [ "${1:-}" = "--installed" ]; then
  # name==version only: pip freeze would write a package installed from a local file as "name @ file://...",
  # which the lock would then point at (a path no other machine has)
  .venv/bin/python -m pip list --format=freeze --exclude-editable | grep -v '^evolve=' > "$tools/installed.txt"
  constraint=(--constraint "$tools/installed.txt")
fi
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_36 --no-header --no-annotate --quiet)
"$tools/bin/uv" pip compile pyproject.toml "${common[@]}" "${constraint[@]}" -o scripts/requirements.lock
"$tools/bin/uv" pip compile pyproject.toml --extra test "${common[@]}" "${constraint[@]}" -o scripts/requirements-test.lock
# pip itself, installed first: a venv's bundled pip (Debian 12's 23.0) neither reuses nor caches the wheels it builds
# under --require-hashes, so every install would compile llama.cpp again
grep -o '^pip==[^ ]*' scripts/requirements-test.lock | "$tools/bin/uv" pip compile - "${common[@]}" -o scripts/pip.lock
if grep -l 'file://' scripts/requirements.lock scripts/requirements-test.lock scripts/pip.lock; then
  echo "error: a lock file names a local file (above); lock from an index, not from local installs" >&2; exit 1
fi
echo "locked: $(grep -c '==' scripts/requirements.lock) packages, $(grep -c '==' scripts/requirements-test.lock) with the test extra"
