"""True per-frame task progress from simulator state, and its 1-5 rubric score.

This is the yardstick every reward source is scored against. It lives in `data/` and is
written to a sidecar next to the dataset; the labeling pipeline never imports it.

Progress of a frame (all distances in metres, measured by the simulator):

    reach   = clip(1 - |tcp - object| / |tcp_0 - object_0|, 0, 1)   (0 for object-free tasks)
    grasp   = 1 if MetaWorld reports the object grasped and lifted, else 0
    place   = clip(1 - d_goal / d_goal_0, 0, 1), d_goal = info["obj_to_target"]
    raw     = w_reach * reach + w_grasp * grasp + w_place * place
    progress = 1.0 if info["success"] else min(raw, 0.95)

`d_goal` is the task's own success distance (object to goal, or hand to goal for reach), so
`place` is 1 exactly where the task is solved. The weights per task are in `TASK_SPECS`.
The cap keeps "almost" apart from "done": only a frame the simulator calls a success
reaches progress 1 and score 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Lower progress bounds of scores 2, 3 and 4; score 5 is reserved for simulator success.
SCORE_THRESHOLDS = (0.2, 0.5, 0.8)
UNSOLVED_PROGRESS_CAP = 0.95


@dataclass(frozen=True)
class TaskSpec:
    """A MetaWorld task whose scripted expert reads the goal from the observation.

    Goal-reading experts let us steer a real rollout to a shifted goal (near-miss,
    misplacement) or back to the start (reached-then-reset) without fabricating frames.
    """

    env_name: str
    has_object: bool
    grasps: bool
    w_reach: float
    w_grasp: float
    w_place: float


TASK_SPECS: dict[str, TaskSpec] = {
    spec.env_name: spec
    for spec in (
        TaskSpec("reach-v3", has_object=False, grasps=False, w_reach=0.0, w_grasp=0.0, w_place=1.0),
        TaskSpec("reach-wall-v3", has_object=False, grasps=False, w_reach=0.0, w_grasp=0.0, w_place=1.0),
        TaskSpec("push-v3", has_object=True, grasps=False, w_reach=0.3, w_grasp=0.0, w_place=0.7),
        TaskSpec("push-wall-v3", has_object=True, grasps=False, w_reach=0.3, w_grasp=0.0, w_place=0.7),
        TaskSpec("push-back-v3", has_object=True, grasps=False, w_reach=0.3, w_grasp=0.0, w_place=0.7),
        TaskSpec("pick-place-v3", has_object=True, grasps=True, w_reach=0.2, w_grasp=0.2, w_place=0.6),
        TaskSpec("pick-place-wall-v3", has_object=True, grasps=True, w_reach=0.2, w_grasp=0.2, w_place=0.6),
    )
}


def frame_progress(
    spec: TaskSpec,
    *,
    tcp_to_obj: float,
    tcp_to_obj_0: float,
    grasped: bool,
    obj_to_target: float,
    obj_to_target_0: float,
    success: bool,
) -> float:
    """Progress in [0, 1] of one frame (formula in the module docstring)."""
    if success:
        return 1.0
    reach = _closeness(tcp_to_obj, tcp_to_obj_0) if spec.has_object else 0.0
    place = _closeness(obj_to_target, obj_to_target_0)
    raw = spec.w_reach * reach + spec.w_grasp * float(grasped) + spec.w_place * place
    return min(raw, UNSOLVED_PROGRESS_CAP)


def progress_to_score(progress: float, success: bool) -> int:
    """Map true progress to the 1-5 rubric: 5 only for a simulator success."""
    if success:
        return 5
    return 1 + int(np.searchsorted(SCORE_THRESHOLDS, progress, side="right"))


def fractional_score(progress: np.ndarray, success: np.ndarray) -> np.ndarray:
    """True progress on the continuous 1-5 scale: linear inside each score's progress band, so
    it rounds to `progress_to_score` (1 -> [1, 1.5), 2 -> [1.5, 2.5), ... 4 -> [3.5, 4.5), 5 on success).
    Soft targets for a reward VLM: how far into its band a frame is."""
    bands = [0.0, *SCORE_THRESHOLDS, UNSOLVED_PROGRESS_CAP]
    scale = [1.0, 1.5 + 1e-6, 2.5 + 1e-6, 3.5 + 1e-6, 4.5 - 1e-6]  # band edges round up, as np.rint does here
    return np.where(np.asarray(success, dtype=bool), 5.0, np.interp(progress, bands, scale))


def _closeness(distance: float, initial_distance: float) -> float:
    if initial_distance <= 1e-6:
        return 1.0
    return float(np.clip(1.0 - distance / initial_distance, 0.0, 1.0))
