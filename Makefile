# The two set-up commands of the README. Each installs what it needs (apt packages, .venv).
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

.PHONY: setup demo test bench

setup:
	@scripts/setup_env.sh

# Main job on the bundled demo data.
demo: setup
	$(PY) -m data.generate --preset demo --out outputs/demo_regenerated --overwrite
	$(PY) -m labeling.inspect --dataset data/demo_metaworld

# Whole suite, offline. pytest's "no tests collected" (exit 5) fails like any other error.
test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/render_throughput.py
	$(PY) bench/rewact_overhead.py
