#!/usr/bin/env bash
# Install Arize Phoenix into its own virtualenv (.venv-phoenix at the repo root by default) for
# tests/export/test_phoenix.py. Phoenix is heavy (a web app, a SQL stack, its own OTLP receivers),
# so it never goes into the project's .venv. Idempotent: does nothing when the venv already works.
#
#   bash tests/export/setup_phoenix.sh            # or PHOENIX_VENV=/some/dir bash ...
#
# Pins the version the test was written against; change PHOENIX_REQUIREMENT to try another.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${PHOENIX_VENV:-.venv-phoenix}"
REQUIREMENT="${PHOENIX_REQUIREMENT:-arize-phoenix==20.26.1}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/phoenix" ] && "$VENV/bin/python" -c "import phoenix" 2>/dev/null; then
    echo '*' > "$VENV/.gitignore"
    echo "phoenix already installed in $VENV"
    exit 0
fi
start=$(date +%s)
"$PY" -m venv "$VENV"
# Keep git from ever seeing the venv (as Python 3.13's venv does by itself).
echo '*' > "$VENV/.gitignore"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$REQUIREMENT"
echo "installed $REQUIREMENT into $VENV in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
