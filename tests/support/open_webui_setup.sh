#!/usr/bin/env bash
# Install Open WebUI in its own virtual environment, apart from the package's: it pins hundreds of
# dependencies (torch among them) that must never leak into the suite's venv.
#
#   bash tests/support/open_webui_setup.sh            # into .venv-open-webui at the repo's top
#   OPEN_WEBUI_VENV=/some/dir bash tests/support/...  # elsewhere
#
# Idempotent: when the venv already holds the pinned version it only says so. CPU torch goes in first so
# pip takes the local CPU wheel (find-links) instead of resolving the multi-gigabyte CUDA build.
set -euo pipefail
cd "$(dirname "$0")/../.."

OPEN_WEBUI_VERSION=${OPEN_WEBUI_VERSION:-0.12.4}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VENV=${OPEN_WEBUI_VENV:-$PWD/.venv-open-webui}
PYTHON=${OPEN_WEBUI_PYTHON:-python3.11}  # the version Open WebUI and the CPU torch wheel are built for

installed() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$OPEN_WEBUI_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("open-webui") != sys.argv[1])
PY
}

if installed; then
  echo "open-webui $OPEN_WEBUI_VERSION already in $VENV"
  exit 0
fi

start=$SECONDS
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -qq --upgrade pip
"$VENV/bin/python" -m pip install -qq "torch==$TORCH_VERSION"
echo "torch $TORCH_VERSION installed in $((SECONDS - start))s"
"$VENV/bin/python" -m pip install -qq "open-webui==$OPEN_WEBUI_VERSION"
installed || { echo "open-webui $OPEN_WEBUI_VERSION did not install into $VENV" >&2; exit 1; }
echo "open-webui $OPEN_WEBUI_VERSION installed in $VENV in $((SECONDS - start))s"
