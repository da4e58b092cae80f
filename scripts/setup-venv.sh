#!/usr/bin/env bash
# Create ./.venv with vareff and everything it needs, from scratch (idempotent).
# torch is pinned to 2.13.0 here only to take the CPU build; the package itself accepts any torch >= 2.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
# SpliceAI's published weights and gene tables; vareff reads the files and never imports keras/tensorflow.
python -m pip install --quiet --no-deps "spliceai==1.3.1"
python -m pip install --quiet -e ".[test,triton]"
# Ray for the scale-out tests (the light core package; users install vareff[ray])
python -m pip install --quiet "ray>=2.9" psutil
