#!/usr/bin/env bash
# Installs hashmatch into .venv and runs the server on the embedded SQLite store.
# Extra arguments go to `hashmatch serve` (e.g. --listen 127.0.0.1:50051 --db hashmatch.db).
# HASHMATCH_WEB_LISTEN=HOST:PORT (or --web-listen HOST:PORT) also serves the person's web page
# there (docs/WEB.md): like every HASHMATCH_* setting, the server reads it itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "hashmatch is installed in .venv. In another terminal, from this folder:
  source .venv/bin/activate                              # puts 'hashmatch' on your PATH
  hashmatch platform add examplesite --db hashmatch.db   # a platform's API key
  hashmatch submit PHOTO.jpg                             # a person's case (docs/WALKTHROUGH.md)" >&2
exec .venv/bin/hashmatch serve "$@"
