#!/usr/bin/env bash
# Install Arize Phoenix into its own virtualenv (.venv-phoenix at the repo root by default) for
# tests/export/test_phoenix.py. Phoenix is heavy (a web app, a SQL stack, its own OTLP receivers),
# so it never goes into the project's .venv. Idempotent: does nothing when the venv already works.
#
#   bash tests/export/setup_phoenix.sh            # or PHOENIX_VENV=/some/dir bash ...
#
# Installs exactly tests/export/phoenix.lock.txt (Phoenix and every dependency, with hashes), with
# the project's pinned uv (`make .tools/bin/uv` brings it). To move to another Phoenix release, edit
# tests/export/phoenix.in and recompile the lock as its header says.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${PHOENIX_VENV:-.venv-phoenix}"
LOCK=tests/export/phoenix.lock.txt
PY="${PYTHON:-python3}"
UV=.tools/bin/uv

if [ -x "$VENV/bin/phoenix" ] && "$VENV/bin/python" -c "import phoenix" 2>/dev/null; then
    echo '*' > "$VENV/.gitignore"
    echo "phoenix already installed in $VENV"
    exit 0
fi
[ -x "$UV" ] || make --no-print-directory "$UV"
start=$(date +%s)
echo "installing Arize Phoenix ($LOCK, ~150 packages, about a minute) into $VENV ..."
UV_PYTHON_DOWNLOADS=never "$UV" venv -q --python "$PY" "$VENV"
# Keep git from ever seeing the venv (as Python 3.13's venv does by itself).
echo '*' > "$VENV/.gitignore"
VIRTUAL_ENV="$VENV" "$UV" pip install -q --require-hashes -r "$LOCK"
echo "installed $(grep -m1 '^arize-phoenix==' "$LOCK" | cut -d' ' -f1) into $VENV in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
