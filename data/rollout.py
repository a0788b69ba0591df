"""Scripted MetaWorld v3 rollouts: expert successes and four kinds of real, simulated failure.

Every frame is rendered from the simulator; no frame is edited or synthesised. Failures come
from steering the scripted expert (holding still, a shifted goal, opening the gripper, a
goal moved back to the start), and each rollout is checked against the simulator's own
success flag before it is kept.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from lerobot.envs.metaworld import TASK_DESCRIPTIONS, TASK_POLICY_MAPPING  # noqa: E402
from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE  # noqa: E402

from common.cli import ConfigError  # noqa: E402
from data.ground_truth import TASK_SPECS, TaskSpec, frame_progress, progress_to_score  # noqa: E402

EPISODE_KINDS = ("success", "stall", "near_miss", "drop", "reached_then_reset")
FAILURE_KINDS = EPISODE_KINDS[1:]
CAMERAS = ("corner2", "topview", "corner", "corner3", "behindGripper", "gripperPOV")
STATE_NAMES = ["hand_x", "hand_y", "hand_z", "gripper_opening"]
# Where the task's object and goal are: what LeRobot's simulated datasets (e.g. PushT) record as
# `observation.environment_state`. For policies only; the labeling pipeline never reads it.
ENV_STATE_NAMES = ["object_x", "object_y", "object_z", "goal_x", "goal_y", "goal_z"]
ACTION_NAMES = ["delta_x", "delta_y", "delta_z", "gripper_effort"]
# LeRobot's MetaWorld env moves corner2 to this pose; matching it keeps our views identical
# to what `lerobot-eval --env.type=metaworld` renders.
LEROBOT_CORNER2_POS = (0.75, 0.075, 0.7)
# MetaWorld v3 advances 0.0125 s per env.step (env.dt); a frame is `action_repeat` of them.
PHYSICS_HZ = 80


@dataclass(frozen=True)
class RolloutConfig:
    cameras: tuple[str, ...] = ("corner2", "topview")
    image_size: int = 96
    action_repeat: int = 2
    max_frames: int = 90
    failure_frames: tuple[int, int] = (35, 55)

    @property
    def fps(self) -> int:
        """Frames per second of a recording: each frame is `action_repeat` simulator steps."""
        return round(PHYSICS_HZ / self.action_repeat)


@dataclass
class Episode:
    """One recorded rollout: what a policy sees, plus the simulator's ground truth."""

    env_name: str
    task: str
    kind: str
    seed: int
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    state: list[np.ndarray] = field(default_factory=list)
    environment_state: list[np.ndarray] = field(default_factory=list)
    action: list[np.ndarray] = field(default_factory=list)
    progress: list[float] = field(default_factory=list)
    score: list[int] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    obj_to_target: list[float] = field(default_factory=list)
    tcp_to_obj: list[float] = field(default_factory=list)
    grasped: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.state)

    def record(self, images: dict[str, np.ndarray], state: np.ndarray, environment_state: np.ndarray | None,
               truth: dict) -> None:
        """Append one frame: what a robot records, and the simulator's truth (`MetaWorldSim.frame_truth`)."""
        for camera, image in images.items():
            self.images.setdefault(camera, []).append(image)
        self.state.append(state)
        if environment_state is not None:
            self.environment_state.append(environment_state)
        for name, value in truth.items():
            getattr(self, name).append(value)

    @property
    def outcome(self) -> str:
        return "success" if self.success[-1] else "failure"

    @property
    def first_success_frame(self) -> int:
        return int(np.argmax(self.success)) if any(self.success) else -1


Controller = Callable[[np.ndarray, int], np.ndarray]


class MetaWorldSim:
    """A goal-observable MetaWorld task with its scripted expert and a fast offscreen renderer."""

    def __init__(self, env_name: str, config: RolloutConfig):
        if env_name not in TASK_SPECS:
            raise ConfigError(f"unsupported task '{env_name}'; choose from {', '.join(TASK_SPECS)}")
        unknown = [c for c in config.cameras if c not in CAMERAS]
        if unknown:
            raise ConfigError(f"unknown camera(s) {unknown}; choose from {', '.join(CAMERAS)}")
        self.spec: TaskSpec = TASK_SPECS[env_name]
        self.config = config
        self.task = TASK_DESCRIPTIONS[env_name]
        self.env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{env_name}-goal-observable"](seed=0)
        self.env.model.cam_pos[self.env.model.camera("corner2").id] = LEROBOT_CORNER2_POS
        self.expert = TASK_POLICY_MAPPING[env_name]()
        self.fps = config.fps
        self.renderer = mujoco.Renderer(self.env.model, config.image_size, config.image_size)
        # Shadows and reflections cost ~5x render time and add nothing a reward model needs.
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def close(self) -> None:
        self.renderer.close()
        self.env.close()

    def render(self) -> dict[str, np.ndarray]:
        frames = {}
        for camera in self.config.cameras:
            self.renderer.update_scene(self.env.data, camera=camera)
            # MetaWorld's cameras are mounted upside down; LeRobot flips corner2 the same way.
            frames[camera] = np.ascontiguousarray(np.flip(self.renderer.render(), (0, 1)))
        return frames

    def reset(self, seed: int) -> np.ndarray:
        self.env._freeze_rand_vec = False
        self.env.seeded_rand_vec = True
        self.env.seed(seed)
        obs, _ = self.env.reset()
        return obs

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, dict]:
        """One recorded frame: `action` held for `action_repeat` simulator steps."""
        for _ in range(self.config.action_repeat):
            obs, reward, _, _, info = self.env.step(action)
        return obs, float(reward), info

    @staticmethod
    def state(obs: np.ndarray) -> np.ndarray:
        """The robot's own state: hand position and gripper opening."""
        return obs[:4].astype(np.float32)

    @staticmethod
    def environment_state(obs: np.ndarray) -> np.ndarray:
        """The first object's position and the goal (ENV_STATE_NAMES), from the goal-observable
        observation: [hand 0:3, gripper 3, object 4:7, ..., goal 36:39]."""
        return np.concatenate([obs[4:7], obs[36:39]]).astype(np.float32)

    def rollout(self, kind: str, seed: int) -> Episode | None:
        """Record one episode of `kind`; None when the simulator outcome does not match it."""
        rng = np.random.default_rng(seed)
        obs = self.reset(seed)
        goal = obs[-3:].copy()
        start = (obs[4:7] if self.spec.has_object else obs[:3]).copy()
        episode = Episode(self.spec.env_name, self.task, kind, seed)
        controller, length = self._controller(kind, rng, goal, start, episode)
        info = self.evaluate(obs)
        initial = self.initial_distances(obs, info)
        for t in range(self.config.max_frames):
            episode.record(self.render(), self.state(obs), self.environment_state(obs),
                           self.frame_truth(obs, info, initial))
            if length(t):
                break
            action = np.clip(controller(obs, t), -1.0, 1.0).astype(np.float32)
            obs, _, info = self.step(action)
            episode.action.append(action)
        else:
            return None
        episode.action.append(np.clip(controller(obs, len(episode)), -1.0, 1.0).astype(np.float32))
        return episode if _matches_kind(episode) else None

    def evaluate(self, obs: np.ndarray) -> dict:
        """The simulator's info (success, distances) for the current state, as a step returns it."""
        return self.env.evaluate_state(obs, np.zeros(4, dtype=np.float32))[1]

    def initial_distances(self, obs: np.ndarray, info: dict) -> tuple[float, float]:
        """(hand to object, object to goal) at an episode's first frame: what progress is relative to."""
        return self._tcp_to_obj(obs), float(info["obj_to_target"])

    def frame_truth(self, obs: np.ndarray, info: dict, initial: tuple[float, float]) -> dict:
        """The simulator's truth of the current frame: `Episode`'s per-frame ground-truth fields."""
        success = bool(info["success"])
        tcp_to_obj = self._tcp_to_obj(obs)
        grasped = bool(info["grasp_success"]) and self.spec.grasps
        progress = frame_progress(
            self.spec,
            tcp_to_obj=tcp_to_obj,
            tcp_to_obj_0=initial[0],
            grasped=grasped,
            obj_to_target=float(info["obj_to_target"]),
            obj_to_target_0=initial[1],
            success=success,
        )
        return {"progress": progress, "score": progress_to_score(progress, success), "success": success,
                "obj_to_target": float(info["obj_to_target"]), "tcp_to_obj": tcp_to_obj, "grasped": grasped}

    def _tcp_to_obj(self, obs: np.ndarray) -> float:
        return float(np.linalg.norm(self.env.tcp_center - obs[4:7]))

    def _controller(self, kind, rng, goal, start, episode) -> tuple[Controller, Callable[[int], bool]]:
        """The action rule of `kind` and the rule that says when its episode is over."""
        expert = self.expert.get_action

        def with_goal(target: np.ndarray) -> Controller:
            def act(obs: np.ndarray, t: int) -> np.ndarray:
                steered = obs.copy()
                steered[-3:] = target
                return expert(steered)

            return act

        failure_length = int(rng.integers(*self.config.failure_frames, endpoint=True))
        if kind == "success":
            tail = int(rng.integers(4, 9))
            return (lambda obs, t: expert(obs)), lambda t: _since_first_success(episode) >= tail

        if kind == "stall":
            stall_at = float(rng.uniform(0.3, 0.65))
            held: list[np.ndarray] = []

            def stall(obs: np.ndarray, t: int) -> np.ndarray:
                if held or episode.progress[-1] >= stall_at:
                    if not held:
                        held.append(np.array([0.0, 0.0, 0.0, episode.action[-1][3] if episode.action else 0.0]))
                    return held[0]
                return expert(obs)

            return stall, lambda t: t + 1 >= failure_length

        if kind == "near_miss":
            return with_goal(goal + _horizontal_offset(rng, 0.08, 0.12)), lambda t: t + 1 >= failure_length

        if kind == "drop":
            if not self.spec.grasps:  # nothing to drop: push/reach the object to a wrong place instead
                return with_goal(goal + _horizontal_offset(rng, 0.2, 0.3)), lambda t: t + 1 >= failure_length
            carry_frames = int(rng.integers(2, 7))
            released: list[int] = []

            def drop(obs: np.ndarray, t: int) -> np.ndarray:
                if not released and episode.grasped[-1] and episode.progress[-1] >= 0.45:
                    released.append(t + carry_frames)
                if released and t >= released[0]:
                    move = np.clip((goal - obs[:3]) * 10.0, -1.0, 1.0)
                    return np.concatenate([move, [-1.0]])
                return expert(obs)

            return drop, lambda t: t + 1 >= failure_length

        if kind == "reached_then_reset":
            hold = int(rng.integers(3, 9))
            reset_frames = int(rng.integers(20, 31))
            back_to_start = with_goal(start)

            def reach_then_reset(obs: np.ndarray, t: int) -> np.ndarray:
                since = _since_first_success(episode)
                return expert(obs) if since < hold else back_to_start(obs, t)

            return reach_then_reset, lambda t: _since_first_success(episode) >= hold + reset_frames
        raise ConfigError(f"unknown episode kind '{kind}'; choose from {', '.join(EPISODE_KINDS)}")


def _since_first_success(episode: Episode) -> int:
    first = episode.first_success_frame
    return -1 if first < 0 else len(episode) - 1 - first


def _horizontal_offset(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return rng.uniform(low, high) * np.array([np.cos(angle), np.sin(angle), 0.0])


def _matches_kind(episode: Episode) -> bool:
    """Keep a rollout only if the simulator agrees with the kind it was meant to be."""
    final_success = episode.success[-1]
    if episode.kind == "success":
        return final_success
    if episode.kind == "reached_then_reset":
        return any(episode.success) and not final_success and episode.score[-1] <= 3
    if episode.kind == "near_miss":
        return not any(episode.success) and episode.progress[-1] >= 0.5
    return not final_success and not any(episode.success)


def silence_expert_warnings() -> None:
    """MetaWorld's experts warn on every clipped action; the env clips anyway."""
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
