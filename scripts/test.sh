#!/usr/bin/env bash
# Install the test dependencies and run the whole suite: ruff, mypy, pytest.
# The sandbox tests run on every backend and the store's on every database; bwrap, docker
# (through podman), postgresql (a throwaway server the tests start) and ray (a multi-node
# cluster the tests start in a private network namespace) are required here, so a missing
# install step fails the run instead of skipping.
# Set EVOLVE_REQUIRE_BACKENDS= (empty) on a machine that cannot run them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
export EVOLVE_REQUIRE_BACKENDS="${EVOLVE_REQUIRE_BACKENDS-bwrap,docker,postgresql,ray}"
.venv/bin/ruff check .
.venv/bin/mypy -p evolve
.venv/bin/mypy tests benchmarks
.venv/bin/pytest "$@"
