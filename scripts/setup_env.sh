#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages, a Python 3.12 venv, the project.
# Re-runs are cheap: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg libosmesa6 libegl1 libgl1 chromium)  # chromium: the review page's browser test
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

source scripts/python312.sh

if [ ! -x .venv/bin/python ]; then
  PY=$(find_python312) || { echo "[setup] error: Python 3.12 not found (lerobot 0.6 needs it)" >&2; exit 1; }
  echo "[setup] creating .venv with $PY"
  "$PY" -m venv .venv
fi

stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "$(find plugins -name pyproject.toml -newer "$stamp" 2>/dev/null)" ]; then
  echo "[setup] installing the project into .venv (first time: ~2-3 min, ~6 GB)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev,ray]" $(ls -d plugins/*/ 2>/dev/null | sed 's/^/-e /')
  touch "$stamp"
fi
