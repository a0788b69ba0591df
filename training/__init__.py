"""What users run on top of the labels, and what we measure with.

The modules here are the commands (`python -m training.<name>`): `train` (RewACT through stock
`lerobot-train`), `visualize`, `compare`, `finetune_vlm`, `advantage`. Their library code lives
by purpose: `policies` (advantages for ACTvantage), `evaluation` (scoring reward sources,
metrics, RewACT predictions), `reward_vlm` (the reward VLM's trainer, examples and model
factories) and `experiments` (research drivers, each a command of its own, sharing only
`experiments.workbench`). No library module imports a command.
"""
