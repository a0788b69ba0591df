# The two set-up commands of the README. Each installs what it needs (apt packages, .venv).
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

.PHONY: setup demo test test-vllm bench reward-vlm experiment ceiling

setup:
	@scripts/setup_env.sh

# The reward VLM trained here (MetaWorld simulation only, ~2 M parameters): `make reward-vlm` rebuilds it.
REWARD_VLM := models/metaworld-reward-vlm

# Main job on the bundled demo data: label every frame with the reward VLM, on CPU. On a GPU
# machine pass e.g. MODEL=Qwen/Qwen2.5-VL-7B-Instruct to label with a general VLM instead.
MODEL ?= $(REWARD_VLM)
demo: setup
	$(PY) -m labeling.inspect --dataset data/demo_metaworld --episodes 0-2
	$(PY) -m labeling.run --dataset data/demo_metaworld --out outputs/demo_labeled --model $(MODEL) --overwrite

# Rebuild models/metaworld-reward-vlm and its held-out report (about 40 min on a 2-core CPU):
# MetaWorld episodes from seeds the demo does not use, the small model trained from scratch on
# their simulator ground truth, then labeling.run + training.compare on held-out seeds.
RVLM := outputs/reward_vlm
RVLM_TASKS := pick-place-v3,push-v3,reach-v3
RVLM_STEPS ?= 2000
reward-vlm: setup
	[ -d $(RVLM)/train ] || $(PY) -m data.generate --out $(RVLM)/train --tasks $(RVLM_TASKS) --successes 16 \
		--failures-per-kind 4 --seed 100 --repo-id local/reward_vlm_train
	[ -d $(RVLM)/heldout ] || $(PY) -m data.generate --out $(RVLM)/heldout --tasks $(RVLM_TASKS) --successes 4 \
		--failures-per-kind 2 --seed 200 --repo-id local/reward_vlm_heldout
	$(PY) -m training.finetune_vlm --dataset $(RVLM)/train --labels ground_truth --init small --soft-targets \
		--steps $(RVLM_STEPS) --examples 4096 --image-size 96 --save-dtype bfloat16 --out $(REWARD_VLM) --overwrite \
		--eval-dataset $(RVLM)/heldout --eval-examples 512
	$(PY) -m labeling.run --dataset $(RVLM)/heldout --out $(RVLM)/heldout_labeled --model $(REWARD_VLM) \
		--stages progress --image-size 96 --overwrite --quiet
	$(PY) -m training.compare --dataset $(RVLM)/heldout --out docs/results/reward_vlm_metaworld \
		--source "interpolation (raw)=interpolation" "reward VLM labels=labels:$(RVLM)/heldout_labeled"

# Labels vs interpolation on data with unflagged failures (docs/results/experiment_unflagged_failures):
# about 90 min on a 2-core CPU; PRESET=quick for a ~20-minute version. Finished steps are skipped.
PRESET ?= full
experiment: setup
	$(PY) -m training.experiments.unflagged_failures --preset $(PRESET)

# What limits RewACT's reward head on ground truth (docs/results/experiment_unflagged_failures/ceiling):
# four RewACT trainings on the experiment's splits (generated here if missing), about 40 min here.
ceiling: setup
	$(PY) -m training.experiments.ceiling --work outputs/experiment

# Whole suite, offline. pytest's "no tests collected" (exit 5) fails like any other error.
test: setup
	$(PY) -m pytest

# Against a real vLLM server and engine (CPU build, its own venv .venv-vllm: ~6 GB, ~5 min once).
test-vllm: setup
	scripts/setup_vllm_env.sh
	$(PY) -m pytest tests/vllm_integration.py -s

bench: setup
	$(PY) bench/render_throughput.py
	$(PY) bench/rewact_overhead.py
	$(PY) bench/labeling_cost.py
	$(PY) bench/finetune_budget.py
	$(PY) bench/ray_scaling.py
	$(PY) bench/labeling_scale.py  # generates its 480 px datasets once, in outputs/scale_bench
