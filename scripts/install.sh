#!/usr/bin/env bash
# Creates .venv with Python 3.11+ and installs hashmatch into it (editable, compiled core built).
# Usage: scripts/install.sh [EXTRAS]   e.g. scripts/install.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "hashmatch needs Python 3.11 or newer; $PY is $("$PY" --version 2>&1)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# numpy and Cython too: without build isolation, pdqhash (the bench extra) builds from its sdist
# with whatever the venv has, and its setup.py imports numpy and cythonizes its bindings.
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel "pybind11>=2.13" numpy cython
extras=${1:+[$1]}
# --no-build-isolation: the build uses the pybind11 just installed, so a rebuild needs no download
.venv/bin/python -m pip install -q --no-build-isolation -e ".${extras}"
