#!/usr/bin/env bash
# Create the py-libp2p interop venv (idempotent). py-libp2p is a test peer only,
# never a colonymesh dependency: it lives in its own venv so its 57 pinned
# dependencies cannot leak into the project's.
set -euo pipefail
VENV="${COLONYMESH_INTEROP_VENV:-/work/interop-venv}"
PIN="libp2p==0.8.1"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('libp2p') != '0.8.1')" 2>/dev/null; then
    exit 0
fi
# fastecdsa builds from source and needs GMP headers.
if ! dpkg -s libgmp-dev >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y libgmp-dev >/dev/null || { apt-get update >/dev/null && apt-get install -y libgmp-dev >/dev/null; }
    else
        echo "setup.sh: libgmp-dev is missing; install it (apt-get install libgmp-dev)" >&2
        exit 1
    fi
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "$PIN"
