#!/usr/bin/env bash
# `make test`: install what the suite needs, then run all of it. The tests
# start their own redis-server, dockerd (if none runs) and test image.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
bash scripts/venv.sh
bash scripts/frontend.sh
.venv/bin/ruff check .
mkdir -p artifacts
exec .venv/bin/python -m pytest -ra "$@"
