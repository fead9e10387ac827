#!/usr/bin/env bash
# Installs hashmatch into .venv and runs the server on the embedded SQLite store.
# Extra arguments go to `hashmatch serve` (e.g. --listen 127.0.0.1:50051 --db hashmatch.db).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/hashmatch serve "$@"
