"""Which stages a model can answer, declared in a small JSON file beside its weights.

A reward VLM trained only to score progress (`training.finetune_vlm`) cannot rewrite tasks,
describe episodes or judge labels; asking it to wastes calls and fills the run with unreadable
answers. Such a model says so in `labeling_stages.json` (`{"stages": ["progress"]}`), and
`labeling.run` without `--stages` runs only those. A model without the file (any general VLM,
or a served model the run cannot look into) is asked every stage.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.cli import ConfigError
from labeling.config import STAGES

MODEL_STAGES_FILE = "labeling_stages.json"


def declared_stages(model: str | Path) -> tuple[str, ...] | None:
    """The stages a local checkpoint declares, in the order they run; None when it declares none."""
    path = Path(model) / MODEL_STAGES_FILE
    if not path.is_file():
        return None
    try:
        named = json.loads(path.read_text())["stages"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: expected {{\"stages\": [...]}} ({err})") from err
    unknown = sorted(set(named) - set(STAGES))
    if unknown:
        raise ConfigError(f"{path}: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    return tuple(stage for stage in STAGES if stage in named)


def write_declared_stages(model_dir: str | Path, stages: tuple[str, ...]) -> Path:
    path = Path(model_dir) / MODEL_STAGES_FILE
    path.write_text(json.dumps({"stages": list(stages)}, indent=2) + "\n")
    return path
