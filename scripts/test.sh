#!/usr/bin/env bash
# Install the test dependencies and run the whole suite: ruff, mypy, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
.venv/bin/ruff check .
.venv/bin/mypy -p evolve
.venv/bin/mypy tests
.venv/bin/pytest "$@"
