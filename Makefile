# The two set-up commands of the README. Each installs what it needs (apt packages, .venv).
SHELL := /bin/bash
PY := .venv/bin/python
export HF_HUB_OFFLINE := 1
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

.PHONY: setup demo test test-vllm bench reward-vlm reward-vlm-detours reward-vlm-all-kinds reward-vlm-reach experiment ceiling

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
# How the small reward VLM is trained from scratch on a split's simulator truth (this target and
# reward-vlm-all-kinds), scored on the held-out split's keyframes.
RVLM_FROM_SCRATCH = --labels ground_truth --init small --soft-targets --steps $(RVLM_STEPS) --examples 4096 \
	--image-size 96 --save-dtype bfloat16 --eval-dataset $(RVLM)/heldout --eval-examples 512
reward-vlm: setup | $(RVLM)/heldout
	[ -d $(RVLM)/train ] || $(PY) -m data.generate --out $(RVLM)/train --tasks $(RVLM_TASKS) --successes 16 \
		--failures-per-kind 4 --seed 100 --repo-id local/reward_vlm_train
	$(PY) -m training.finetune_vlm --dataset $(RVLM)/train $(RVLM_FROM_SCRATCH) --out $(REWARD_VLM) --overwrite
	$(PY) -m labeling.run --dataset $(RVLM)/heldout --out $(RVLM)/heldout_labeled --model $(REWARD_VLM) \
		--stages progress --image-size 96 --overwrite --quiet
	$(PY) -m training.compare --dataset $(RVLM)/heldout --out docs/results/reward_vlm_metaworld \
		--source "interpolation (raw)=interpolation" "reward VLM labels=labels:$(RVLM)/heldout_labeled"

# The reward VLM with successes that take a detour (hesitation, recovered drop, corrected
# misplacement) in its training split (docs/results/reward_vlm_kinds): models/metaworld-reward-vlm
# fine-tuned on pick-place-v3 episodes of a seed nothing else uses, then both models scored per
# kind on held-out seeds, and on the reward VLM's own held-out split (today's kinds). Not the
# committed model: `make demo` keeps that one. About 40 minutes on a 2-core CPU.
DETOURS := outputs/reward_vlm_detours
DETOUR_KINDS := hesitation,recovered_drop,corrected_misplacement
# How the committed reward VLM is fine-tuned on a split's simulator truth (reward-vlm-detours, reward-vlm-reach).
FINE_TUNE_STEPS ?= 600
RVLM_FINE_TUNE = --labels ground_truth --base $(REWARD_VLM) --no-lora --tune-vision --soft-targets \
	--steps $(FINE_TUNE_STEPS) --lr 3e-4 --warmup-steps 50 --examples 2048 --image-size 96 --save-dtype bfloat16
reward-vlm-detours: setup | $(DETOURS)/heldout $(RVLM)/heldout
	[ -d $(DETOURS)/train ] || $(PY) -m data.generate --out $(DETOURS)/train --tasks pick-place-v3 --successes 12 \
		--failures-per-kind 3 --success-kinds $(DETOUR_KINDS) --successes-per-kind 8 --seed 800 --repo-id local/detours_train
	[ -d $(DETOURS)/val ] || $(PY) -m data.generate --out $(DETOURS)/val --tasks pick-place-v3 --successes 4 \
		--failures-per-kind 1 --success-kinds $(DETOUR_KINDS) --successes-per-kind 6 --seed 850 --repo-id local/detours_val
	[ -d $(DETOURS)/model ] || $(PY) -m training.finetune_vlm --dataset $(DETOURS)/train $(RVLM_FINE_TUNE) \
		--out $(DETOURS)/model
	# the fill's turn penalty, chosen on the validation split (seed 850), not on the held-out one
	[ -d $(DETOURS)/val_labeled ] || $(PY) -m labeling.run --dataset $(DETOURS)/val --out $(DETOURS)/val_labeled \
		--model $(DETOURS)/model --stages progress --image-size 96 --quiet
	$(PY) bench/fill_penalty.py --labeled $(DETOURS)/val_labeled --dataset $(DETOURS)/val --penalties 0.06,0.125,0.25,0.5,1
	$(PY) -m training.experiments.reward_vlm_kinds --dataset $(DETOURS)/heldout --work $(DETOURS)/kinds \
		--models today=$(REWARD_VLM),detours=$(DETOURS)/model --results docs/results/reward_vlm_kinds
	$(PY) -m training.experiments.reward_vlm_kinds --dataset $(RVLM)/heldout --work $(DETOURS)/kinds_today \
		--models today=$(REWARD_VLM),detours=$(DETOURS)/model --results docs/results/reward_vlm_kinds/todays_kinds

# The reward VLM trained from scratch as `make reward-vlm` trains it, with the detours of every task
# that can show them in its training split (a seed no other split uses), scored per kind beside the
# committed model on both held-out splits (docs/results/reward_vlm_kinds/all_kinds). Not the committed
# model: `make demo` keeps that one. About 80 minutes on a 2-core CPU.
ALL_KINDS := outputs/reward_vlm_all_kinds
reward-vlm-all-kinds: setup | $(DETOURS)/heldout $(RVLM)/heldout
	[ -d $(ALL_KINDS)/train ] || $(PY) -m data.generate --out $(ALL_KINDS)/train --tasks $(RVLM_TASKS) --successes 16 \
		--failures-per-kind 4 --success-kinds $(DETOUR_KINDS) --successes-per-kind 6 --seed 1000 \
		--repo-id local/reward_vlm_all_kinds_train
	[ -d $(ALL_KINDS)/model ] || $(PY) -m training.finetune_vlm --dataset $(ALL_KINDS)/train $(RVLM_FROM_SCRATCH) \
		--out $(ALL_KINDS)/model
	$(PY) -m training.experiments.reward_vlm_kinds --dataset $(DETOURS)/heldout --work $(ALL_KINDS)/kinds \
		--models today=$(REWARD_VLM),all_kinds=$(ALL_KINDS)/model --results docs/results/reward_vlm_kinds/all_kinds
	$(PY) -m training.experiments.reward_vlm_kinds --dataset $(RVLM)/heldout --work $(ALL_KINDS)/kinds_today \
		--models today=$(REWARD_VLM),all_kinds=$(ALL_KINDS)/model \
		--results docs/results/reward_vlm_kinds/all_kinds/todays_kinds

# The committed reward VLM fine-tuned on reach-v3 alone (40 expert successes, 8 of each failure kind,
# a seed nothing else uses): does a labeler that has seen more reach successes tell the moment of
# success on policy rollouts? Checked with `success_detection --labels-only --other-labelers`
# (docs/results/success_detection). Not the committed model. About 20 minutes on a 2-core CPU.
# `make reward-vlm-reach REACH=outputs/reward_vlm_reach_close NEAR_MISS_CM=5,8`: near-misses that
# hover 5-8 cm from the goal (reach succeeds within 5 cm), as learned policies' failures do; add
# REACH_CAMERAS=corner2,topview,gripperPOV for a wrist view, in which touching the goal is visible.
REACH ?= outputs/reward_vlm_reach
NEAR_MISS_CM ?= 8,12
REACH_CAMERAS ?= corner2,topview
# Scored on the three-task held-out keyframes only with the cameras they were recorded with.
comma := ,
REACH_EVAL = $(if $(filter corner2$(comma)topview,$(REACH_CAMERAS)),--eval-dataset $(RVLM)/heldout --eval-examples 512)
reward-vlm-reach: setup | $(RVLM)/heldout
	[ -d $(REACH)/train ] || $(PY) -m data.generate --out $(REACH)/train --tasks reach-v3 --successes 40 \
		--failures-per-kind 8 --near-miss-cm $(NEAR_MISS_CM) --cameras $(REACH_CAMERAS) --seed 1100 \
		--repo-id local/reward_vlm_reach_train
	[ -d $(REACH)/model ] || $(PY) -m training.finetune_vlm --dataset $(REACH)/train $(RVLM_FINE_TUNE) \
		$(REACH_EVAL) --out $(REACH)/model

# The held-out splits the reward VLM's targets score on, generated once (seeds nothing trains on).
$(RVLM)/heldout: | setup
	$(PY) -m data.generate --out $@ --tasks $(RVLM_TASKS) --successes 4 --failures-per-kind 2 --seed 200 \
		--repo-id local/reward_vlm_heldout
$(DETOURS)/heldout: | setup
	$(PY) -m data.generate --out $@ --tasks pick-place-v3 --successes 6 --failures-per-kind 2 \
		--success-kinds $(DETOUR_KINDS) --successes-per-kind 6 --seed 900 --repo-id local/detours_heldout

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
# Two workers (pytest-xdist), each test file on one of them: most of the suite's time is the
# start-up of lerobot-train and labeling.run processes, which two cores overlap (18:56 -> 14:47
# on a 2-core machine). A file's tests share one worker, so the Ray tests never start two clusters.
# tests/conftest.py gives each worker one OpenMP thread per core it shares (that and two trimmed
# smoke tests: 22:44 -> 13:28 on one machine, the same day).
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

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
	$(PY) bench/labeling_scale.py  # generates its 480 px datasets once (about an hour here), in outputs/scale_bench
