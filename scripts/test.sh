#!/usr/bin/env bash
# Installs everything the tests need into .venv (and tests/node/node_modules) and runs the whole
# suite. Safe to run again: each step is quick when there is nothing new to do.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,bench
if command -v npm >/dev/null 2>&1; then
  (cd tests/node && npm install --no-audit --no-fund --silent)
fi
exec .venv/bin/python -m pytest "$@"
