"""The reward VLM: its trainer, the progress-stage examples it learns from, and model factories."""
