"""Scripted MetaWorld v3 rollouts: expert successes, successes with a detour, and four kinds of
real, simulated failure.

Every frame is rendered from the simulator; no frame is edited or synthesised. The other kinds
come from steering the scripted expert (holding still, a shifted goal, opening the gripper, a
goal moved back to the start or to a wrong spot first), and each rollout is checked against the
simulator's own success flag, and against the shape its kind promises, before it is kept.
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
from metaworld.policies.policy import move  # noqa: E402
from metaworld.sawyer_xyz_env import SawyerXYZEnv  # noqa: E402

from common.cli import ConfigError  # noqa: E402
from data.ground_truth import TASK_SPECS, TaskSpec, frame_progress, progress_to_score  # noqa: E402

# The order fixes each kind's seeds (`data.benchmark.episode_seed`): new kinds go at the end.
EPISODE_KINDS = ("success", "stall", "near_miss", "drop", "reached_then_reset",
                 "hesitation", "recovered_drop", "corrected_misplacement")
FAILURE_KINDS = ("stall", "near_miss", "drop", "reached_then_reset")
# Successes that take a detour first: pauses, a drop and a regrasp, an object put in the wrong place.
DETOUR_KINDS = ("hesitation", "recovered_drop", "corrected_misplacement")
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
# The kinds' frame counts are stated for the full-speed expert at 40 fps (2 simulator steps a frame).
REFERENCE_ACTION_REPEAT = 2
REFERENCE_FRAME_CAP = 90
# Where a hand grasps an object, as MetaWorld's pick-place expert does (a little behind and
# above its centre), and how high above it the hand comes back before going down.
GRASP_OFFSET = np.array([-0.005, 0.0, 0.03])
ABOVE_OBJECT = np.array([0.0, 0.0, 0.1])
CARRY_HEIGHT = 0.15  # metres: an object carried low to a low goal would have nowhere to fall
# Sawyer's hand reaches |x| <= 0.5 near the robot but not at the far side of the table, where
# goals are: a wrong spot stays within this.
COMFORTABLE_REACH_X = 0.3


@dataclass(frozen=True)
class RolloutConfig:
    """How episodes are recorded: views, rate, the operator's speed and the longest episode.

    The kinds' frame counts (`failure_frames`, the tails and holds in `MetaWorldSim`) are stated
    for MetaWorld's expert at full speed and 40 fps and scaled by `motion_frames`, so a slower
    operator or another rate records the same motions over more or fewer frames."""

    cameras: tuple[str, ...] = ("corner2", "topview")
    # Pixels on each side of a square view, or (height, width) of every view, e.g. (480, 640).
    image_size: int | tuple[int, int] = 96
    action_repeat: int = 2  # simulator steps (1/80 s each) per frame: 2 records at 40 fps, 4 at 20 fps
    # The arm's speed as a share of MetaWorld's expert (its xyz action is scaled, its gripper effort
    # is not): 0.1 makes a pick-and-place of under a second last about ten.
    operator_speed: float = 1.0
    # The longest episode; a rollout not over by then is discarded. None: 90 frames of the full-speed
    # expert at 40 fps, scaled to the speed and rate, plus the time a kind's pauses and detours add.
    max_seconds: float | None = None
    failure_frames: tuple[int, int] = (35, 55)
    # How far sideways (metres, low to high) a near-miss's goal is moved. The default misses clearly;
    # closer misses (e.g. 0.05-0.08 on reach, whose success radius is 0.05) teach a labeler the
    # hovering-near-the-goal failures of learned policies.
    near_miss_offset: tuple[float, float] = (0.08, 0.12)

    def __post_init__(self):
        if self.action_repeat < 1:
            raise ConfigError(f"action_repeat must be at least 1, not {self.action_repeat}")
        if not 0 < self.operator_speed <= 1:
            raise ConfigError(f"operator speed must be in (0, 1], not {self.operator_speed}")
        if min(self.resolution) < 1:
            raise ConfigError(f"bad image size {self.image_size}")
        if not 0 < self.near_miss_offset[0] <= self.near_miss_offset[1]:
            raise ConfigError(f"near-miss offset must be 0 < low <= high metres, not {self.near_miss_offset}")

    @property
    def fps(self) -> int:
        """Frames per second of a recording: each frame is `action_repeat` simulator steps."""
        return round(PHYSICS_HZ / self.action_repeat)

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) of every view."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def motion_frames(self, reference_frames: int) -> int:
        """The frames a motion of `reference_frames` of the full-speed expert at 40 fps takes here."""
        steps = reference_frames * REFERENCE_ACTION_REPEAT / self.operator_speed
        return max(1, round(steps / self.action_repeat))

    def seconds(self, seconds: float) -> int:
        """Frames in `seconds` of recording."""
        return max(1, round(seconds * PHYSICS_HZ / self.action_repeat))

    def frame_cap(self, detour_frames: int = 0) -> int:
        """The most frames an episode may have, given the frames its kind adds to the expert's motion."""
        if self.max_seconds is not None:
            return self.seconds(self.max_seconds)
        return self.motion_frames(REFERENCE_FRAME_CAP) + detour_frames


@dataclass(frozen=True)
class Frame:
    """What a robot records at one frame: every view, its state and the action it then takes."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    environment_state: np.ndarray  # the object and goal positions, for policies only
    action: np.ndarray


@dataclass(frozen=True)
class Dip:
    """The deepest fall of true progress before an episode's first success: the frame of the peak
    before it, of its minimum, and how many rubric score levels it falls."""

    peak_frame: int
    min_frame: int
    depth: int


@dataclass
class Episode:
    """One rollout's simulator truth, frame by frame. Its frames are not here: the rollout hands
    each to its caller as it is rendered."""

    env_name: str
    task: str
    kind: str
    seed: int
    progress: list[float] = field(default_factory=list)
    score: list[int] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    obj_to_target: list[float] = field(default_factory=list)
    tcp_to_obj: list[float] = field(default_factory=list)
    grasped: list[bool] = field(default_factory=list)
    last_action: np.ndarray = field(default_factory=lambda: np.zeros(len(ACTION_NAMES), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.progress)

    def add_truth(self, truth: dict) -> None:
        """Append one frame's simulator truth (`MetaWorldSim.frame_truth`)."""
        for name, value in truth.items():
            getattr(self, name).append(value)

    @property
    def outcome(self) -> str:
        return "success" if self.success[-1] else "failure"

    @property
    def first_success_frame(self) -> int:
        return int(np.argmax(self.success)) if any(self.success) else -1

    @property
    def dip(self) -> Dip | None:
        return deepest_dip(self.progress, self.score, self.success)


def deepest_dip(progress, score, success) -> Dip | None:
    """The fall of most score levels (then most progress) before the first success; None when
    progress never falls. Before success the score rises with progress, so the peak of progress
    before the minimum is the peak of the score too."""
    end = int(np.argmax(success)) if any(success) else len(progress)
    progress, score = np.asarray(progress[:end], dtype=float), np.asarray(score[:end])
    if end < 2:
        return None
    level_fall = np.maximum.accumulate(score) - score
    progress_fall = np.maximum.accumulate(progress) - progress
    min_frame = int(np.lexsort((progress_fall, level_fall))[-1])
    if progress_fall[min_frame] <= 0:
        return None
    peak_frame = int(np.argmax(progress[:min_frame + 1]))
    return Dip(peak_frame, min_frame, int(score[peak_frame] - score[min_frame]))


def task_spec(env_name: str) -> TaskSpec:
    if env_name not in TASK_SPECS:
        raise ConfigError(f"unsupported task '{env_name}'; choose from {', '.join(TASK_SPECS)}")
    return TASK_SPECS[env_name]


def kind_mismatch(env_name: str, kind: str) -> str | None:
    """Why `kind` cannot happen in `env_name` (a drop needs an object the expert grasps, a
    misplacement an object it moves), or None when it can."""
    spec = task_spec(env_name)
    if kind not in EPISODE_KINDS:
        return f"unknown episode kind '{kind}'; choose from {', '.join(EPISODE_KINDS)}"
    if kind == "recovered_drop" and not spec.grasps:
        grasping = ", ".join(name for name, other in TASK_SPECS.items() if other.grasps)
        return f"'recovered_drop' needs a task whose expert grasps its object ({grasping}), not {env_name}"
    if kind == "corrected_misplacement" and not spec.has_object:
        movers = ", ".join(name for name, other in TASK_SPECS.items() if other.has_object)
        return f"'corrected_misplacement' needs a task with an object to move ({movers}), not {env_name}"
    return None


def check_kind_applies(env_name: str, kind: str) -> None:
    """ConfigError unless `kind` is a kind and can happen in `env_name` (`kind_mismatch`)."""
    if reason := kind_mismatch(env_name, kind):
        raise ConfigError(reason)


Controller = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class Plan:
    """How a kind steers the expert: its action rule, when its episode is over, the frames its
    pauses and detours add, and what the rollout must show, beyond its outcome, to be that kind."""

    act: Controller
    is_over: Callable[[int], bool]
    detour_frames: int = 0
    shows_kind: Callable[[], bool] = lambda: True


class MetaWorldSim:
    """A goal-observable MetaWorld task with its scripted expert and a fast offscreen renderer."""

    def __init__(self, env_name: str, config: RolloutConfig):
        unknown = [c for c in config.cameras if c not in CAMERAS]
        if unknown:
            raise ConfigError(f"unknown camera(s) {unknown}; choose from {', '.join(CAMERAS)}")
        self.spec = task_spec(env_name)
        self.config = config
        self.task = TASK_DESCRIPTIONS[env_name]
        self.env = ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE[f"{env_name}-goal-observable"](seed=0)
        self.env.model.cam_pos[self.env.model.camera("corner2").id] = LEROBOT_CORNER2_POS
        self.expert = TASK_POLICY_MAPPING[env_name]()
        self.fps = config.fps
        height, width = config.resolution
        # MetaWorld's model sizes the offscreen buffer 640x480; a larger view needs a larger one.
        buffer = self.env.model.vis.global_
        buffer.offheight, buffer.offwidth = max(buffer.offheight, height), max(buffer.offwidth, width)
        self.renderer = mujoco.Renderer(self.env.model, height, width)
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
        # MetaWorld's reset sets the new positions but leaves some of what is drawn where the last
        # episode ended until the first step; recompute it so frame 0 shows the reset scene.
        mujoco.mj_forward(self.env.model, self.env.data)
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

    def rollout(self, kind: str, seed: int, on_frame: Callable[[Frame], None] | None = None) -> Episode | None:
        """Record one episode of `kind`, handing each frame to `on_frame` as soon as it is rendered
        (nothing is rendered without one); None when the simulator says the rollout is not of
        that kind, after its frames were handed over: the caller discards them."""
        check_kind_applies(self.spec.env_name, kind)
        rng = np.random.default_rng(seed)
        obs = self.reset(seed)
        goal = obs[-3:].copy()
        start = (obs[4:7] if self.spec.has_object else obs[:3]).copy()
        episode = Episode(self.spec.env_name, self.task, kind, seed)
        plan = self._plan(kind, rng, Steering(self.expert.get_action, episode, goal, start, self.config))
        frame_cap = self.config.frame_cap(plan.detour_frames)
        self.env.max_path_length = max(SawyerXYZEnv.max_path_length, frame_cap * self.config.action_repeat)
        info = self.evaluate(obs)
        initial = self.initial_distances(obs, info)
        for t in range(frame_cap):
            episode.add_truth(self.frame_truth(obs, info, initial))
            over = plan.is_over(t)
            action = plan.act(obs, t)
            if self.config.operator_speed < 1:
                action = _close_on_arrival(action, episode.last_action, obs)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            action[:3] *= self.config.operator_speed
            episode.last_action = action
            if on_frame is not None:
                on_frame(Frame(self.render(), self.state(obs), self.environment_state(obs), action))
            if over:
                return episode if _matches_kind(episode) and plan.shows_kind() else None
            obs, _, info = self.step(action)
        return None

    def evaluate(self, obs: np.ndarray) -> dict:
        """The simulator's info (success, distances) for the current state, as a step returns it."""
        return self.env.evaluate_state(obs, np.zeros(4, dtype=np.float32))[1]

    def initial_distances(self, obs: np.ndarray, info: dict) -> tuple[float, float]:
        """(hand to object, object to goal) at an episode's first frame: what progress is relative to."""
        return self._tcp_to_obj(obs), float(info["obj_to_target"])

    def frame_truth(self, obs: np.ndarray, info: dict, initial: tuple[float, float]) -> dict:
        """The simulator's truth of the current frame: `Episode`'s per-frame fields (`Episode.add_truth`)."""
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

    def _plan(self, kind: str, rng: np.random.Generator, steer: Steering) -> Plan:
        """How the expert is steered to make an episode of `kind`."""
        expert, episode, frames = steer.expert, steer.episode, self.config.motion_frames
        failure_length = frames(int(rng.integers(*self.config.failure_frames, endpoint=True)))
        if kind == "success":
            return Plan(lambda obs, t: expert(obs), steer.after_success(frames(int(rng.integers(4, 9)))))

        if kind == "stall":
            stall_at = float(rng.uniform(0.3, 0.65))
            held: list[np.ndarray] = []

            def stall(obs: np.ndarray, t: int) -> np.ndarray:
                if held or episode.progress[-1] >= stall_at:
                    if not held:
                        held.append(steer.hold_still())
                    return held[0]
                return expert(obs)

            return Plan(stall, lambda t: t + 1 >= failure_length)

        if kind == "near_miss":
            return Plan(steer.with_goal(steer.goal + _horizontal_offset(rng, *self.config.near_miss_offset)),
                        lambda t: t + 1 >= failure_length)

        if kind == "drop":
            if not self.spec.grasps:  # nothing to drop: push/reach the object to a wrong place instead
                return Plan(steer.with_goal(steer.goal + _horizontal_offset(rng, 0.2, 0.3)),
                            lambda t: t + 1 >= failure_length)
            carry_frames = frames(int(rng.integers(2, 7)))
            released: list[int] = []

            def drop(obs: np.ndarray, t: int) -> np.ndarray:
                if not released and episode.grasped[-1] and episode.progress[-1] >= 0.45:
                    released.append(t + carry_frames)
                if released and t >= released[0]:
                    move = np.clip((steer.goal - obs[:3]) * 10.0, -1.0, 1.0)
                    return np.concatenate([move, [-1.0]])
                return expert(obs)

            return Plan(drop, lambda t: t + 1 >= failure_length)

        if kind == "reached_then_reset":
            hold = frames(int(rng.integers(3, 9)))
            reset_frames = frames(int(rng.integers(20, 31)))
            back_to_start = steer.with_goal(steer.start)

            def reach_then_reset(obs: np.ndarray, t: int) -> np.ndarray:
                since = _since_first_success(episode)
                return expert(obs) if since < hold else back_to_start(obs, t)

            return Plan(reach_then_reset, steer.after_success(hold + reset_frames))

        detour = {"hesitation": _hesitation, "recovered_drop": _recovered_drop,
                  "corrected_misplacement": _corrected_misplacement}[kind]
        return detour(steer, rng, is_over=steer.after_success(frames(int(rng.integers(4, 9)))))


@dataclass
class Steering:
    """What each kind steers with: the scripted expert, the episode so far, its goal and start."""

    expert: Callable[[np.ndarray], np.ndarray]
    episode: Episode
    goal: np.ndarray
    start: np.ndarray  # where the object (the hand, in reach tasks) starts
    config: RolloutConfig

    def with_goal(self, target: np.ndarray) -> Controller:
        """The expert sent to `target` instead of the task's goal."""
        def act(obs: np.ndarray, t: int) -> np.ndarray:
            steered = obs.copy()
            steered[-3:] = target
            return self.expert(steered)

        return act

    def hold_still(self) -> np.ndarray:
        """The arm stays where it is; the gripper keeps its effort."""
        return np.array([0.0, 0.0, 0.0, self.episode.last_action[3]])

    def after_success(self, tail: int) -> Callable[[int], bool]:
        """Over `tail` frames after the first success."""
        return lambda t: _since_first_success(self.episode) >= tail


def _hesitation(steer: Steering, rng: np.random.Generator, is_over: Callable[[int], bool]) -> Plan:
    """The expert holds still once or twice for 1-3 s, when true progress first passes a point
    in 0.15-0.35 (and, after moving again, one in 0.4-0.6), then goes on to success."""
    episode, config = steer.episode, steer.config
    pause_at = rng.uniform((0.15, 0.4), (0.35, 0.6))
    if rng.integers(1, 3) == 1:
        pause_at = pause_at[[rng.integers(2)]]
    lengths = [config.seconds(rng.uniform(1.0, 3.0)) for _ in pause_at]
    pauses: list[range] = []

    def hesitate(obs: np.ndarray, t: int) -> np.ndarray:
        if pauses and t in pauses[-1]:
            return steer.hold_still()
        moved_since = not pauses or t >= pauses[-1].stop + steer.config.motion_frames(5)
        if (len(pauses) < len(pause_at) and moved_since and episode.progress[-1] >= pause_at[len(pauses)]
                and not any(episode.success)):
            pauses.append(range(t, t + lengths[len(pauses)]))
            return steer.hold_still()
        return steer.expert(obs)

    def paused_before_success() -> bool:
        return len(pauses) == len(pause_at) and pauses[-1].stop <= episode.first_success_frame

    return Plan(hesitate, is_over, detour_frames=sum(lengths), shows_kind=paused_before_success)


def _recovered_drop(steer: Steering, rng: np.random.Generator, is_over: Callable[[int], bool]) -> Plan:
    """Mid-carry (the object carried towards the goal at least CARRY_HEIGHT high, lifted over half
    of that, true progress 0.5 or more, 20-50 % of the way there) the arm stops and the gripper
    opens: the object falls. Once it lies still (or after a while), the open hand goes back
    above it, down to it, closes on it, and the expert carries it to the goal."""
    episode, frames = steer.episode, steer.config.motion_frames
    # The object falls part of the way there, far enough from the goal not to land in it.
    release_within = (1 - rng.uniform(0.2, 0.5)) * np.linalg.norm(steer.start[:2] - steer.goal[:2])
    open_frames = frames(int(rng.integers(8, 13)))
    carry = steer.with_goal(np.append(steer.goal[:2], max(steer.goal[2], CARRY_HEIGHT)))
    phase = {"step": "carry", "since": 0, "object": np.zeros(3)}  # step: carry, open, over, down, close, place

    def go(step: str, t: int) -> str:
        phase["step"], phase["since"] = step, t
        return step

    def slip(obs: np.ndarray, t: int) -> np.ndarray:
        hand, grasp_at = obs[:3], obs[4:7] + GRASP_OFFSET
        step = phase["step"]

        def elapsed() -> int:
            return t - phase["since"]

        carried = (episode.grasped[-1] and obs[6] >= CARRY_HEIGHT / 2 and episode.progress[-1] >= 0.5
                   and np.linalg.norm(obs[4:6] - steer.goal[:2]) <= release_within)
        if step == "carry" and carried and not any(episode.success):
            step = go("open", t)
        settled = np.linalg.norm(obs[4:7] - phase["object"]) < 0.001
        phase["object"] = obs[4:7].copy()
        if step == "open" and (elapsed() >= open_frames and settled or elapsed() >= frames(30)):
            step = go("over", t)
        if step == "over" and np.linalg.norm(hand - grasp_at - ABOVE_OBJECT) < 0.01:
            step = go("down", t)
        if step == "down" and (abs(hand[2] - grasp_at[2]) < 0.005 or elapsed() >= frames(15)):
            step = go("close", t)
        if step == "close" and elapsed() >= frames(6):
            step = go("place", t)
        if step == "carry":
            return carry(obs, t)
        if step == "place":
            return steer.expert(obs)
        if step == "open":
            # The arm stops, then the gripper opens: the object falls, it is not thrown.
            return steer.hold_still() if elapsed() < frames(4) else np.array([0.0, 0.0, 0.0, -1.0])
        if step == "close":
            return np.array([0.0, 0.0, 0.0, 1.0])
        target = grasp_at + (ABOVE_OBJECT if step == "over" else 0.0)
        return np.concatenate([move(hand, target, p=10.0), [-1.0]])

    def dropped_then_placed() -> bool:
        return phase["step"] == "place" and _dips(episode, 0)

    return Plan(slip, is_over, detour_frames=frames(60), shows_kind=dropped_then_placed)


def _corrected_misplacement(steer: Steering, rng: np.random.Generator, is_over: Callable[[int], bool]) -> Plan:
    """The object is brought close beside the goal, carried on to a wrong spot about as far to the
    side of the goal (the side towards the arm's middle) as it started from it, held there, then
    moved to the goal."""
    episode, frames, goal = steer.episode, steer.config.motion_frames, steer.goal
    away = steer.start[:2] - goal[:2]
    start_distance = float(np.linalg.norm(steer.start - goal))
    angle = rng.uniform(np.radians(70), np.radians(110))
    sides = [_rotated(away, sign * angle) / max(float(np.linalg.norm(away)), 1e-6) for sign in (1, -1)]
    side = np.append(min(sides, key=lambda side: abs(goal[0] + side[0])), 0.0)  # towards the arm's middle
    beside = goal + side * max(0.1, rng.uniform(0.2, 0.4) * start_distance)
    wrong = goal + side * rng.uniform(0.9, 1.2) * start_distance
    wrong[0] = np.clip(wrong[0], -COMFORTABLE_REACH_X, COMFORTABLE_REACH_X)
    hold = frames(int(rng.integers(10, 31)))
    legs = [(beside, frames(60)), (wrong, frames(40))]  # each target and the most frames it may take
    phase = {"leg": 0, "since": 0}  # the leg under way and the frame it began (the hold's, after the legs)

    def misplace(obs: np.ndarray, t: int) -> np.ndarray:
        if phase["leg"] < len(legs):
            target, patience = legs[phase["leg"]]
            if np.linalg.norm(obs[:3] - target) < 0.02 or t - phase["since"] >= patience:
                phase["leg"] += 1
                phase["since"] = t
        if phase["leg"] < len(legs):
            return steer.with_goal(legs[phase["leg"]][0])(obs, t)
        if t < phase["since"] + hold:
            return steer.hold_still()
        return steer.expert(obs)

    def misplaced_then_corrected() -> bool:
        return phase["leg"] == len(legs) and _dips(episode, phase["since"] - frames(40))

    return Plan(misplace, is_over, detour_frames=frames(100) + hold, shows_kind=misplaced_then_corrected)


def _rotated(vector: np.ndarray, angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ vector


def _dips(episode: Episode, not_before: int) -> bool:
    """True progress falls at least one score level, to a minimum after `not_before`, before the success."""
    dip = episode.dip
    return dip is not None and dip.depth >= 1 and dip.min_frame >= not_before


def _close_on_arrival(action: np.ndarray, previous: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """A slowed operator closes the gripper once the hand is down at the object: when the expert
    would start closing higher up (it does, centimetres above, timed for its full speed; a slow
    hand would close on air), the hand goes on down to where it grasps, still open."""
    grasp_at = obs[4:7] + GRASP_OFFSET
    if action[3] > 0 >= previous[3] and obs[2] > grasp_at[2] + 0.005:
        return np.concatenate([move(obs[:3], grasp_at, p=10.0), previous[3:]])
    return action


def _since_first_success(episode: Episode) -> int:
    first = episode.first_success_frame
    return -1 if first < 0 else len(episode) - 1 - first


def _horizontal_offset(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    return rng.uniform(low, high) * np.array([np.cos(angle), np.sin(angle), 0.0])


def _matches_kind(episode: Episode) -> bool:
    """Keep a rollout only if the simulator agrees with the kind it was meant to be."""
    final_success = episode.success[-1]
    if episode.kind == "success" or episode.kind in DETOUR_KINDS:
        return final_success
    if episode.kind == "reached_then_reset":
        return any(episode.success) and not final_success and episode.score[-1] <= 3
    if episode.kind == "near_miss":
        return not any(episode.success) and episode.progress[-1] >= 0.5
    return not final_success and not any(episode.success)


def silence_expert_warnings() -> None:
    """MetaWorld's experts warn on every clipped action; the env clips anyway."""
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
