#!/usr/bin/env bash
# Installs everything the tests need (.venv, tests/node/node_modules, Debian's chromium and
# emscripten) and runs the whole suite. Safe to run again: each step is quick when there is
# nothing new to do.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,bench
# The web page's tests drive Debian's Chromium; emcc rebuilds the page's PDQ (scripts/build_web.sh).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v emcc >/dev/null 2>&1 || need+=(emscripten)
# scripts/connlimit.sh (the per-address connection limit in front of the port) is tested with nft
# in a network namespace (ip).
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
# The store tests run on PostgreSQL too: a private cluster started by the tests (bench/pgcluster.py)
# from Debian's package. Installed once; skipped when present, so reruns stay quick.
if ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
if command -v npm >/dev/null 2>&1; then
  (cd tests/node && npm install --no-audit --no-fund --silent)
fi
exec .venv/bin/python -m pytest "$@"
