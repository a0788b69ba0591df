"""RoboReward-style progress labeling of LeRobot datasets (`python -m labeling.run`).

The flow: a dataset (`common.dataset`) -> clips of frames (`clips`) -> requests built by each
stage (`rewrite`, `progress`, `negatives`, `validate`) -> answers from a backend (`backends`,
through the cache in `calls`) -> labels (`records`, `parsing`) -> a new dataset (`output`).

What other packages may use is exported here; everything else is internal. The reward-VLM
trainer builds its examples with the progress stage's own request builder and encodes them as
the transformers backend does, so training and labeling can never ask different questions.
Names load on first use: importing `labeling` pulls in neither torch nor LeRobot.
"""

from importlib import import_module

_PUBLIC = {
    "make_backend": "labeling.backends",
    "SCORE_CHOICES": "labeling.backends",
    "VLMRequest": "labeling.backends",
    "encode_requests": "labeling.backends.transformers_backend",
    "load_vlm": "labeling.backends.transformers_backend",
    "processor_options": "labeling.backends.transformers_backend",
    "LAYOUTS": "labeling.clips",
    "ClipImages": "labeling.clips",
    "ClipSpec": "labeling.clips",
    "context_indices": "labeling.clips",
    "LabelingContext": "labeling.context",
    "write_declared_stages": "labeling.model_stages",
    "ANSWER_PREFIX": "labeling.progress",
    "ProgressConfig": "labeling.progress",
    "PROGRESS_SAMPLING": "labeling.progress",
    "progress_jobs": "labeling.progress",
    "DEFAULT_PROMPTS_DIR": "labeling.prompts",
    "PromptLibrary": "labeling.prompts",
    "EpisodeLabels": "labeling.records",
}
__all__ = sorted(_PUBLIC)


_RENAMED = {"PROGRESS_SAMPLING": "SAMPLING"}  # exported under a name that says which stage's


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'labeling' has no attribute '{name}'")
    return getattr(import_module(_PUBLIC[name]), _RENAMED.get(name, name))
