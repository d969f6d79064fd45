#!/usr/bin/env bash
# Installs everything hypernas needs into ./.venv on a fresh Debian machine with Python 3.11.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Fashion-MNIST comes from Debian's package; nothing is downloaded at run time.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "setup: apt-get not found; install Fashion-MNIST's IDX files yourself and set HYPERNAS_FASHION_MNIST_DIR" >&2
  fi
fi

# Headless Chromium (Debian's package) is what tests/test_report.py opens the HTML report in, as
# a person would; hypernas itself never needs it.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null || \
    echo "setup: chromium could not be installed; the report's browser test will be skipped" >&2
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.hypernas-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned here (not in setup.cfg): 2.13.0 is a CPU build on local disk, unpinned pulls CUDA.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test,eval,export,dashboard]"
  # The editable install finds this package through setuptools' import hook, which Python asks
  # only after its own path search: a clone in a folder named hypernas, used from its parent
  # folder, then became an empty namespace package that hid this one ("module 'hypernas' has no
  # attribute 'load'"). With this folder on sys.path as well, the real package wins that search.
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  pwd > "$site/hypernas-checkout.pth"
  touch "$stamp"
fi
