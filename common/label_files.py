"""What a `labeling.run` output holds, named once for its writer and every reader.

    <out>/                          a LeRobot dataset with the reward features below
    <out>/labels/frames.parquet     per frame: episode_index, frame_index, index, score, expected,
                                    reward, labeled, is_keyframe, instruction, success (the episode's)
    <out>/labels/episodes.parquet   per episode: episode_index, labeled, success (the run's outcome
                                    verdict from the labels), final_expected, reason, and
                                    output_episode_index (its index in <out>: a run over some
                                    episodes numbers them 0..n-1; labels/ keeps the source's)
    <out>/labels/*.parquet          keyframes, negatives, verdicts, tasks, skipped; provenance.json
    <out>/sarm_progress.parquet     LeRobot's RA-BC progress (index, episode_index, frame_index,
                                    progress_sparse, progress_dense)
    <out>/rewact_extensions/reward_keypoints.json   rewACT keypoints
    <out>/candywrapper_plugins/episode_outcome/outcomes.json      the outcomes and rewards as
    <out>/candywrapper_plugins/labelled_rewards/episode_NNNNNN.parquet  rewACT's tooling reads them
    <out>/labeling_summary.json     counts, calls and timings of the run
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

REWARD = "next.reward"  # (score - 1) / 4 of the discrete label, 0 where unlabeled
SCORE = "reward.score"  # 1-5, 0 where unlabeled
EXPECTED = "reward.expected"  # the expected score under the model's probabilities
LABELED = "reward.labeled"  # 1 where the frame has a label
REWARD_FEATURES = {
    REWARD: {"dtype": "float32", "shape": (1,), "names": None},
    SCORE: {"dtype": "int64", "shape": (1,), "names": None},
    EXPECTED: {"dtype": "float32", "shape": (1,), "names": None},
    LABELED: {"dtype": "int64", "shape": (1,), "names": None},
}
LABELS_DIR = "labels"
FRAMES_FILE = "frames.parquet"
EPISODES_FILE = "episodes.parquet"
SUMMARY_FILE = "labeling_summary.json"
# LeRobot's RA-BC sample weighting reads this file from the dataset root by default
# (`--sample_weighting.type=rabc`).
RABC_PROGRESS_FILE = "sarm_progress.parquet"
KEYPOINTS_FILE = Path("rewact_extensions") / "reward_keypoints.json"
# robocandywrapper's EpisodeOutcomePlugin ([{"episode_index", "outcome": success|failure|unknown}])
# and rewACT's LabelledRewardPlugin (per episode: frame_index = global index, reward in [0, 1]).
CANDYWRAPPER_OUTCOMES_FILE = Path("candywrapper_plugins") / "episode_outcome" / "outcomes.json"
CANDYWRAPPER_REWARDS_DIR = Path("candywrapper_plugins") / "labelled_rewards"


def frames_file(out: str | Path) -> Path:
    return Path(out) / LABELS_DIR / FRAMES_FILE


def episodes_file(out: str | Path) -> Path:
    return Path(out) / LABELS_DIR / EPISODES_FILE


def read_outcomes(out: str | Path) -> dict[int, bool]:
    """Episode -> success, the outcome a labeling run decided from its labels, for every episode
    it labeled (the source's episode numbering, as in labels/). Raises ValueError (naming the
    file) for an output without outcomes."""
    table = _episodes(out, ["episode_index", "labeled", "success"])
    table = table[table["labeled"]]
    return dict(zip(table["episode_index"].astype(int), table["success"].astype(bool), strict=True))


def read_output_numbering(out: str | Path) -> dict[int, int]:
    """Source episode -> its index in the output dataset `out` (the identity for a run over every
    episode; a run over some numbers them 0..n-1)."""
    table = _episodes(out, ["episode_index", "output_episode_index"])
    return dict(zip(table["episode_index"].astype(int), table["output_episode_index"].astype(int), strict=True))


def _episodes(out: str | Path, columns: list[str]) -> pd.DataFrame:
    path = episodes_file(out)
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: no episode outcomes ({err}); re-run labeling.run to write them") from err


def read_summary(out: str | Path) -> dict:
    return json.loads((Path(out) / SUMMARY_FILE).read_text())


def read_keypoints(path: str | Path) -> dict[int, dict[int, float]]:
    """rewACT keypoint JSON, either `{ep: {frame: r}}` or `{ep: {"keypoints": [{frame_index, reward}]}}`.
    Raises ValueError (the file's name and why) when it cannot be read."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read keypoints {path}: {err}") from err
    episodes = {}
    for episode, entry in raw.items():
        if isinstance(entry, dict) and "keypoints" in entry:
            episodes[int(episode)] = {int(k["frame_index"]): float(k["reward"]) for k in entry["keypoints"]}
        else:
            episodes[int(episode)] = {int(frame): float(reward) for frame, reward in entry.items()}
    return episodes


def write_keypoints(path: str | Path, keypoints: dict[int, dict[int, float]]) -> None:
    payload = {
        str(episode): {"keypoints": [{"frame_index": f, "reward": r} for f, r in sorted(points.items())]}
        for episode, points in sorted(keypoints.items())
    }
    Path(path).write_text(json.dumps(payload, indent=2))
