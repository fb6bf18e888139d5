#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, type-check and run the test suite against real Orthanc, DCMTK and
# PostgreSQL processes. Slow checks (multi-GiB memory bounds, full-size benchmarks) are excluded;
# run them with `.venv/bin/python -m pytest -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
ruff check .
mypy
python -m pytest -m "not slow" -q -p no:cacheprovider "$@"
