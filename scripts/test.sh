#!/usr/bin/env bash
# Install the test dependencies and run the whole suite: ruff, mypy, pytest.
# The sandbox tests run on every backend; bwrap and docker (through podman) are
# required here, so a missing install step fails the run instead of skipping.
# Set EVOLVE_REQUIRE_BACKENDS= (empty) on a machine that cannot run them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
export EVOLVE_REQUIRE_BACKENDS="${EVOLVE_REQUIRE_BACKENDS-bwrap,docker}"
.venv/bin/ruff check .
.venv/bin/mypy -p evolve
.venv/bin/mypy tests benchmarks
.venv/bin/pytest "$@"
