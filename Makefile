# The two set-up commands of the README. Each installs what it needs (apt packages, .venv).
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

.PHONY: setup demo test bench

setup:
	@scripts/setup_env.sh

TINY_VLM := outputs/tiny-qwen2_5_vl

# Main job on the bundled demo data: label every frame with a VLM, on CPU. No pretrained
# weights can be downloaded here, so the model is a tiny random Qwen2.5-VL built locally
# (real path, noise answers); pass MODEL=Qwen/Qwen2.5-VL-7B-Instruct on a GPU machine.
MODEL ?= $(TINY_VLM)
demo: setup
	@[ "$(MODEL)" != "$(TINY_VLM)" ] || [ -f $(TINY_VLM)/config.json ] || $(PY) -m data.tiny_vlm --family qwen2_5_vl --out $(TINY_VLM)
	$(PY) -m labeling.inspect --dataset data/demo_metaworld --episodes 0-2
	$(PY) -m labeling.run --dataset data/demo_metaworld --out outputs/demo_labeled --model $(MODEL) --overwrite

# Whole suite, offline. pytest's "no tests collected" (exit 5) fails like any other error.
test: setup
	$(PY) -m pytest

bench: setup
	$(PY) bench/render_throughput.py
	$(PY) bench/rewact_overhead.py
	$(PY) bench/labeling_cost.py
